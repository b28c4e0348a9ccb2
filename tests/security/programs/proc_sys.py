# Host sysctls: opening them for writing must fail (opened only, never written).
# expect: status=ok
# stdout-contains: DONE
import os

for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/proc/sys/vm/drop_caches",
             "/proc/sys/kernel/sysrq", "/proc/sys/kernel/hostname", "/proc/sys/net/ipv4/ip_forward",
             "/proc/sys/fs/binfmt_misc/register", "/proc/sys/kernel/randomize_va_space"):
    for flags in (os.O_WRONLY, os.O_RDWR):
        try:
            fd = os.open(path, flags)
            os.close(fd)
            print(f"LEAK: {path} opens for writing")
        except OSError as exc:
            print(f"DENIED {path}: {exc.strerror}")
print("core_pattern reads:", open("/proc/sys/kernel/core_pattern").read().strip())
print("DONE")
