# Steering another process: ptrace, process_vm_readv/writev, kcmp and pidfd_getfd on its own child.
# expect: status=ok
# stdout-contains: DONE
import os
import signal
import time

import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
must_fail("ptrace(PTRACE_ATTACH)", 101, 16, child, 0, 0)
must_fail("ptrace(PTRACE_SEIZE)", 101, 0x4206, child, 0, 0)
must_fail("ptrace(PTRACE_TRACEME)", 101, 0, 0, 0, 0)
buf = ctypes.create_string_buffer(64)
iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 64)
must_fail("process_vm_readv", 310, child, iov, 1, iov, 1, 0)
must_fail("process_vm_writev", 311, child, iov, 1, iov, 1, 0)
must_fail("kcmp", 312, os.getpid(), child, 0, 0, 0)
pidfd = libc.syscall(ctypes.c_long(434), ctypes.c_long(child), ctypes.c_long(0))  # pidfd_open: allowed
must_fail("pidfd_getfd fd", 438, pidfd, 0, 0)
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
print("DONE")
