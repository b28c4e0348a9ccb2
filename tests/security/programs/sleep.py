# Sleeps without using CPU: only the wall clock can stop it.
# expect: status=wall_time_limit signal=9 max_wall=1.5
# limits: wall_time=1
import time

time.sleep(3600)
print("LEAK: woke up after an hour")
