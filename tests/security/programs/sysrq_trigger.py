# /proc/sysrq-trigger reboots or crashes the host with one byte: opening it for writing must fail
# (opened only, never written). Same for the other host-wide /proc files that accept writes.
# expect: status=ok
# stdout-contains: DENIED /proc/sysrq-trigger
# stdout-contains: DONE
import os

for path in ("/proc/sysrq-trigger", "/proc/sys/kernel/sysrq", "/proc/kmsg", "/proc/timer_list",
             "/proc/acpi", "/proc/bus/pci", "/proc/irq/default_smp_affinity"):
    try:
        fd = os.open(path, os.O_WRONLY)
        os.close(fd)
        print(f"LEAK: {path} opens for writing")
    except OSError as exc:
        print(f"DENIED {path}: {exc.strerror}")
print("DONE")
