# Run 1 ("write") leaves markers in /tmp, /dev/shm, /box, a SysV shared memory segment and a SysV
# message queue; run 2 ("check") in a fresh box must find none of them.
# expect: status=ok
# runs: sequence write check
# stdout-contains: DONE
import ctypes
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
KEY = 0x57ACADE
IPC_CREAT = 0o1000
MARKERS = ["/tmp/leftover-marker", "/dev/shm/leftover-marker", "/box/leftover-marker", "/tmp/.hidden/marker"]
phase = sys.argv[1]
if phase == "write":
    os.makedirs("/tmp/.hidden")
    for path in MARKERS:
        with open(path, "w") as f:
            f.write("left by run 1\n")
    print("shmget", libc.shmget(KEY, 4096, IPC_CREAT | 0o666))
    print("msgget", libc.msgget(KEY, IPC_CREAT | 0o666))
else:
    for path in MARKERS:
        print(f"LEAK: {path} survived the previous run" if os.path.lexists(path) else f"clean {path}")
    for name, call in (("shmget", lambda: libc.shmget(KEY, 0, 0)), ("msgget", lambda: libc.msgget(KEY, 0))):
        ret = call()
        print(f"LEAK: SysV {name} segment survived" if ret >= 0 else f"clean SysV {name}")
    for where in ("/tmp", "/dev/shm"):
        if os.listdir(where):
            print(f"LEAK: {where} is not empty: {os.listdir(where)}")
    extra = set(os.listdir("/box")) - {"leftovers.py", "host.json", "probe.py"}  # what the driver gives every run
    if extra:
        print(f"LEAK: /box holds {sorted(extra)}")
print("DONE")
