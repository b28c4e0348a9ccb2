# perf_event_open (side channels, a long line of exploits): must fail with EPERM.
# expect: status=ok
# stdout-contains: DONE
import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


attr = ctypes.create_string_buffer(128)
attr[0:8] = (1).to_bytes(4, "little") + (128).to_bytes(4, "little")  # PERF_TYPE_SOFTWARE, size
must_fail("perf_event_open(cpu clock, self) fd", 298, attr, 0, -1, -1, 0)
hw = ctypes.create_string_buffer(128)
hw[0:8] = (0).to_bytes(4, "little") + (128).to_bytes(4, "little")  # PERF_TYPE_HARDWARE cycles
must_fail("perf_event_open(cycles, any pid) fd", 298, hw, -1, 0, -1, 0)
print("DONE")
