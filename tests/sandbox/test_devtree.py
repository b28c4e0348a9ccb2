"""The box's /dev as root's prepared directory (devtree.py): made once, checked,
bound into every box; bwrap's own --dev without it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from stockade.sandbox import Limits, Status, devtree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root makes device nodes (rootless boxes use bwrap's --dev)")

EXPECTED = sorted([*devtree.NODES, *devtree.LINKS, *devtree.DIRS])


def test_tree_is_made_and_checked(tmp_path):
    path = str(tmp_path / "dev")
    os.mkdir(path, 0o755)
    devtree._fill(path)
    devtree.check(path)
    assert sorted(os.listdir(path)) == EXPECTED
    null = os.lstat(os.path.join(path, "null"))
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert os.readlink(os.path.join(path, "stdin")) == "/proc/self/fd/0"
    # Anything not made here, or changed, is refused (prepare then falls back to --dev).
    with open(os.path.join(path, "extra"), "w"):
        pass
    with pytest.raises(OSError, match="holds"):
        devtree.check(path)
    os.unlink(os.path.join(path, "extra"))
    os.unlink(os.path.join(path, "stdout"))
    os.symlink("/etc/shadow", os.path.join(path, "stdout"))
    with pytest.raises(OSError, match="does not point"):
        devtree.check(path)
    os.unlink(os.path.join(path, "stdout"))
    devtree._fill(path)  # puts back only what is missing
    os.chmod(os.path.join(path, "zero"), 0o600)
    with pytest.raises(OSError, match="not the 1:5 device"):
        devtree.check(path)
    os.chmod(path, 0o777)
    with pytest.raises(OSError, match="only root can write"):
        devtree.check(path)


def test_prepared_dev_is_on_its_own_tmpfs(sandbox):
    assert sandbox.dev_dir == os.path.join(sandbox.state_dir, "dev")
    with open("/proc/self/mountinfo") as f:
        fields = next(line.split() for line in f if line.split()[4] == sandbox.dev_dir)
    options = fields[5].split(",")
    # Devices work there (no nodev), nothing runs from it, nothing is setuid.
    assert "nodev" not in options and "noexec" in options and "nosuid" in options
    devtree.check(sandbox.dev_dir)


PROBE = """
import errno, os
print(sorted(os.listdir('/dev')))
with open('/dev/null', 'w') as f: f.write('x')
with open('/dev/zero', 'rb') as f: assert f.read(4) == bytes(4)
with open('/dev/urandom', 'rb') as f: assert len(f.read(16)) == 16
fd = os.open('/dev/full', os.O_WRONLY)
try:
    os.write(fd, b'x')
except OSError as e: print('full', errno.errorcode[e.errno])
os.close(fd)
with open('/dev/shm/mine', 'w') as f: f.write('shared memory')
print(sorted(os.listdir('/dev/shm')), os.readlink('/dev/stdin'), input())
for path in ('/dev/planted', '/dev/shm/../planted'):
    try:
        open(path, 'x')
        print('LEAK', path)
    except OSError as e: print('denied', errno.errorcode[e.errno])
for name in ('null', 'stdin'):
    try:
        os.unlink('/dev/' + name)
        print('LEAK unlink', name)
    except OSError as e: print('denied unlink', errno.errorcode[e.errno])
print('ptmx' in os.listdir('/dev'), os.path.exists('/dev/pts'))
"""


def test_box_sees_the_prepared_dev(sandbox):
    result = sandbox.run_sync(["/usr/bin/python3", "-c", PROBE], stdin=b"typed\n", limits=Limits(cpu_time=2))
    assert result.status is Status.ok, result
    lines = result.stdout.decode().splitlines()
    assert lines[0] == str(EXPECTED)
    assert lines[1] == "full ENOSPC"
    assert lines[2] == "['mine'] /proc/self/fd/0 typed"
    # Root's directory: the box's user may neither add nor remove anything.
    assert lines[3:7] == ["denied EACCES"] * 2 + ["denied unlink EACCES"] * 2
    assert lines[7] == "False False"  # no pseudo-terminals
    # The next box has a fresh /dev/shm: nothing of this run is left in the shared tree.
    assert sorted(os.listdir(os.path.join(sandbox.dev_dir, "shm"))) == []
    again = sandbox.run_sync(["/bin/ls", "-A", "/dev/shm"])
    assert again.stdout == b""


def test_doctor_reports_the_prepared_dev():
    done = subprocess.run([sys.executable, "-m", "stockade.cli", "doctor", "--json"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert report["trusted"] is True and layers["/dev"]["active"] is True
    assert "prepared directory" in layers["/dev"]["detail"] and "no ptys" in layers["/dev"]["detail"]
    assert layers["bwrap start"]["active"] and "no exec before bwrap" in layers["bwrap start"]["detail"]
    assert layers["exit status"]["active"] and "exit(152) is exit code 152" in layers["exit status"]["detail"]
