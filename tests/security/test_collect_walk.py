"""Reading files back out of a box directory (workdir.collect): however wide
the tree, with one descriptor per level of depth, and a clear SandboxError past
the depth and entry caps, never a descriptor left open."""

from __future__ import annotations

import os

import pytest

from stockade.errors import SandboxError
from stockade.sandbox import workdir


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_wide_trees_are_collected(tmp_path):
    for i in range(1000):
        (tmp_path / f"d{i}").mkdir()
        (tmp_path / f"d{i}" / "f").write_bytes(b"%d" % i)
    before = open_fds()
    files = workdir.collect(str(tmp_path), ["*"], max_total=1 << 20)
    assert len(files) == 1000 and files["d999/f"] == b"999"
    assert open_fds() == before


def test_too_deep_and_too_many_are_refused_without_leaking(tmp_path):
    deep = tmp_path / "deep"
    path = deep
    for _ in range(workdir._MAX_DEPTH + 5):
        path = path / "d"
    path.mkdir(parents=True)
    (path / "f").write_bytes(b"x")
    before = open_fds()
    with pytest.raises(SandboxError, match="too deep"):
        workdir.collect(str(deep), ["*"], max_total=1 << 20)
    assert open_fds() == before
    many = tmp_path / "many"
    many.mkdir()
    for i in range(workdir._MAX_ENTRIES + 1):
        os.close(os.open(many / str(i), os.O_CREAT | os.O_WRONLY, 0o644))
    with pytest.raises(SandboxError, match="too many"):
        workdir.collect(str(many), ["*"], max_total=1 << 20)
    assert open_fds() == before
    workdir.remove_tree(str(deep))
    workdir.remove_tree(str(many))


def test_a_flat_box_directory_goes_at_once_anything_else_is_left_to_remove_tree(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "main.py").write_bytes(b"print(1)")
    os.symlink("/etc/passwd", flat / "link")  # removed, never followed
    os.mkfifo(flat / "fifo")
    assert workdir.remove_flat_tree(str(flat), 3) and not flat.exists()
    assert os.path.exists("/etc/passwd")
    many = tmp_path / "many"
    many.mkdir()
    for i in range(4):
        (many / str(i)).write_bytes(b"")
    nested = tmp_path / "nested"
    (nested / "d").mkdir(parents=True)
    before = open_fds()
    assert not workdir.remove_flat_tree(str(many), 3) and len(os.listdir(many)) == 4
    assert not workdir.remove_flat_tree(str(nested), 3) and os.listdir(nested) == ["d"]
    assert workdir.remove_flat_tree(str(tmp_path / "gone"), 3)
    assert open_fds() == before
