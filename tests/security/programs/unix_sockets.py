# The host's unix sockets: the test's abstract socket (abstract names live in the network namespace)
# and its filesystem socket (a path outside the box), plus the usual daemons' sockets.
# expect: status=ok
# stdout-contains: DENIED abstract
# stdout-contains: DONE
import json
import socket

host = json.load(open("/box/host.json"))
targets = [("abstract", "\0" + host["abstract_name"]), ("filesystem", host["unix_path"])]
targets += [("daemon", path) for path in ("/run/systemd/private", "/var/run/docker.sock", "/run/docker.sock",
                                         "/run/dbus/system_bus_socket", "/dev/log", "/run/containerd/containerd.sock")]
targets += [("abstract", "\0/tmp/.X11-unix/X0"), ("abstract", "\0/org/freedesktop/systemd1/notify")]
for kind, address in targets:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1)
    try:
        sock.connect(address)
        print(f"LEAK: connected to {kind} {address!r}")
    except OSError as exc:
        print(f"DENIED {kind} {address!r}: {exc.strerror}")
    finally:
        sock.close()
with open("/proc/net/unix") as f:
    if host["abstract_name"] in f.read():
        print("LEAK: the host's abstract socket is listed in /proc/net/unix")
print("DONE")
