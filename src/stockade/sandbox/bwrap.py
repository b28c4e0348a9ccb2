"""bubblewrap: find and vet the binary, and build the argv of one box.

Pure functions only (no process is started here except `bwrap --version`
once), so the whole mount table of a box can be read and tested in one place."""

from __future__ import annotations

import functools
import os
import re
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stockade.errors import SandboxUnavailable
from stockade.sandbox.model import Mount

BWRAP_PATH = "/usr/bin/bwrap"
MIN_VERSION = (0, 8, 0)  # --disable-userns and --size appeared by 0.8

# Inside the box the program is uid/gid 1000 "box", whatever host slot uid it
# really is: runs are reproducible. (The slot is not secret: /proc/self/mountinfo
# names /box's source directory, "60003-3", and /tmp's uid= option.)
BOX_UID = 1000
BOX_GID = 1000
BOX_DIR = "/box"
BOX_LAUNCHER = "/.stockade-launch"  # see launch.py

# The only variables a program starts with (plus the runtime's own).
BASE_ENV = {
    "PATH": "/usr/bin:/bin",  # /usr/local is not a runtime source (DESIGN: /usr only)
    "HOME": BOX_DIR,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "USER": "box",
    "LOGNAME": "box",
}

@dataclass(frozen=True)
class BwrapInfo:
    path: str
    version: tuple[int, int, int]


def parse_version(text: str) -> tuple[int, int, int]:
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise SandboxUnavailable(f"cannot read bubblewrap's version from {text!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


@functools.cache
def find_bwrap(path: str = BWRAP_PATH) -> BwrapInfo:
    """The distribution's bwrap, vetted: a writable or foreign-owned binary would
    let someone else decide what every box runs (checked once per process)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SandboxUnavailable(
            f"{path} not found: install Debian's bubblewrap package (make setup does)"
        ) from None
    if st.st_uid != 0:
        raise SandboxUnavailable(f"{path} is not owned by root (uid {st.st_uid})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SandboxUnavailable(f"{path} is writable by group or others")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, env={}, check=False)
    version = parse_version(out.stdout or out.stderr)
    if version < MIN_VERSION:
        raise SandboxUnavailable(
            f"bubblewrap {'.'.join(map(str, version))} is too old: need >= 0.8.0"
        )
    return BwrapInfo(path, version)


@functools.cache
def root_links() -> list[tuple[str, str]]:
    """The merged-/usr links of the host (/bin -> usr/bin, /lib64 -> usr/lib64...),
    recreated as symlinks in the box; real directories are bound instead."""
    links = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            links.append((os.readlink(path), path))
    return links


@functools.cache
def root_dirs() -> list[str]:
    """On a host without merged /usr, /bin and /lib* are directories: bind them."""
    return [
        "/" + name
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
        if os.path.isdir("/" + name) and not os.path.islink("/" + name)
    ]


def build_argv(
    bwrap: str,
    argv: Sequence[str],
    *,
    workdir: str,
    etc_dir: str,
    tmp_size: int,
    env: Mapping[str, str],
    mounts: Sequence[Mount] = (),
    cwd: str = BOX_DIR,
    info_fd: int,
    block_fd: int,
    seccomp_fd: int,
    launcher: str | None = None,
    own_netns: bool = True,
    dev_dir: str | None = None,
    root_dir: str | None = None,
    as_pid_1: bool = False,
) -> list[str]:
    """The full bwrap command line for one box. Every flag says what it stops."""
    a = [bwrap]
    # Every namespace (user, ipc, pid, net, uts, cgroup): the program sees no host
    # process, no host network (only its own loopback), no host IPC objects, not
    # its own cgroup path. Never --share-net: the host's network namespace is the
    # host's loopback services (Judge0's CVE-2024-29021).
    if own_netns:
        a += ["--unshare-all", "--unshare-user"]
    else:
        # Already in the slot's own loopback-only network namespace (made by
        # root, so the box has no capability over it): every other namespace.
        a += ["--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup"]
    # No nested user namespace: it is the door to most kernel privilege exploits.
    a += ["--disable-userns"]
    if as_pid_1:
        # The box's first program (the launcher with --status-fd) is its pid 1,
        # in place of bwrap's own reaper: it reports the program's real wait
        # status, which bwrap would fold into an exit code (128 + N for signal N).
        a += ["--as-pid-1"]
    # If the supervisor dies, the box dies (no orphaned untrusted code).
    a += ["--die-with-parent"]
    # setsid: the program has no controlling terminal to push input into (TIOCSTI).
    a += ["--new-session"]
    # No capability survives into the box, even inside its own user namespace.
    a += ["--cap-drop", "ALL"]
    # Nothing of bwrap's (already empty) environment; variables are listed below.
    a += ["--clearenv"]
    a += ["--uid", str(BOX_UID), "--gid", str(BOX_GID), "--hostname", "box"]

    # Filesystem: read-only system, nothing of the host's /home, /root, /var, /run...
    if root_dir:
        # The generated root tree (etc.py), read-only: the /usr links, every
        # mountpoint below, and etc_dir as /etc, in one bind.
        a += ["--ro-bind", root_dir, "/"]
    a += ["--ro-bind", "/usr", "/usr"]
    if not root_dir:
        for target, link in root_links():
            a += ["--symlink", target, link]
    for path in root_dirs():
        a += ["--ro-bind", path, path]
    if not root_dir:
        # A generated /etc (etc.py): passwd/group naming the box user, no shadow, no
        # host secrets; one read-only bind of a directory nothing in the box can change.
        a += ["--ro-bind", etc_dir, "/etc"]
    # A fresh procfs for the box's pid namespace (bwrap keeps /proc/sys read-only).
    a += ["--proc", "/proc"]
    if dev_dir:
        # Root's prepared /dev (devtree.py): null, zero, full, random, urandom,
        # tty and the fd links, in one bind; the box's user cannot change it.
        a += ["--dev-bind", dev_dir, "/dev"]
    else:
        # Only null, zero, full, random, urandom, tty, pts: no disk or kernel devices.
        a += ["--dev", "/dev"]
    # Size-capped scratch space; its pages count against the box's memory too.
    a += ["--size", str(tmp_size), "--tmpfs", "/tmp"]
    a += ["--size", str(tmp_size), "--tmpfs", "/dev/shm"]
    if not dev_dir:
        # bwrap's /dev tmpfs belongs to the box user: without this the program could
        # replace /dev/null or /dev/stdin for everything it runs afterwards.
        a += ["--remount-ro", "/dev"]
    a += ["--bind", workdir, BOX_DIR]
    if launcher:
        # The box's first program (it sets the rlimits, then execs the user's).
        a += ["--ro-bind", launcher, BOX_LAUNCHER]
    for mount in mounts:
        a += ["--bind" if mount.writable else "--ro-bind", mount.source, mount.target]
    if not root_dir:
        # The root directory itself is bwrap's tmpfs: make it read-only too.
        a += ["--remount-ro", "/"]
    a += ["--chdir", cwd]

    for key, value in {**BASE_ENV, **env}.items():
        a += ["--setenv", key, value]

    # Race-free start: bwrap reports the box's pid on info_fd, then waits on
    # block_fd until the pid is in its cgroup and has its rlimits.
    a += ["--info-fd", str(info_fd), "--block-fd", str(block_fd)]
    a += ["--seccomp", str(seccomp_fd)]
    a += ["--", *argv]
    return a
