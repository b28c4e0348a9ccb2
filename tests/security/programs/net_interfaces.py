# Network interfaces and tables: only loopback exists, and none of the host's sockets show up.
# expect: status=ok
# stdout-contains: only lo
# stdout-contains: DONE
import json
import os

host = json.load(open("/box/host.json"))
with open("/proc/net/dev") as f:
    names = [line.split(":")[0].strip() for line in f.readlines()[2:]]
print("interfaces:", names)
print("only lo" if names == ["lo"] else f"LEAK: interfaces {names}")
for table in ("tcp", "tcp6", "udp", "udp6"):
    with open(f"/proc/net/{table}") as f:
        rows = f.readlines()[1:]
    print(table, len(rows), "sockets")
    for row in rows:
        port = int(row.split()[1].rsplit(":", 1)[1], 16)
        print(f"LEAK: {table} socket on port {port} visible")
for path in ("/proc/net/route", "/proc/net/arp"):
    with open(path) as f:
        rows = f.readlines()[1:]
    if rows:
        print(f"LEAK: {path}: {rows}")
print("/sys/class/net", "LEAK: exists" if os.path.exists("/sys/class/net") else "absent")
print("host port was", host["tcp_port"])
print("DONE")
