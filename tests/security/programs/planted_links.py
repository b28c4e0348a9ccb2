# Plants symlinks and hard links in /box and /tmp for the teardown (which runs as root) to follow,
# pointing at /etc, /root, /, the host's secrets, the sentinel tree and the boxes directory.
# Also makes directories unreadable and /box itself mode 000. The test then checks that every
# host target is intact (hashes, modes, owners) and that the box directory is gone.
# expect: status=ok
# stdout-contains: DENIED hard link /etc/passwd
# stdout-contains: DONE
import json
import os

host = json.load(open("/box/host.json"))
targets = {"link-etc": "/etc", "evil-root": "/root", "rootlink": "/", "passwd-link": "/etc/passwd",
           "shadow-link": "/etc/shadow", "boxes": host["state_dir"] + "/boxes", "sentinels": host["sentinel_dir"],
           "proc-root": "/proc/1/root", "dotdot": "../../../../../../../.."}
for i, path in enumerate(host["secret_paths"] + host["sentinel_files"]):
    targets[f"secret-{i}"] = path
for name, target in targets.items():
    os.symlink(target, f"/box/{name}")
    os.symlink(target, f"/tmp/{name}")
os.makedirs("/box/deep/er/still")
os.symlink("/etc", "/box/deep/er/still/etc")
os.symlink("/root", "/box/deep/er/still/root")
for src in ("/etc/passwd", "/usr/bin/passwd", "/etc/hostname", "/usr/lib/os-release", "/dev/null"):
    try:
        os.link(src, "/box/hard-" + os.path.basename(src))
        print(f"LEAK: hard link to {src} in /box")
    except OSError as exc:
        print(f"DENIED hard link {src}: {exc.strerror}")
os.chmod("/box/deep/er", 0)
os.chmod("/box/deep", 0)
os.mkfifo("/box/fifo")
print("links:", sorted(os.listdir("/box")))
os.chmod("/box", 0)
print("DONE")
