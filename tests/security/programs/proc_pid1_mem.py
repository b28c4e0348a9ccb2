# pid 1 of the box is stockade-launch (--status-fd): the program's parent, same uid, which reports
# the program's wait status to the supervisor. Taking it over would let a program forge its own
# verdict, or get around the seccomp filter: it must be under the same filter, with no_new_privs
# and no capability, and not dumpable, so that its memory, descriptors and environment are out of
# reach (/proc/1/mem, /proc/1/fd, ...; ptrace is refused by seccomp). Probes open, never write.
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
for path, flags in (("/proc/1/mem", os.O_RDWR), ("/proc/1/environ", os.O_RDONLY), ("/proc/1/pagemap", os.O_RDONLY),
                    ("/proc/1/maps", os.O_RDONLY), ("/proc/1/stack", os.O_RDONLY)):
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        print(f"DENIED {path}: {exc.strerror}")
    else:
        os.close(fd)
        print(f"LEAK: {path} opens")
try:
    names = os.listdir("/proc/1/fd")
except OSError as exc:
    print(f"DENIED /proc/1/fd: {exc.strerror}")
else:
    for name in names:  # the status pipe among them: it must not open for writing
        try:
            fd = os.open(f"/proc/1/fd/{name}", os.O_WRONLY)
        except OSError as exc:
            print(f"DENIED /proc/1/fd/{name}: {exc.strerror}")
        else:
            os.close(fd)
            print(f"LEAK: pid 1's fd {name} opens for writing")
for path in ("/proc/1/root/../../..", "/proc/1/cwd"):
    try:
        print(path, "->", sorted(os.listdir(path)))
    except OSError as exc:
        print(f"DENIED {path}: {exc.strerror}")
print("DONE")
