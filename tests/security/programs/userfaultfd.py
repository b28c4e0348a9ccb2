# userfaultfd widens kernel race windows for exploits: the syscall and /dev/userfaultfd must fail.
# expect: status=ok
# stdout-contains: DONE
import os

import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


must_fail("userfaultfd fd", 323, os.O_CLOEXEC | os.O_NONBLOCK)
must_fail("userfaultfd(UFFD_USER_MODE_ONLY) fd", 323, os.O_CLOEXEC | 1)
try:
    os.close(os.open("/dev/userfaultfd", os.O_RDWR))
    print("LEAK: /dev/userfaultfd opens")
except OSError as exc:
    print(f"DENIED /dev/userfaultfd: {exc.strerror}")
print("DONE")
