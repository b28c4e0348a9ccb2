"""Start bubblewrap as a slot's uid without an exec in between (root only).

stockade-launch (launch.py) switches to the slot's uid, joins the box's cgroup
and the slot's network namespace, sets the rlimits and execs bwrap: one more
exec per box, ~0.4 ms of wall on the project machine. libstockade-spawn
(spawn.c, built by `make setup` beside the launcher) does the same steps in a
vfork child that then execs bwrap itself. Without the library, the launcher
does them, as before; the launcher is still what runs inside the box.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
from collections.abc import Sequence

from stockade.sandbox import launch

LIBRARY_NAME = "libstockade-spawn.so"
DEFAULT_LIBRARY = os.path.join(sys.prefix, "libexec", LIBRARY_NAME)

# spawn.c's enum step.
_STEPS = ["vfork", "joining the slot's network namespace", "joining the box's cgroup", "setting an rlimit",
          "dropping supplementary groups", "switching gid", "switching uid", "checking the new identity",
          "placing descriptors", "entering /", "resetting signals", "exec"]


class _Failure(ctypes.Structure):
    _fields_ = [("step", ctypes.c_int), ("error", ctypes.c_int), ("index", ctypes.c_int)]


def _strings(items: Sequence[str | bytes]) -> ctypes.Array:
    """A NULL-terminated char *[] (ctypes keeps the bytes alive with it)."""
    return (ctypes.c_char_p * (len(items) + 1))(*[os.fsencode(item) for item in items], None)


class Spawner:
    def __init__(self, path: str) -> None:
        # A library someone else could replace would decide what every box runs.
        launch.vet(path, owners=(0, os.geteuid()))
        self.path = path
        self._spawn = ctypes.CDLL(path).stockade_spawn  # (ctypes drops the GIL during the call)
        self._spawn.restype = ctypes.c_int
        int_p, ull_p = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_ulonglong)
        self._spawn.argtypes = [
            ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p), int_p,
            int_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
            int_p, ull_p, ull_p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(_Failure),
        ]

    def spawn(self, argv: Sequence[str], *, stdio: tuple[int, int, int], keep: Sequence[int], uid: int, gid: int,
              netns_fd: int | None = None, cgroup_procs: Sequence[str] = (),
              rlimits: Sequence[tuple[str, int, int]] = ()) -> int:
        """Start argv[0] (an absolute path) with an empty environment, in /, as
        uid/gid with no supplementary groups, after joining the namespace open
        on netns_fd, writing "0" to each cgroup_procs file and setting rlimits
        ((name, soft, hard), as launch.rlimits makes them). Only `stdio` (as
        0, 1, 2; each above 2) and `keep` pass to it. The pid, or OSError."""
        failure = _Failure()
        nrl = len(rlimits)
        pid = self._spawn(
            os.fsencode(argv[0]), _strings(argv), _strings([]), (ctypes.c_int * 3)(*stdio),
            (ctypes.c_int * len(keep))(*keep), len(keep), -1 if netns_fd is None else netns_fd,
            _strings(cgroup_procs), len(cgroup_procs),
            (ctypes.c_int * nrl)(*(getattr(resource, f"RLIMIT_{name.upper()}") for name, _, _ in rlimits)),
            (ctypes.c_ulonglong * nrl)(*(soft for _, soft, _ in rlimits)),
            (ctypes.c_ulonglong * nrl)(*(hard for _, _, hard in rlimits)), nrl,
            uid, gid, ctypes.byref(failure),
        )
        if pid < 0:
            step = _STEPS[failure.step] if 0 <= failure.step < len(_STEPS) else f"step {failure.step}"
            if failure.step == 2:
                step += f" ({cgroup_procs[failure.index]})"
            elif failure.step == 3:
                step += f" ({rlimits[failure.index][0]})"
            raise OSError(failure.error, f"{step}: {os.strerror(failure.error)}")
        return pid


# spawn.c closes every other descriptor with close_range(CLOSE_RANGE_CLOEXEC).
_KERNEL_NEEDED = (5, 11)


def kernel_supported(release: str) -> bool:
    """Whether a kernel release ("6.1.0-18-amd64") has what spawn.c needs."""
    numbers = []
    for part in release.split("-")[0].split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers) >= _KERNEL_NEEDED


def load(path: str | None = DEFAULT_LIBRARY) -> Spawner | None:
    """The spawner, or None when the library is not built (or not asked for),
    or the kernel is older than 5.11: then the launcher starts bwrap."""
    if path is None or not os.path.exists(path) or not kernel_supported(os.uname().release):
        return None
    return Spawner(path)
