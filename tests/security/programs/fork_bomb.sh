# The shell fork bomb, then a wait so the run does not end on its own.
# expect: status=time_limit|wall_time_limit
# limits: cpu_time=1 wall_time=2 processes=32
bomb() { bomb | bomb & }
bomb
sleep 30
echo "LEAK: the bomb did not stop the wait"
