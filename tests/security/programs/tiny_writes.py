# 200000 one-byte writes: nothing lost, no deadlock.
# expect: status=ok stdout_len=200000
# limits: cpu_time=2 wall_time=5
import os

for _ in range(200000):
    os.write(1, b"x")
