# A busy loop in the shell itself (no child process).
# expect: status=time_limit signal=9
# limits: cpu_time=1 wall_time=3
while :; do :; done
