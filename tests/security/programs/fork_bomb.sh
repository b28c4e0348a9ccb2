# The shell fork bomb, then a wait so the run does not end on its own. Rarely (once in a few
# hundred runs) bash gives up first: its fork of `sleep` fails with EINTR amid the bomb's
# dying children, and it exits 254. Contained either way: the harness checks the host after.
# expect: status=time_limit|wall_time_limit|runtime_error
# limits: cpu_time=1 wall_time=2 processes=32
bomb() { bomb | bomb & }
bomb
sleep 30
echo "LEAK: the bomb did not stop the wait"
