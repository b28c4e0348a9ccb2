# Runs every setuid-root binary of the host's /usr while it waits on stdin, and reads its
# effective uid from /proc: no_new_privs and nosuid mounts must leave it at the box's uid.
# expect: status=ok
# limits: cpu_time=4 wall_time=20
# stdout-contains: DONE
import json
import os
import subprocess
import sys
import tempfile
import time

# The driver walked /usr for them (the same /usr, bound read only): each must be here.
found = json.load(open("/box/host.json"))["setuid_binaries"]
missing = [path for path in found if not os.path.isfile(path)]
if missing or not found:
    sys.exit(f"not in the box: {missing}" if missing else "no setuid binary to try")
print("setuid/setgid binaries:", found, flush=True)
# Harmless arguments only: even a root `mount` would just print the table; `umount` gets a
# path that does not exist.
ARGS = {"su": ["-c", "id"], "umount": ["/nonexistent-stockade-probe"], "passwd": ["-S"]}
for path in found:
    try:
        # Output to a file, not a pipe: a binary that daemonizes (ssh-agent) keeps no pipe open.
        output = tempfile.TemporaryFile()
        proc = subprocess.Popen([path, *ARGS.get(os.path.basename(path), [])], stdin=subprocess.PIPE,
                                stdout=output, stderr=subprocess.STDOUT)
    except OSError as exc:
        print(f"{path}: cannot run: {exc.strerror}")
        continue
    # Watch its uids while it lives (the exec has happened once /proc shows its new name).
    seen = set()
    deadline = time.monotonic() + 0.1
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                seen.add(tuple(next(line for line in f if line.startswith("Uid:")).split()[1:]))
        except (OSError, StopIteration):
            break
        time.sleep(0.001)
    print(f"{path} uids seen {sorted(seen)}", flush=True)
    if any("0" in uids for uids in seen):
        print(f"LEAK: {path} ran with uid 0: {sorted(seen)}")
    try:
        proc.communicate(b"", timeout=0.3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    output.seek(0)
    out = output.read()
    print(f"{path} -> {proc.returncode}: {out[:200]!r}", flush=True)
    if b"uid=0" in out:
        print(f"LEAK: {path} ran something as root")
# Every mount of the box is nosuid (and no_new_privs is set anyway).
with open("/proc/self/mountinfo") as f:
    for line in f:
        fields = line.split()
        if fields[4] in ("/usr", "/box", "/tmp", "/"):
            print(fields[4], fields[5])
            if "nosuid" not in fields[5].split(","):
                print(f"LEAK: {fields[4]} is mounted without nosuid")
print("DONE")
