# Tries every path to the secrets the test planted on the host (0600 files under /root and /tmp,
# a sentinel tree): directly, through /proc/*/root and /proc/*/cwd, and by its inode number.
# expect: status=ok
# stdout-contains: DONE
import json
import os

host = json.load(open("/box/host.json"))
targets = [*host["secret_paths"], *host["sentinel_files"], host["sentinel_dir"]]
prefixes = [""] + [f"/proc/{p}/root" for p in os.listdir("/proc") if p.isdigit()] + ["/proc/self/cwd/.."]
for target in targets:
    for prefix in prefixes:
        path = prefix + target
        try:
            if os.path.isdir(path):
                print(f"LEAK: {path} is visible: {os.listdir(path)}")
            else:
                with open(path, "rb") as f:
                    print(f"LEAK: read {path}: {f.read(200)!r}")
        except OSError as exc:
            print(f"DENIED {path}: {exc.strerror}")
        if os.path.lexists(path):
            print(f"LEAK: {path} exists in the box")
# Nothing named like the planted secrets anywhere in the box's /tmp.
for name in os.listdir("/tmp"):
    if name.startswith("stockade-hostile-secret"):
        print(f"LEAK: /tmp/{name}")
print("DONE")
