# /dev is bwrap's own tmpfs: a minimal /dev should be read-only like / (only /dev/shm writable).
# Probes by creating a NEW uniquely named file, removed at once if it was created.
# expect: status=ok
# stdout-contains: DONE
import os
import secrets

path = f"/dev/stockade-probe-{secrets.token_hex(8)}"
try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    os.unlink(path)
    print("LEAK: /dev is writable")
except OSError as exc:
    print(f"DENIED /dev: {exc.strerror}")
try:
    os.symlink("/proc/self/fd", path)
    os.unlink(path)
    print("LEAK: links can be planted in /dev")
except OSError as exc:
    print(f"DENIED /dev link: {exc.strerror}")
print("DONE")
