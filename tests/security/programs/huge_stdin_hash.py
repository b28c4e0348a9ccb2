# Reads 32 MiB of stdin and prints its length and hash: every byte arrived, in order.
# expect: status=ok
# limits: cpu_time=2 wall_time=5
# stdin: random 32M
# stdout-contains: {stdin_len} {stdin_sha256}
import hashlib
import sys

data = sys.stdin.buffer.read()
print(len(data), hashlib.sha256(data).hexdigest())
