# A program that tries to choose its own verdict. bwrap reports death by signal N as exit code
# 128 + N, so exit(152) used to read as SIGXCPU (a time limit) and exit(139) as SIGSEGV; the box's
# pid 1 (stockade-launch) now reports the real wait status. It also tries to kill pid 1, which
# would leave no report (pid 1 ignores its own namespace's signals), and exits with 152 itself.
# expect: status=runtime_error exit_code=152 signal=none
# stdout-contains: pid 1 still there
import os
import signal
import sys

for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGXCPU, signal.SIGSEGV):
    try:
        os.kill(1, sig)
    except OSError as exc:
        print(f"kill(1, {sig.name}): {exc.strerror}")
os.kill(1, 0)  # raises if pid 1 is gone
print("pid 1 still there")
sys.stdout.flush()
sys.exit(152)
