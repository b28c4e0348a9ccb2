"""The box's /dev as one prepared directory (root only), instead of bwrap's --dev.

bwrap's --dev builds /dev in every box: a tmpfs, one bind mount per device
node, a devpts instance and the links, then (ours) a read-only remount: about
ten mount operations, ~0.5-1.5 ms of CPU per box, and as many to undo. Here the
same nodes are made once, with mknod, in a small tmpfs of our own (the only
mount of ours without nodev: the nodes must work through the bind), and each
box binds that directory as its /dev.

What a box sees: null, zero, full, random, urandom, tty; fd, stdin, stdout and
stderr as links into /proc/self/fd; /dev/shm as a mountpoint (the box mounts
its own size-capped tmpfs there). Everything is root's, so the box's user
cannot add, remove or replace an entry (it is not the owner, and root is not
even mapped in its user namespace), although the bind itself is not read-only:
a read-only remount would add nodev, and the nodes would stop working. Not
there, unlike bwrap's --dev: /dev/pts and /dev/ptmx (no pseudo-terminals in a
box) and the /dev/core link.

Without root, or where mknod or the mount is refused (a container without
CAP_MKNOD), `prepare` returns None and boxes use bwrap's --dev."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat

from stockade.sandbox import tmpfs

log = logging.getLogger("stockade.sandbox")

# name -> (major, minor): the character devices bwrap's --dev binds from the host.
NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
DIRS = ("shm",)

def prepare(state_dir: str) -> str | None:
    """The prepared /dev under state_dir (made, or checked, now); None when it
    cannot be had here."""
    if os.geteuid() != 0:
        return None
    path = os.path.join(state_dir, "dev")
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
        if not tmpfs.is_mounted(path):
            # Devices allowed (no nodev), nothing setuid, nothing executable; tiny.
            tmpfs.mount(path, "stockade-dev", tmpfs.MS_NOSUID | tmpfs.MS_NOEXEC, "size=64k,mode=0755")
        _fill(path)
        check(path)
    except OSError as exc:
        log.warning("no prepared /dev (%s): boxes build their own with bwrap's --dev", exc)
        return None
    return path


def check(path: str) -> None:
    """OSError unless `path` holds exactly the tree above, owned by root, with
    nothing anyone else could have changed."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise OSError(errno.EPERM, f"{path} is not a root-owned directory only root can write")
    names = set(os.listdir(path))
    if names != {*NODES, *LINKS, *DIRS}:
        raise OSError(errno.EEXIST, f"{path} holds {sorted(names)}")
    for name, (major, minor) in NODES.items():
        st = os.lstat(os.path.join(path, name))
        if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != major or os.minor(st.st_rdev) != minor \
                or st.st_uid != 0 or stat.S_IMODE(st.st_mode) != 0o666:
            raise OSError(errno.EEXIST, f"{path}/{name} is not the {major}:{minor} device")
    for name, target in LINKS.items():
        if os.readlink(os.path.join(path, name)) != target:
            raise OSError(errno.EEXIST, f"{path}/{name} does not point to {target}")
    for name in DIRS:
        st = os.lstat(os.path.join(path, name))
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or stat.S_IMODE(st.st_mode) != 0o755:
            raise OSError(errno.EEXIST, f"{path}/{name} is not a root-owned directory")


def _fill(path: str) -> None:
    """Make what is missing (a tmpfs of ours: only Stockade writes there; another
    Sandbox making the same entry at the same time is fine, check() decides).
    Modes are set with chmod, never through the umask, which is the whole
    process's (a server's other threads create files meanwhile)."""
    for name, (major, minor) in NODES.items():
        node = os.path.join(path, name)
        with contextlib.suppress(FileExistsError):
            os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(major, minor))
            os.chmod(node, 0o666)
    for name, target in LINKS.items():
        with contextlib.suppress(FileExistsError):
            os.symlink(target, os.path.join(path, name))
    for name in DIRS:
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.join(path, name), 0o700)
            os.chmod(os.path.join(path, name), 0o755)
