# TCP to listeners on the host's loopback (the test's own listener, IPv4 and IPv6) and to common
# service ports, on loopback only. The box has no network: socket() itself should fail (EPERM), and
# even a socket would only reach the box's own empty loopback. The test checks its listener saw nothing.
# expect: status=ok
# stdout-contains: DONE
import json
import socket

host = json.load(open("/box/host.json"))
targets = [(socket.AF_INET, "127.0.0.1", host["tcp_port"])]
if host["tcp6_port"]:
    targets.append((socket.AF_INET6, "::1", host["tcp6_port"]))
targets += [(socket.AF_INET, "127.0.0.1", port) for port in (22, 53, 80, 2358, 5432, 6379)]
for family, address, port in targets:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        print(f"DENIED socket for {address}:{port}: {exc.strerror}")
        continue
    sock.settimeout(1)
    try:
        sock.connect((address, port))
        print(f"LEAK: connected to {address}:{port}")
    except OSError as exc:
        print(f"DENIED connect {address}:{port}: {exc}")
    finally:
        sock.close()
for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
    try:
        socket.socket(socket.AF_INET, kind, 0 if kind == socket.SOCK_DGRAM else socket.IPPROTO_ICMP).close()
        print(f"LEAK: AF_INET socket type {kind} created")
    except OSError as exc:
        print(f"DENIED AF_INET type {kind}: {exc.strerror}")
print("DONE")
