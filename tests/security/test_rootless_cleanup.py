"""Rootless, the program is our own uid: it can take the owner's bits off /box
and off the directories it makes. Teardown must still remove all of it, or the
slot's box directory stays and every later run in that slot fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")

NOBODY = 65534

HOSTILE = "mkdir -p a/b/c && touch a/b/c/f && chmod 500 a/b/c a/b && chmod 0 a && chmod 0 /box\necho closed\n"


@pytest.fixture
def home():
    path = tempfile.mkdtemp(prefix="stockade-rootless-cleanup-")
    os.chmod(path, 0o755)
    os.mkdir(os.path.join(path, "run"), 0o700)
    for sub in ("", "run"):
        os.chown(os.path.join(path, sub), NOBODY, NOBODY)
    yield path
    subprocess.run(["chmod", "-R", "u+rwx", path], check=False)
    shutil.rmtree(path)


def _as_nobody(home: str, argv: list[str]) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "XDG_RUNTIME_DIR": os.path.join(home, "run")}
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
                          capture_output=True, env=env, timeout=120, check=False)


def test_a_closed_box_directory_is_still_removed(home):
    """remove_tree on its own, as the unprivileged owner of the tree."""
    tree = os.path.join(home, "box")
    code = (f"import os, subprocess\nfrom stockade.sandbox.workdir import remove_tree\n"
            f"os.mkdir({tree!r}, 0o700)\n"
            f"subprocess.run(['/bin/sh', '-c', {HOSTILE.replace('/box', tree)!r}], cwd={tree!r}, check=True,"
            f" capture_output=True)\n"
            f"remove_tree({tree!r})\nprint(os.path.lexists({tree!r}))\n")
    done = _as_nobody(home, [sys.executable, "-c", code])
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"False\n"


def test_a_rootless_run_cannot_wedge_its_slot(home):
    script = os.path.join(home, "closed.sh")
    with open(script, "w") as fh:
        fh.write(HOSTILE)
    os.chmod(script, 0o644)
    first = _as_nobody(home, [sys.executable, "-m", "stockade.cli", "run", script, "--json"])
    assert b"Traceback" not in first.stderr, first.stderr.decode()
    assert json.loads(first.stdout)["stdout"] == "closed\n"
    # The next run (same slot: the only one free) still works, and nothing is left.
    again = _as_nobody(home, [sys.executable, "-m", "stockade.cli", "run", script, "--json"])
    assert b"Traceback" not in again.stderr, again.stderr.decode()
    assert json.loads(again.stdout)["stdout"] == "closed\n"
    boxes = os.path.join(home, "run", "stockade", "boxes")
    assert not os.path.isdir(boxes) or os.listdir(boxes) == []
