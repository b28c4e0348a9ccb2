"""Not root: the box still holds (unprivileged user namespaces, seccomp,
rlimits), cgroups and per-slot uids are reported missing, and doctor says so.
Run for real as `nobody` through setpriv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")

NOBODY = 65534


@pytest.fixture(scope="module")
def nobody_env():
    """nobody's HOME (its compile cache) and XDG_RUNTIME_DIR (its state
    directory), both in one temporary directory removed afterwards."""
    home = tempfile.mkdtemp(prefix="stockade-nobody-")
    runtime = os.path.join(home, "run")
    os.mkdir(runtime, 0o700)
    for path in (home, runtime):
        os.chown(path, NOBODY, NOBODY)
    yield {"PATH": "/usr/bin:/bin", "HOME": home, "XDG_RUNTIME_DIR": runtime}
    shutil.rmtree(home)


@pytest.fixture
def as_nobody(nobody_env):
    def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             sys.executable, "-m", "stockade.cli", *args],
            input=stdin, capture_output=True, env=nobody_env, timeout=120, check=False)

    return run


@pytest.fixture(scope="module")
def program_dir():
    with tempfile.TemporaryDirectory(dir="/tmp") as path:
        os.chmod(path, 0o755)
        yield path


def write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def test_doctor_reports_missing_layers_and_still_trusts_the_box(as_nobody):
    done = as_nobody("doctor", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert report["trusted"] is True
    assert layers["cgroups"]["active"] is False and "rlimits only" in layers["cgroups"]["detail"]
    assert layers["host uid"]["active"] is False
    assert "bwrap's --dev" in layers["/dev"]["detail"]  # no mknod without root: bwrap builds /dev
    assert layers["probe inside a box"]["active"] is True
    assert layers["exit status"]["active"] is True  # the launcher is pid 1 rootless too


def test_run_rootless_ok_and_limits(as_nobody, program_dir):
    hello = write(program_dir, "hello.py", "import os\nprint('uid', os.getuid(), input())\n")
    done = as_nobody("run", hello, "--stdin", "-", "--json", stdin=b"hi\n")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok" and result["stdout"] == "uid 1000 hi\n"

    loop = write(program_dir, "loop.py", "while True: pass\n")
    result = json.loads(as_nobody("run", loop, "--cpu-time", "0.5", "--json").stdout)
    assert result["status"] == "time_limit" and result["time"] >= 0.5

    bomb = write(program_dir, "bomb.py", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n")
    marker = f"bomb-{os.getpid()}-{time.monotonic_ns()}"  # in every bomb process's command line
    result = json.loads(as_nobody("run", bomb, "--processes", "16", "--cpu-time", "1", "--wall-time", "3",
                                  "--args", marker, "--json").stdout)
    assert result["status"] in ("time_limit", "wall_time_limit")
    # The bomb is gone: no process of it is left.
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    assert left.stdout == ""


def test_unusable_cache_home_is_a_clear_failure_not_a_traceback(nobody_env, program_dir):
    hello = write(program_dir, "hello2.py", "print(1)\n")
    env = {**nobody_env, "HOME": "/nonexistent"}
    done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           sys.executable, "-m", "stockade.cli", "run", hello],
                          capture_output=True, env=env, timeout=120, check=False)
    # A setting to change (exit 2, as any usage error), not a box that failed.
    assert done.returncode == 2
    assert done.stderr.decode().startswith("stockade: cannot use the compile cache")
    assert done.stderr.decode().endswith("(set STOCKADE_CACHE_DIR)\n")
    assert b"Traceback" not in done.stderr


def test_warm_boxes_rootless(nobody_env, program_dir):
    # No uid switch, no network namespace made by root, no copies: warm boxes still work.
    script = write(program_dir, "warm.py", (
        "import asyncio, json\nfrom stockade.sandbox import Sandbox, Limits\n"
        "box = Sandbox(slots=4, warm=1)\n"
        "async def main():\n"
        "    ready, runs = [], []\n"
        "    for _ in range(3):\n"
        "        ready.append(await box.prewarm())\n"
        "        runs.append(await box.run(['/bin/sh', '-c', 'id -u; ulimit -n'], limits=Limits(open_files=33)))\n"
        "    print(json.dumps({'ready': ready, 'out': [r.stdout.decode() for r in runs],"
        " 'warm': box.warm_runs, 'netns_per_slot': box.netns_per_slot}))\n"
        "asyncio.run(main())\nbox.close()\n"))
    done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           sys.executable, script], capture_output=True, env=nobody_env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["ready"] == [1, 1, 1] and seen["warm"] == 3 and seen["netns_per_slot"] is False
    assert seen["out"] == ["1000\n33\n"] * 3


def test_a_compile_that_closes_its_box_is_still_read_back(as_nobody, program_dir):
    # Rootless, the compiler runs as our own uid: it can chmod 0 /box once the
    # program is linked. Collecting the product was a PermissionError out of
    # the engine (a traceback); the supervisor owns /box and opens it back up.
    source = write(program_dir, "closes_box.c", '#include <stdio.h>\nint main(void){puts("closed box");}\n')
    options = '-wrapper /usr/bin/bash,-c,"$0"\\ "$@"\\;\\ s=$?\\;\\ test\\ -e\\ main\\ \\&\\&\\ chmod\\ 000\\ /box\\;\\ exit\\ $s'
    done = as_nobody("run", source, "--compiler-options", options, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok" and result["stdout"] == "closed box\n", result
