"""The two short steps around bubblewrap: become the slot's uid, then set rlimits.

Outside the box, as root, something must switch to the slot's host uid and exec
bwrap (Popen(user=) cannot vfork, so it would copy the whole supervisor on every
spawn). That same step sets the rlimits, so bwrap and everything in the box
inherit them, without another exec. Where that cannot be done (rootless, where
nothing switches uid; limits so tight that bwrap itself could not build the box
under them; a warm box, built before its run is known), the box's first program
sets them and execs the user's (setting them from outside with prlimit(2) needs
CAP_SYS_RESOURCE, which many container hosts lack, this one included).

Both steps are done by `stockade-launch` (launch.c, built statically against
musl by `make setup` into the venv's libexec/): one exec of a small static
binary each, without glibc's start-up (~0.25 ms of CPU per exec on a VM).
As root, libstockade-spawn (spawn.py) takes the outside step itself, in our
vfork child, with launch.c's own code (steps.h), and saves that exec.
Without the launcher, the same two steps are done by util-linux's setpriv and
prlimit, two dynamically linked execs that cost about a millisecond more each."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from stockade.errors import SandboxUnavailable
from stockade.sandbox import bwrap
from stockade.sandbox.model import Limits

LAUNCHER_NAME = "stockade-launch"
# Where `make setup` builds it: the venv's (or installation's) libexec/.
DEFAULT_LAUNCHER = os.path.join(sys.prefix, "libexec", LAUNCHER_NAME)
# Where the box sees it (a read-only bind of the Sandbox's own copy).
BOX_LAUNCHER = bwrap.BOX_LAUNCHER

PRLIMIT = "/usr/bin/prlimit"
SETPRIV = "/usr/bin/setpriv"


def cpu_rlimit(limits: Limits) -> int:
    """RLIMIT_CPU's soft value, whole seconds (SIGXCPU, then SIGKILL a second later)."""
    if limits.per_process_time:
        return max(1, math.ceil(limits.cpu_time))  # the limit itself, per process
    return math.ceil(limits.cpu_time) + 1  # a backstop for the cgroup CPU watch


def rlimits(limits: Limits, per_process_fallback: bool) -> list[tuple[str, int, int]]:
    """(name, soft, hard) of every rlimit a box's program starts with."""
    cpu = cpu_rlimit(limits)
    values = [
        ("cpu", cpu, cpu + 1),
        # No file bigger than this (SIGXFSZ): /box and /tmp stay small.
        ("fsize", limits.file_size, limits.file_size),
        # Descriptor exhaustion stays inside the box.
        ("nofile", limits.open_files, limits.open_files),
        ("stack", limits.stack, limits.stack),
        # No core dumps: written where nobody looks, and slowly. 1 byte, not 0:
        # a kernel.core_pattern that pipes to a helper (systemd-coredump, apport)
        # ignores a limit of 0 and starts that helper, as root on the host, for
        # every crash in a box; the kernel refuses to pipe a dump at exactly 1 (its
        # guard against recursive crashes), and writes none to a file under a page.
        ("core", 1, 1),
        # Locked memory cannot be reclaimed: none.
        ("memlock", 0, 0),
    ]
    if per_process_fallback:
        # Without a cgroup these are all we have (per process, per uid).
        values += [("nproc", limits.box_processes, limits.box_processes), ("as", limits.memory, limits.memory)]
    elif limits.per_process_memory:
        values += [("as", limits.memory, limits.memory)]
    return values


# The least bwrap needs to build a box under the program's rlimits.
_SETUP_NOFILE = 32
_SETUP_STACK = 1 << 20
_SETUP_FSIZE = 1 << 20


def settable_outside(values: list[tuple[str, int, int]]) -> bool:
    """Whether these rlimits may be set before bubblewrap starts (by the step
    that switches to the slot's uid, see identity_argv): they then bind bwrap's
    own setup too, which needs a few descriptors, some stack and room to map
    memory. Tighter ones are set by the box's first program (rlimit_argv)."""
    limit = {name: soft for name, soft, _ in values}
    return (limit["nofile"] >= _SETUP_NOFILE and limit["stack"] >= _SETUP_STACK
            and limit["fsize"] >= _SETUP_FSIZE and "as" not in limit and "nproc" not in limit)


def rlimit_argv(values: Sequence[tuple[str, int, int]], launcher: str | None = BOX_LAUNCHER,
                report: Sequence[str] = ()) -> list[str]:
    """The box's first program, setting `values` (from rlimits()), and its
    options, up to and including "--". With `report` (report_options(); the
    launcher only), it stays as the box's pid 1 and reports the program's wait
    status and times."""
    if launcher:
        # (the report first: it reports their failure)
        return [launcher, *report, *_rlimit_options(values), "--"]
    if report:
        raise ValueError("only the launcher reports a wait status")
    return [PRLIMIT, *(f"--{name}={soft}:{hard}" for name, soft, hard in values), "--"]


def report_options(status_fd: int, cpu_fd: int | None = None) -> list[str]:
    """The launcher's options for its report: the program's wait status and
    CPU time on `status_fd`, that time read from `cpu_fd` (the box cgroup's
    CPU counter, open read-only; None: the program's rusage). launch.c says how."""
    return [f"--status-fd={status_fd}", *([f"--cpu-fd={cpu_fd}"] if cpu_fd is not None else [])]


def _rlimit_options(values: Sequence[tuple[str, int, int]]) -> list[str]:
    """stockade-launch's options setting `values`."""
    return [f"--rlimit={name}:{soft}:{hard}" for name, soft, hard in values]


def identity_argv(uid: int, gid: int, launcher: str | None, netns_fd: int | None = None,
                  rlimits: Sequence[tuple[str, int, int]] = (), cgroup_procs: Sequence[str] = ()) -> list[str]:
    """Switch to uid/gid with no supplementary groups, then exec what follows;
    with the launcher, first join the network namespace open on netns_fd, set
    `rlimits` and move into the cgroup of `cgroup_procs` (its cgroup.procs
    files), so that what it execs starts there."""
    if launcher:
        netns = [f"--netns-fd={netns_fd}"] if netns_fd is not None else []
        groups = [f"--cgroup-procs={path}" for path in cgroup_procs]
        return [launcher, *netns, *groups, *_rlimit_options(rlimits), f"--uid={uid}", f"--gid={gid}", "--"]
    if rlimits or cgroup_procs:
        raise ValueError("rlimits and cgroups before bubblewrap need the launcher")
    return [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


def make_netns(launcher: str) -> int:
    """A new network namespace holding only its loopback, up; an fd to it.
    Made by root in the host's user namespace: a box joining it has no
    capability over it (it cannot even bring the loopback down)."""
    proc = subprocess.Popen([launcher, "--make-netns"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={}, close_fds=True)
    try:
        if proc.stdout.readline() != b"ready\n":
            raise SandboxUnavailable(f"cannot make a network namespace: {proc.stderr.read().decode().strip()}")
        return os.open(f"/proc/{proc.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        proc.stdin.close()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def vet(path: str, owners: Sequence[int]) -> None:
    """A launcher someone else could replace would decide what every box runs."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise SandboxUnavailable(f"{path} is not a regular file")
    if st.st_uid not in owners:
        raise SandboxUnavailable(f"{path} is owned by uid {st.st_uid}, not by {' or '.join(map(str, owners))}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SandboxUnavailable(f"{path} is writable by group or others")
    if not st.st_mode & stat.S_IXUSR:
        raise SandboxUnavailable(f"{path} is not executable")


def install(source: str | None, state_dir: str) -> str | None:
    """Copy the built launcher into the state directory (0755, ours), where
    every slot uid can reach it; None when there is none: use the fallbacks.

    The copy is what runs, outside and inside the box: a source under a
    private home directory would not be reachable by the slot uids."""
    if source is None or not os.path.exists(source):
        for tool in (PRLIMIT, SETPRIV):
            if not os.access(tool, os.X_OK):
                raise SandboxUnavailable(f"{tool} not found: install Debian's util-linux (or run make setup)")
        return None
    vet(source, owners=(0, os.geteuid()))
    target = os.path.join(state_dir, LAUNCHER_NAME)
    built = os.stat(source)
    try:
        copied = os.stat(target)
        if (copied.st_size, copied.st_mtime_ns) == (built.st_size, built.st_mtime_ns):
            vet(target, owners=(os.geteuid(),))
            return target  # copied already (by us, or by another process: same directory)
    except (FileNotFoundError, SandboxUnavailable):
        pass
    # Many processes may start at once: each copies to its own temporary file,
    # and the rename, atomic, leaves one whole copy whoever comes last.
    fd, tmp = tempfile.mkstemp(prefix=f".{LAUNCHER_NAME}.", dir=state_dir)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)
        os.utime(tmp, ns=(built.st_atime_ns, built.st_mtime_ns))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target
