# Looks for the supervisor's environment (the test put a secret in it) in its own environment,
# in /proc/self/environ, in pid 1's (bwrap) and in every other process's environ it can read.
# Everything is printed: the test checks that the secret's value never appears.
# expect: status=ok
# stdout-contains: DONE
import json
import os

name = json.load(open("/box/host.json"))["env_name"]
print("environ:", dict(os.environ))
if name in os.environ:
    print(f"LEAK: {name} in os.environ")
for pid in ["self", "1"] + [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError as exc:
        print(f"DENIED /proc/{pid}/environ: {exc.strerror}")
        continue
    print(f"/proc/{pid}/environ: {data!r}")
    if name.encode() in data:
        print(f"LEAK: {name} in /proc/{pid}/environ")
print("DONE")
