# Reads the host's password hashes and other root-only files.
# expect: status=ok
# stdout-contains: DONE
import os

TARGETS = ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/sudoers", "/etc/ssh/ssh_host_ed25519_key",
           "/etc/ssh/ssh_host_rsa_key", "/root/.ssh/id_rsa", "/root/.bash_history", "/etc/machine-id",
           "/var/lib/dbus/machine-id", "/proc/1/root/etc/shadow", "/proc/self/root/etc/shadow"]
for path in TARGETS:
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
        print(f"LEAK: read {len(data)} bytes of {path}")
    except OSError as exc:
        print(f"DENIED {path}: {exc.strerror}")
# The box's /etc is generated: the box user and root, nothing with a hash.
with open("/etc/passwd") as f:
    for line in f:
        if line.split(":")[1] not in ("x", "*", "!"):
            print(f"LEAK: password field in /etc/passwd: {line.strip()}")
print("etc:", sorted(os.listdir("/etc")))
print("DONE")
