# io_uring: operations the seccomp filter never sees. setup, enter and register must fail with EPERM.
# expect: status=ok
# stdout-contains: DONE
import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


params = ctypes.create_string_buffer(120)
must_fail("io_uring_setup fd", 425, 8, params)
must_fail("io_uring_enter", 426, -1, 1, 1, 0, None, 0)
must_fail("io_uring_register", 427, -1, 0, None, 0)
print("DONE")
