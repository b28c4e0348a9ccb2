# Identity: never uid 0, no capability in any set, no way to become root.
# expect: status=ok
# stdout-contains: DONE
import os

with open("/proc/self/status") as f:
    status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
for key in ("Uid", "Gid"):
    print(key, status[key])
    if "0" in status[key].split():
        print(f"LEAK: {key} 0")
for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
    print(key, status[key])
    if int(status[key], 16) != 0:
        print(f"LEAK: {key} is {status[key]}")
print("NoNewPrivs", status["NoNewPrivs"], "Seccomp", status["Seccomp"])
if status["NoNewPrivs"] != "1" or status["Seccomp"] != "2":
    print("LEAK: no_new_privs or seccomp filter missing")
print("groups", os.getgroups())
if 0 in os.getgroups():
    print("LEAK: supplementary group 0")
for attempt in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setresuid(0, 0, 0),
                lambda: os.setgroups([0]), lambda: os.seteuid(0)):
    try:
        attempt()
        print("LEAK: became root:", os.getresuid(), os.getresgid())
    except OSError as exc:
        print(f"DENIED setuid/setgid: {exc.strerror}")
print("DONE")
