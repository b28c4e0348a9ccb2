# Kernel memory and logs through /proc: kcore, kmsg, kallsyms addresses, /proc/kpage*.
# expect: status=ok
# stdout-contains: DONE
for path in ("/proc/kcore", "/proc/kmsg", "/proc/kpageflags", "/proc/kpagecount", "/proc/vmallocinfo",
             "/proc/sched_debug", "/proc/timer_list", "/dev/core"):
    try:
        with open(path, "rb") as f:
            data = f.read(64)
        print(f"LEAK: read {len(data)} bytes of {path}")
    except OSError as exc:
        print(f"DENIED {path}: {exc.strerror}")
# kallsyms is readable but must show zeroed addresses (kptr_restrict) to an unprivileged reader.
with open("/proc/kallsyms") as f:
    nonzero = [line for _, line in zip(range(2000), f) if int(line.split()[0], 16) != 0]
print("LEAK: kernel addresses in /proc/kallsyms" if nonzero else "kallsyms addresses hidden")
print("DONE")
