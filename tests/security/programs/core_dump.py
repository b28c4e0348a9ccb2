# A crashing program leaves no core dump: RLIMIT_CORE is 1, which stops a dump
# piped to a host helper (systemd-coredump, apport: root on the host) and one
# written to a file alike (this host's kernel.core_pattern names a file, relative
# to the crashing process's directory: /box, where the probe looks).
# expect: status=ok
# stdout-contains: crashed with SIGSEGV
# stdout-contains: no core file
import os
import resource
import signal

assert resource.getrlimit(resource.RLIMIT_CORE) == (1, 1), resource.getrlimit(resource.RLIMIT_CORE)
os.chdir("/box")
before = set(os.listdir("."))
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIGSEGV)  # a dumping signal, as a real crash
    os._exit(0)
_, status = os.waitpid(pid, 0)
if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV:
    print("crashed with SIGSEGV", "(core dumped)" if os.WCOREDUMP(status) else "")
left = sorted(set(os.listdir(".")) - before)
print(f"LEAK: {left}" if left or os.WCOREDUMP(status) else "no core file")
