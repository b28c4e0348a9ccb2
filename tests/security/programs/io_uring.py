# io_uring: operations the seccomp filter never sees. setup, enter and register must fail with EPERM.
# expect: status=ok
# stdout-contains: DONE
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


params = ctypes.create_string_buffer(120)
must_fail("io_uring_setup fd", 425, 8, params)
must_fail("io_uring_enter", 426, -1, 1, 1, 0, None, 0)
must_fail("io_uring_register", 427, -1, 0, None, 0)
print("DONE")
