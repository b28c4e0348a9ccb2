# New namespaces from inside the box: unshare and setns with every namespace flag must fail with EPERM.
# expect: status=ok
# stdout-contains: DONE
import os

import ctypes
import errno

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def must_fail(name, nr, *args, want=errno.EPERM):
    """One raw syscall (x86_64 numbers) that the seccomp filter must refuse with `want`."""
    ctypes.set_errno(0)
    ret = libc.syscall(nr, *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    err = ctypes.get_errno()
    if ret == -1 and err == want:
        print(f"DENIED {name}: {errno.errorcode[err]}")
    else:
        print(f"LEAK: {name} returned {ret} ({errno.errorcode.get(err, err)}): not stopped by the filter")
        if ret >= 0 and name.endswith("fd"):
            libc.close(ctypes.c_int(ret))
    return ret


CLONE_NEW = {"NEWNS": 0x20000, "NEWCGROUP": 0x2000000, "NEWUTS": 0x4000000, "NEWIPC": 0x8000000,
             "NEWUSER": 0x10000000, "NEWPID": 0x20000000, "NEWNET": 0x40000000, "NEWTIME": 0x80}
for name, flag in CLONE_NEW.items():
    must_fail(f"unshare(CLONE_{name})", 272, flag)
must_fail("unshare(CLONE_FILES)", 272, 0x400)
for ns in ("mnt", "user", "net", "pid"):
    fd = os.open(f"/proc/1/ns/{ns}", os.O_RDONLY)
    must_fail(f"setns({ns})", 308, fd, 0)
    os.close(fd)
print("DONE")
