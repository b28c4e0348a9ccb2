"""The small tmpfs filesystems a root Sandbox mounts in its state directory
(box directories, the prepared /dev): mounted once, kept across runs."""

from __future__ import annotations

import ctypes
import os

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8


def is_mounted(path: str) -> bool:
    """Whether something is mounted exactly at `path` (in our mount namespace)."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def mount(path: str, source: str, flags: int, options: str) -> None:
    """mount(2) a tmpfs named `source` at `path`; OSError with the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), path.encode(), b"tmpfs", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot mount a tmpfs at {path}: {os.strerror(err)}")
