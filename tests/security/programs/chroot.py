# chroot (the classic chroot-and-chdir-up escape starts with it) must fail with EPERM.
# expect: status=ok
# stdout-contains: DONE
import os

import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


os.makedirs("/tmp/jail", exist_ok=True)
must_fail("chroot /tmp/jail", 161, b"/tmp/jail")
must_fail("chroot /", 161, b"/")
print("root is still", os.listdir("/"))
print("DONE")
