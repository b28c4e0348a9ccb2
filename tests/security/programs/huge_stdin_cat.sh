# cat echoes 24 MiB of stdin back: both directions at once, no deadlock, no loss.
# expect: status=ok stdout=stdin
# limits: output=32M cpu_time=2 wall_time=5
# stdin: random 24M
exec cat
