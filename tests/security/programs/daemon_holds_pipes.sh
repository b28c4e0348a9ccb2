# A daemon that ignores signals and keeps stdout and stderr open: the supervisor must not wait for
# the pipes' EOF, and must kill it.
# expect: status=ok max_wall=1.5
# stdout-contains: started
(trap '' TERM HUP INT; exec setsid sleep 300) &
(trap '' TERM HUP INT; while :; do sleep 1; done) &
echo started
