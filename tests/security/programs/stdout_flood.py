# Writes to stdout forever: killed at the output limit, first bytes kept.
# expect: status=output_limit stdout_truncated=true stdout_len=64K
# limits: output=64K
import os

block = b"flood\n" * 10000
while True:
    os.write(1, block)
