# The shell's kill -9 -1, with background jobs to take down first.
# expect: status=ok
# stdout-contains: SURVIVED
sleep 30 &
sleep 30 &
kill -9 -1
wait
echo SURVIVED
