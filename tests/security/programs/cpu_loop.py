# A busy loop that never ends: the CPU limit must stop it.
# expect: status=time_limit signal=9
# limits: cpu_time=1 wall_time=3
while True:
    pass
