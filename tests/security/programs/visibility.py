# Looks for the host's home directories, the project's own tree and the supervisor's state.
# expect: status=ok
# stdout-contains: DONE
import json
import os

host = json.load(open("/box/host.json"))
for path in ["/root", "/home", "/work", "/work/main", host["project_dir"], host["state_dir"], "/run",
             "/var", "/srv", "/opt", "/mnt", "/media", "/boot", "/sys", "/lost+found", "/usr/local/bin/..",
             "/run/stockade/boxes", "/snap", "/nix"]:
    if path == "/usr/local/bin/..":
        continue  # /usr is the host's, read-only: /usr/local is allowed to exist
    if os.path.lexists(path):
        print(f"LEAK: {path} exists in the box")
    else:
        print(f"absent {path}")
root = sorted(os.listdir("/"))
allowed = {"bin", "box", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr",
           ".stockade-launch"}  # the static rlimit helper, read-only (stockade.sandbox.launch)
print("root:", root)
for name in set(root) - allowed:
    print(f"LEAK: unexpected /{name} in the box")
# The mount table names no host path but the binds the box is made of.
with open("/proc/self/mountinfo") as f:
    for line in f:
        source_root, mount_point = line.split()[3:5]
        if any(source_root == top or source_root.startswith(top + "/") for top in ("/work", "/root", "/home")):
            print(f"LEAK: mount of {source_root} at {mount_point}")
print("DONE")
