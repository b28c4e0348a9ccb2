# perf_event_open (side channels, a long line of exploits): must fail with EPERM.
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


attr = ctypes.create_string_buffer(128)
attr[0:8] = (1).to_bytes(4, "little") + (128).to_bytes(4, "little")  # PERF_TYPE_SOFTWARE, size
must_fail("perf_event_open(cpu clock, self) fd", 298, attr, 0, -1, -1, 0)
hw = ctypes.create_string_buffer(128)
hw[0:8] = (0).to_bytes(4, "little") + (128).to_bytes(4, "little")  # PERF_TYPE_HARDWARE cycles
must_fail("perf_event_open(cycles, any pid) fd", 298, hw, -1, 0, -1, 0)
print("DONE")
