# kill(-1, SIGKILL) from inside: it may reach only the box's own processes (never the host, never
# the test), and the box's reaper survives it.
# expect: status=ok
# stdout-contains: SURVIVED
# stdout-contains: children killed: 3
import os
import signal
import time

children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
os.kill(-1, signal.SIGKILL)
killed = sum(os.WIFSIGNALED(os.waitpid(pid, 0)[1]) for pid in children)
print(f"children killed: {killed}")
print("pids left:", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("SURVIVED")
