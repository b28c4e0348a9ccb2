# Setting or slewing the host clock. Values are invalid on purpose (tv_nsec 2e9, modes 0 = read only):
# even if a call got past the filter and the missing capability, the clock could not change; the
# filter's answer (EPERM before the kernel checks anything) is what is tested.
# expect: status=ok
# stdout-contains: DONE
import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)



class Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


must_fail("clock_settime(REALTIME)", 227, 0, ctypes.byref(Timespec(0, 2_000_000_000)))
must_fail("clock_settime(MONOTONIC)", 227, 1, ctypes.byref(Timespec(0, 2_000_000_000)))
must_fail("settimeofday", 164, ctypes.byref(Timespec(0, 2_000_000)), None)
timex = ctypes.create_string_buffer(256)  # modes = 0: a pure read if it were allowed
must_fail("adjtimex(read)", 159, timex)
must_fail("clock_adjtime(REALTIME, read)", 305, 0, timex)
print("DONE")
