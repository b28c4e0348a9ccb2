# eBPF (map and program loading): must fail with EPERM.
# expect: status=ok
# stdout-contains: DONE
import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


attr = ctypes.create_string_buffer(128)
attr[0:16] = (2).to_bytes(4, "little") + (4).to_bytes(4, "little") + (4).to_bytes(4, "little") + (1).to_bytes(4, "little")
must_fail("bpf(BPF_MAP_CREATE) fd", 321, 0, attr, 128)
must_fail("bpf(BPF_PROG_LOAD) fd", 321, 5, ctypes.create_string_buffer(128), 128)
must_fail("bpf(BPF_BTF_LOAD) fd", 321, 18, ctypes.create_string_buffer(128), 128)
print("DONE")
