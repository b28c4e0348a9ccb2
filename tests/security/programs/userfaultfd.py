# userfaultfd widens kernel race windows for exploits: the syscall and /dev/userfaultfd must fail.
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


must_fail("userfaultfd fd", 323, os.O_CLOEXEC | os.O_NONBLOCK)
must_fail("userfaultfd(UFFD_USER_MODE_ONLY) fd", 323, os.O_CLOEXEC | 1)
try:
    os.close(os.open("/dev/userfaultfd", os.O_RDWR))
    print("LEAK: /dev/userfaultfd opens")
except OSError as exc:
    print(f"DENIED /dev/userfaultfd: {exc.strerror}")
print("DONE")
