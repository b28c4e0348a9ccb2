# The memory bomb runs in a forked child while the parent waits: the child's memory counts.
# expect: status=memory_limit oom_killed=true
# limits: memory=64M
import os

pid = os.fork()
if pid == 0:
    chunks = []
    while True:
        chunks.append(bytearray(8 << 20))
_, status = os.waitpid(pid, 0)
print("child ended with", status)
