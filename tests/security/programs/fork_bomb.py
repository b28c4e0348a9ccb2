# Classic fork bomb: every process forks forever. The pids limit caps it, CPU or wall time ends it.
# expect: status=time_limit|wall_time_limit
# limits: cpu_time=1 wall_time=3 processes=32
import os

while True:
    try:
        os.fork()
    except OSError:
        pass
