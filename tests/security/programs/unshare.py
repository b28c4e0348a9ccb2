# New namespaces from inside the box: unshare and setns with every namespace flag must fail with EPERM.
# expect: status=ok
# stdout-contains: DONE
import os

import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


CLONE_NEW = {"NEWNS": 0x20000, "NEWCGROUP": 0x2000000, "NEWUTS": 0x4000000, "NEWIPC": 0x8000000,
             "NEWUSER": 0x10000000, "NEWPID": 0x20000000, "NEWNET": 0x40000000, "NEWTIME": 0x80}
for name, flag in CLONE_NEW.items():
    must_fail(f"unshare(CLONE_{name})", 272, flag)
must_fail("unshare(CLONE_FILES)", 272, 0x400)
for ns in ("mnt", "user", "net", "pid"):
    fd = os.open(f"/proc/self/ns/{ns}", os.O_RDONLY)  # (pid 1's: not dumpable, closed to us)
    must_fail(f"setns({ns})", 308, fd, 0)
    os.close(fd)
print("DONE")
