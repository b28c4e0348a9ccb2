# Device nodes: none can be made, /dev holds only the minimal set, no disk or kernel device opens.
# expect: status=ok
# stdout-contains: DONE
import os
import stat

for path, mode, dev in (("/box/probe-null", stat.S_IFCHR, os.makedev(1, 3)),
                        ("/tmp/probe-mem", stat.S_IFCHR, os.makedev(1, 1)),
                        ("/dev/shm/probe-sda", stat.S_IFBLK, os.makedev(8, 0))):
    try:
        os.mknod(path, mode | 0o666, dev)
        os.unlink(path)
        print(f"LEAK: mknod {path}")
    except OSError as exc:
        print(f"DENIED mknod {path}: {exc.strerror}")
minimal = {"core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
           "tty", "urandom", "zero", "console", "mqueue"}
names = sorted(os.listdir("/dev"))
print("/dev:", names)
for name in set(names) - minimal:
    print(f"LEAK: /dev/{name}")
for path in ("/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda", "/dev/vda", "/dev/nvme0n1",
             "/dev/loop0", "/dev/loop-control", "/dev/fuse", "/dev/kvm", "/dev/net/tun", "/dev/mapper/control",
             "/dev/tty0", "/dev/ttyS0", "/dev/console", "/dev/userfaultfd", "/dev/vsock", "/dev/vhost-net",
             "/dev/uinput", "/dev/cpu/0/msr", "/dev/core", "/dev/dri/card0", "/dev/snd/seq"):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
        print(f"LEAK: {path} opens")
    except OSError as exc:
        print(f"DENIED {path}: {exc.strerror}")
print("DONE")
