# Mounting in any form (old and new mount API), unmounting and pivot_root must fail with EPERM.
# Targets are fresh directories of the box's own /tmp: harmless even if a call got through.
# expect: status=ok
# stdout-contains: DONE
import os
import secrets

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


target = f"/tmp/mnt-{secrets.token_hex(4)}"
os.makedirs(target + "/old")
must_fail("mount tmpfs", 165, b"none", target.encode(), b"tmpfs", 0, None)
must_fail("mount bind /", 165, b"/", target.encode(), None, 0x1000, None)
must_fail("mount remount /usr rw", 165, None, b"/usr", None, 0x20 | 0x1000, None)
must_fail("umount2", 166, target.encode(), 2)
must_fail("pivot_root", 155, target.encode(), (target + "/old").encode())
must_fail("fsopen tmpfs fd", 430, b"tmpfs", 0)
must_fail("open_tree fd", 428, -100, b"/usr", 1)  # AT_FDCWD, OPEN_TREE_CLONE
must_fail("move_mount", 429, -1, b"", -100, target.encode(), 4)
must_fail("fsmount fd", 432, -1, 0, 0)
must_fail("fspick fd", 433, -100, b"/usr", 0)
must_fail("mount_setattr", 442, -100, b"/usr", 0, None, 0)
print("DONE")
