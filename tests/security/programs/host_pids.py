# Lists /proc: only the box's own processes (bwrap's reaper and this program) may show up.
# expect: status=ok
# stdout-contains: DONE
import json
import os

host = json.load(open("/box/host.json"))
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("pids:", pids)
for pid in pids:
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = "?"
    print(pid, cmdline)
    if "pytest" in cmdline or "init" in cmdline or "systemd" in cmdline:
        print(f"LEAK: host process visible: {pid} {cmdline}")
if len(pids) > 3:
    print(f"LEAK: {len(pids)} processes visible")
if os.getpid() > 10 or host["host_pid"] in pids and host["host_pid"] > 10:
    print(f"LEAK: pid {os.getpid()} / host pid {host['host_pid']} visible: not a fresh pid namespace")
with open("/proc/self/status") as f:
    nspid = next(line for line in f if line.startswith("NSpid:"))
print(nspid.strip())
if len(nspid.split()) != 2:
    print("LEAK: the box's pid namespace shows outer pids:", nspid)
for name in ("loadavg", "uptime"):
    print(name, open(f"/proc/{name}").read().strip())
print("DONE")
