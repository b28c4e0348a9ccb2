# The rlimits set before the program started are in force and cannot be raised.
# expect: status=ok
# limits: file_size=4M open_files=48 stack=32M cpu_time=1
# stdout-contains: RLIMIT_FSIZE 4194304 4194304
# stdout-contains: RLIMIT_NOFILE 48 48
# stdout-contains: RLIMIT_STACK 33554432 33554432
# stdout-contains: RLIMIT_CORE 1 1
# stdout-contains: RLIMIT_MEMLOCK 0 0
# stdout-contains: RLIMIT_CPU 2 3
# stdout-contains: DONE
import resource

for name in ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_MEMLOCK"):
    which = getattr(resource, name)
    soft, hard = resource.getrlimit(which)
    print(name, soft, hard)
    try:
        resource.setrlimit(which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print(f"LEAK: raised {name} to unlimited")
    except (ValueError, OSError) as exc:
        print(f"DENIED raising {name}: {exc}")
print("DONE")
