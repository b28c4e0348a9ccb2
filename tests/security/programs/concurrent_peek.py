# Two boxes at once ("a" and "b"), each leaving markers and looking for the other's: files in /tmp,
# /dev/shm and /box, its process in /proc, its abstract socket, its SysV segment, /run/stockade.
# expect: status=ok
# runs: concurrent a b
# stdout-contains: DONE
import ctypes
import os
import socket
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
me = sys.argv[1]
other = {"a": "b", "b": "a"}[me]
key = {"a": 0x57AC0A, "b": 0x57AC0B}
started = time.monotonic()
for where in ("/tmp", "/dev/shm", "/box"):
    with open(f"{where}/marker-{me}", "w") as f:
        f.write(me)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(f"\0stockade-peek-{me}")
listener.listen(1)
libc.shmget(key[me], 4096, 0o1000 | 0o666)
for _ in range(8):  # look several times over a second: the other box is running meanwhile
    for where in ("/tmp", "/dev/shm", "/box"):
        if os.path.exists(f"{where}/marker-{other}"):
            print(f"LEAK: {where}/marker-{other} visible")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if other.encode() in cmdline:
            print(f"LEAK: the other box's process {pid} is visible: {cmdline}")
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        peer.connect(f"\0stockade-peek-{other}")
        print("LEAK: connected to the other box's abstract socket")
    except OSError:
        pass
    peer.close()
    if libc.shmget(key[other], 0, 0) >= 0:
        print("LEAK: the other box's SysV segment is visible")
    if os.path.exists("/run/stockade") or os.path.exists("/run"):
        print("LEAK: /run visible")
    time.sleep(max(0.0, started + 0.15 * (_ + 1) - time.monotonic()))
print(f"box {me} saw only itself: {sorted(os.listdir('/box'))}")
print("DONE")
