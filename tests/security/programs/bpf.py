# eBPF (map and program loading): must fail with EPERM.
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
attr[0:16] = (2).to_bytes(4, "little") + (4).to_bytes(4, "little") + (4).to_bytes(4, "little") + (1).to_bytes(4, "little")
must_fail("bpf(BPF_MAP_CREATE) fd", 321, 0, attr, 128)
must_fail("bpf(BPF_PROG_LOAD) fd", 321, 5, ctypes.create_string_buffer(128), 128)
must_fail("bpf(BPF_BTF_LOAD) fd", 321, 18, ctypes.create_string_buffer(128), 128)
print("DONE")
