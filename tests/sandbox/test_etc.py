"""The box's /etc: one generated directory that follows the host's few files."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from stockade.errors import LimitError
from stockade.sandbox import Mount, Status
from stockade.sandbox.bwrap import root_dirs, root_links
from stockade.sandbox.etc import EtcTree


def fake_host(tmp_path):
    host = tmp_path / "host-etc"
    (host / "alternatives").mkdir(parents=True)
    (host / "ld.so.cache").write_bytes(b"cache v1")
    (host / "shadow").write_text("root:secret:::\n")
    os.symlink("/usr/share/zoneinfo/Europe/Paris", host / "localtime")
    os.symlink("/usr/lib/jvm/java-17/bin/java", host / "alternatives" / "java")
    (host / "alternatives" / "README").write_text("not a link")
    return host


def test_tree_holds_generated_names_and_host_copies(tmp_path):
    tree = EtcTree(str(tmp_path), host_etc=str(fake_host(tmp_path)))
    path = tree.current()
    assert sorted(os.listdir(path)) == ["alternatives", "group", "hostname", "hosts", "ld.so.cache", "localtime",
                                        "nsswitch.conf", "passwd"]  # never shadow, nothing else of the host
    assert "box:x:1000:1000:box:/box:/bin/sh" in open(os.path.join(path, "passwd")).read()
    assert open(os.path.join(path, "ld.so.cache"), "rb").read() == b"cache v1"
    assert os.readlink(os.path.join(path, "localtime")) == "/usr/share/zoneinfo/Europe/Paris"
    assert os.listdir(os.path.join(path, "alternatives")) == ["java"]  # only the links
    assert os.readlink(os.path.join(path, "alternatives", "java")) == "/usr/lib/jvm/java-17/bin/java"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(os.path.join(path, "passwd")).st_mode) == 0o644
    # Around it, the root tree a box binds as /: mountpoints, the /usr links, the
    # launcher's (empty) mountpoint, and nothing else.
    root = os.path.dirname(path)
    links = dict((link.lstrip("/"), target) for target, link in root_links())
    assert sorted(os.listdir(root)) == sorted([".stockade-launch", "box", "dev", "etc", "proc", "tmp", "usr",
                                               *links, *(p.lstrip("/") for p in root_dirs())])
    assert all(os.readlink(os.path.join(root, link)) == target for link, target in links.items())
    assert os.path.getsize(os.path.join(root, ".stockade-launch")) == 0
    assert all(os.listdir(os.path.join(root, name)) == [] for name in ("box", "dev", "proc", "tmp", "usr"))


def test_tree_follows_the_host_and_never_rewrites(tmp_path):
    host = fake_host(tmp_path)
    tree = EtcTree(str(tmp_path), host_etc=str(host))
    first = tree.current()
    assert tree.current() == first  # unchanged host: same directory
    (host / "ld.so.cache").write_bytes(b"cache v2, a new library")
    second = tree.current()
    assert second != first
    assert open(os.path.join(second, "ld.so.cache"), "rb").read() == b"cache v2, a new library"
    # A box started before still binds a complete, unchanged tree.
    assert open(os.path.join(first, "ld.so.cache"), "rb").read() == b"cache v1"
    os.symlink("/usr/bin/node", host / "alternatives" / "js")
    assert os.path.islink(os.path.join(tree.current(), "alternatives", "js"))
    # Named by content: another supervisor finds the same directory.
    assert EtcTree(str(tmp_path), host_etc=str(host)).current() == tree.current()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tree-")]  # no half-built tree left


def test_missing_host_files_are_left_out(tmp_path):
    host = tmp_path / "empty-etc"
    host.mkdir()
    names = sorted(os.listdir(EtcTree(str(tmp_path), host_etc=str(host)).current()))
    assert names == ["group", "hostname", "hosts", "nsswitch.conf", "passwd"]


def test_box_etc_is_read_only_and_complete(sandbox):
    code = ("import os, pwd\n"
            "print(sorted(os.listdir('/etc')), pwd.getpwuid(os.getuid()).pw_name)\n"
            "for path in ('/etc/passwd', '/etc/new'):\n"
            "    try:\n"
            "        open(path, 'a').close()\n"
            "    except OSError as e:\n"
            "        print(e.strerror)\n")
    result = sandbox.run_sync(["/usr/bin/python3", "-c", code])
    assert result.status is Status.ok, result
    first, *errors = result.stdout.decode().splitlines()
    names, user = first.rsplit(" ", 1)
    assert user == "box" and "shadow" not in names and "'ld.so.cache'" in names
    # passwd belongs to the host's root (not even the box's); nothing new can appear.
    assert errors == ["Permission denied", "Read-only file system"]


def test_mountpoints_for_runtime_config(tmp_path):
    tree = EtcTree(str(tmp_path), host_etc=str(fake_host(tmp_path)))
    path = tree.current()
    tree.mountpoint(path, "/etc/php", directory=True)
    tree.mountpoint(path, "/etc/java-17-openjdk/security", directory=True)
    tree.mountpoint(path, "/etc/tool.conf", directory=False)
    assert os.path.isdir(os.path.join(path, "java-17-openjdk", "security"))
    assert os.path.isfile(os.path.join(path, "tool.conf")) and os.path.getsize(os.path.join(path, "tool.conf")) == 0
    for bad in ("/etc", "/etc/../usr", "/usr/x", "/etc/localtime/x", "/etc/alternatives/java/x", "/etc/passwd/x"):
        with pytest.raises(LimitError):
            tree.mountpoint(path, bad, directory=True)
    assert os.readlink(os.path.join(path, "localtime")) == "/usr/share/zoneinfo/Europe/Paris"  # never followed


def test_runtime_config_is_bound_over_box_etc(sandbox, tmp_path):
    with tempfile.TemporaryDirectory(dir="/tmp") as host_dir:
        os.chmod(host_dir, 0o755)
        with open(os.path.join(host_dir, "tool.ini"), "w") as f:
            f.write("setting=1\n")
        os.chmod(os.path.join(host_dir, "tool.ini"), 0o644)
        result = sandbox.run_sync(["/bin/cat", "/etc/stockade-test-tool/tool.ini"],
                                  mounts=[Mount(host_dir, "/etc/stockade-test-tool")])
    assert result.status is Status.ok and result.stdout == b"setting=1\n", result
    with pytest.raises(LimitError, match="would replace"):
        sandbox.run_sync(["/bin/true"], mounts=[Mount(host_dir, "/etc")])
