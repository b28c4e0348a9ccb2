# Opens descriptors until none are left, then tries to raise its own limit.
# expect: status=ok
# limits: open_files=32
# stdout-contains: EMFILE
# stdout-contains: DENIED raise
import errno
import resource

fds = []
try:
    while len(fds) < 100000:
        fds.append(open("/dev/null"))
except OSError as exc:
    if exc.errno == errno.EMFILE:
        print(f"EMFILE after {len(fds)} files")
if len(fds) > 32:
    print(f"LEAK: {len(fds)} descriptors open")
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    print("LEAK: raised RLIMIT_NOFILE to 4096")
except (ValueError, OSError) as exc:
    print(f"DENIED raise: {exc}")
