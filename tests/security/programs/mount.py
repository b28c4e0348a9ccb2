# Mounting in any form (old and new mount API), unmounting and pivot_root must fail with EPERM.
# Targets are fresh directories of the box's own /tmp: harmless even if a call got through.
# expect: status=ok
# stdout-contains: DONE
import os
import secrets

import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


target = f"/tmp/mnt-{secrets.token_hex(4)}"
os.makedirs(target + "/old")
must_fail("mount tmpfs", 165, b"none", target.encode(), b"tmpfs", 0, None)
must_fail("mount bind /", 165, b"/", target.encode(), None, 0x1000, None)
must_fail("mount remount /usr rw", 165, None, b"/usr", None, 0x20 | 0x1000, None)
must_fail("umount2", 166, target.encode(), 2)
must_fail("pivot_root", 155, target.encode(), (target + "/old").encode())
must_fail("fsopen tmpfs fd", 430, b"tmpfs", 0)
must_fail("open_tree fd", 428, -100, b"/usr", 1)  # AT_FDCWD, OPEN_TREE_CLONE
must_fail("move_mount", 429, -1, b"", -100, target.encode(), 4)
must_fail("fsmount fd", 432, -1, 0, 0)
must_fail("fspick fd", 433, -100, b"/usr", 0)
must_fail("mount_setattr", 442, -100, b"/usr", 0, None, 0)
print("DONE")
