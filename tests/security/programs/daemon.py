# A double-forked daemon: new session, ignores SIGTERM/SIGHUP/SIGINT, closes its pipes and sleeps
# forever. The run must end when the main program does, and the daemon must be gone.
# expect: status=ok max_wall=1.5
# stdout-contains: parent exiting
import os
import signal
import time

pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork():
        os._exit(0)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.chdir("/")
    while True:
        time.sleep(1)
os.waitpid(pid, 0)
time.sleep(0.1)  # the daemon is up
print("parent exiting")
