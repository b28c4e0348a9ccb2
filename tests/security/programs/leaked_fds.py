# Checks that no descriptor but 0, 1 and 2 reached the program (the test holds a secret file and a pipe
# open, inheritable, while it runs the box).
# expect: status=ok
# stdout-contains: DONE
import json
import os

host = json.load(open("/box/host.json"))
open_fds = []
for fd in range(3, 4096):
    try:
        os.fstat(fd)
    except OSError:
        continue
    open_fds.append((fd, os.readlink(f"/proc/self/fd/{fd}")))
if open_fds:
    print(f"LEAK: open descriptors {open_fds}")
else:
    print("only 0-2 open")
for fd in (0, 1, 2):
    print(fd, os.readlink(f"/proc/self/fd/{fd}"))
# bwrap's reaper (pid 1 here): what it holds open, if this program may look at all.
try:
    for name in os.listdir("/proc/1/fd"):
        target = os.readlink(f"/proc/1/fd/{name}")
        print("pid 1 fd", name, target)
        if "secret" in target or "hostile" in target:
            print(f"LEAK: pid 1 holds {target}")
except OSError as exc:
    print(f"DENIED /proc/1/fd: {exc.strerror}")
print("host fds were", host["extra_fds"])
print("DONE")
