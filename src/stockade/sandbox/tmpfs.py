"""The small tmpfs filesystems a root Sandbox mounts in its state directory
(box directories, the prepared /dev): mounted once, kept across runs."""

from __future__ import annotations

import ctypes
import os

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20


def is_mounted(path: str) -> bool:
    """Whether something is mounted exactly at `path` (in our mount namespace)."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def superblock_options(path: str) -> dict[str, str] | None:
    """The options of the tmpfs mounted at `path` (the last mount there), as
    the kernel shows them ("size": "1024k"...); None if that is no tmpfs."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                rest = fields[fields.index("-") + 1:]  # type, source, superblock options
                found = dict(o.partition("=")[::2] for o in rest[2].split(",")) if rest[0] == "tmpfs" else None
    return found


def mount(path: str, source: str, flags: int, options: str, remount: bool = False) -> None:
    """mount(2) a tmpfs named `source` at `path`, or change the options of the
    one there (`remount`: `flags` must be given again); OSError with the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), path.encode(), b"tmpfs", flags | (MS_REMOUNT if remount else 0),
                  options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot mount a tmpfs at {path}: {os.strerror(err)}")
