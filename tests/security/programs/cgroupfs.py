# cgroupfs must not even be mounted: no way to raise the box's own limits or touch other cgroups.
# Probes by opening for writing (never writes) and by creating a new unique entry.
# expect: status=ok
# stdout-contains: DONE
import os
import secrets

for path in ("/sys", "/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"):
    print(("LEAK: exists " if os.path.lexists(path) else "absent ") + path)
for path in ("/sys/fs/cgroup/memory/stockade/box-0/memory.limit_in_bytes",
             "/sys/fs/cgroup/pids/stockade/box-0/pids.max", "/sys/fs/cgroup/cgroup.procs",
             "/sys/fs/cgroup/memory/cgroup.procs"):
    try:
        fd = os.open(path, os.O_WRONLY)
        os.close(fd)
        print(f"LEAK: {path} opens for writing")
    except OSError as exc:
        print(f"DENIED {path}: {exc.strerror}")
try:
    os.mkdir(f"/sys/fs/cgroup/stockade-probe-{secrets.token_hex(6)}")
    print("LEAK: created a cgroup")
except OSError as exc:
    print(f"DENIED mkdir cgroup: {exc.strerror}")
with open("/proc/self/mounts") as f:
    for line in f:
        if line.split()[2] in ("cgroup", "cgroup2", "sysfs"):
            print(f"LEAK: mounted: {line.strip()}")
print("DONE")
