# In its own cgroup namespace the box should see its cgroup as the root ("/"), learning nothing of
# the host's cgroup layout (nor its slot number).
# expect: status=ok
# stdout-contains: DONE
with open("/proc/self/cgroup") as f:
    for line in f:
        print(line.rstrip())
        path = line.rstrip("\n").split(":", 2)[2]
        if path != "/":
            print(f"LEAK: cgroup path {path} visible instead of /")
print("DONE")
