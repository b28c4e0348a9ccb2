# pid 1 of the box is bwrap's reaper, same uid as the program, so its memory opens (box-internal,
# no gain: it holds only the stdio pipes and an eventfd). What matters is that taking it over would
# gain nothing: it must be under the same seccomp filter, with no_new_privs and no capability,
# or writing /proc/1/mem would be a way around the filter. Kernel addresses in its pagemap stay hidden.
# expect: status=ok
# stdout-contains: pid 1 is as confined as the program
# stdout-contains: DONE
import os


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


one, me = status(1), status("self")
print("pid 1:", one["Name"], {k: one[k] for k in ("Uid", "Seccomp", "Seccomp_filters", "NoNewPrivs", "CapEff",
                                                 "CapPrm", "CapBnd")})
if one["Seccomp"] != "2" or one["Seccomp_filters"] != me["Seccomp_filters"] or one["NoNewPrivs"] != "1":
    print("LEAK: pid 1 is not under the box's seccomp filter: its memory is a way around it")
elif any(int(one[k], 16) for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")):
    print("LEAK: pid 1 holds capabilities")
else:
    print("pid 1 is as confined as the program")
for name in os.listdir("/proc/1/fd"):
    print("pid 1 fd", name, os.readlink(f"/proc/1/fd/{name}"))
# Physical frame numbers in pagemap are zeroed for a reader without CAP_SYS_ADMIN (rowhammer aid).
with open("/proc/1/maps") as f:
    start = int(f.readline().split("-")[0], 16)
try:
    with open("/proc/1/pagemap", "rb") as f:
        f.seek(start // 4096 * 8)
        entry = int.from_bytes(f.read(8), "little")
    pfn = entry & ((1 << 55) - 1)
    print(f"LEAK: physical frame numbers visible ({pfn:#x})" if pfn else "pagemap frame numbers hidden")
except OSError as exc:
    print(f"DENIED /proc/1/pagemap: {exc.strerror}")
for path in ("/proc/1/stack", "/proc/1/root/../../..", "/proc/1/cwd"):
    try:
        print(path, "->", sorted(os.listdir(path)) if os.path.isdir(path) else open(path).read(100))
    except OSError as exc:
        print(f"DENIED {path}: {exc.strerror}")
print("DONE")
