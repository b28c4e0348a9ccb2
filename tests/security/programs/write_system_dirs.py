# Probes write access to system directories by creating a NEW uniquely named file in each
# (never opening an existing file for writing); anything created is removed at once.
# expect: status=ok
# stdout-contains: writable /box
# stdout-contains: writable /tmp
# stdout-contains: DONE
import os
import secrets

name = f"stockade-probe-{secrets.token_hex(8)}"
for d in ("/", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/etc", "/bin", "/lib", "/sbin",
          "/proc", "/proc/sys", "/proc/sys/kernel", "/box", "/tmp", "/dev/shm"):
    path = os.path.join(d, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        print(f"DENIED {d}: {exc.strerror}")
        continue
    os.close(fd)
    os.unlink(path)
    print(f"{'writable' if d in ('/box', '/tmp', '/dev/shm') else 'LEAK: writable'} {d}")
    try:
        os.mkdir(path)
        os.rmdir(path)
    except OSError:
        pass
# Existing files: open for writing only (O_WRONLY without O_TRUNC), never write.
for path in ("/etc/passwd", "/etc/hosts", "/usr/bin/python3", "/bin/sh", "/etc/ld.so.cache"):
    path = os.path.realpath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        os.close(fd)
        print(f"LEAK: {path} opens for writing")
    except OSError as exc:
        print(f"DENIED {path}: {exc.strerror}")
print("DONE")
