# Fills /tmp and /dev/shm until they are full: their size caps must hold.
# expect: status=ok
# limits: tmp_size=8M file_size=64M memory=128M
# stdout-contains: FULL /tmp
# stdout-contains: FULL /dev/shm
import errno

for where in ("/tmp", "/dev/shm"):
    written = 0
    try:
        with open(f"{where}/fill", "wb") as f:
            while written < 64 << 20:
                f.write(b"\0" * (1 << 20))
                f.flush()
                written += 1 << 20
        print(f"LEAK: wrote {written} bytes into {where}")
    except OSError as exc:
        if exc.errno == errno.ENOSPC and written <= 8 << 20:
            print(f"FULL {where} after {written} bytes")
        else:
            print(f"LEAK?: {where}: {exc} after {written} bytes")
