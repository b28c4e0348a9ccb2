# 32 MiB on stdin that the program never reads: the supervisor must not deadlock.
# expect: status=ok max_wall=2
# stdin: random 32M
# stdout-contains: exiting
print("exiting without reading stdin")
