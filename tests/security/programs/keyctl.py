# Kernel keyrings are not namespaced: keyctl, add_key and request_key must fail with EPERM.
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


must_fail("keyctl(GET_KEYRING_ID session)", 250, 0, -3, 0)
must_fail("keyctl(JOIN_SESSION_KEYRING)", 250, 1, None)
must_fail("add_key user", 248, b"user", b"stockade-probe", b"x", 1, -2)
must_fail("request_key", 249, b"user", b"stockade-probe-missing", None, 0)
print("DONE")
