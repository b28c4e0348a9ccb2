# Stops itself with SIGSTOP: a stopped process must still be killed at the wall limit.
# expect: status=wall_time_limit max_wall=1.5
# limits: wall_time=1
import os
import signal
import sys

print("stopping", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
print("LEAK: continued after SIGSTOP", flush=True)
sys.exit(0)
