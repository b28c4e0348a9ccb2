"""Cgroups v1 and v2 behind one interface: memory (+swap) and pids limits,
CPU time, peak memory, OOM kills, kill-all, removal.

Knows only the cgroup filesystem: no bwrap, no rlimits (the supervisor falls back
to those when `detect()` answers "none"). Everything here is on the per-run hot
path, so each step is a few open/write/close calls and no polling unless a kill
has to wait for the kernel.

INTERFACE CONTRACT (implemented by the cgroup helper; the supervisor relies on it):

    backend = detect(root="/sys/fs/cgroup", parent="stockade")  # -> CgroupBackend
    backend.kind            # "v1", "v2" or "none"
    backend.reason          # str: why this backend (or why none), for `stockade doctor`
    cg = backend.create(name, memory=bytes|None, pids=int|None)  # -> Cgroup; removes a stale one first
    cg.set_limits(memory=bytes|None, pids=int|None)  # change the limits (a warm box's run)
    cg.add(pid)             # move pid into the group (every v1 hierarchy)
    cg.cpu_time() -> float  # seconds of CPU used by the group
    cg.memory_peak() -> int # bytes
    cg.exact_peak           # False: memory_peak() is a sample after the run (v2 before Linux 5.19)
    cg.oom_killed() -> bool # an OOM kill happened in the group
    cg.pids() -> list[int]
    cg.kill()               # SIGKILL every process, even ones forking (v2 cgroup.kill; v1 freeze/kill/thaw)
    cg.remove()             # rmdir, killing first if it is not empty (idempotent; "already gone" is fine)
    cg.close()              # forget the group, left as it is: close the files we keep open of it
    cg.recycle() -> bool    # after a run: True if the group may serve its slot's next run (else remove it)
    cg.renew(memory, pids)  # a recycled group, ready for that run: counters from zero, new limits;
                            # OSError or SandboxError when it is gone (then create a new one)
    backend.names()         # the groups under our parent now, any process's
    backend.discard(name)   # remove group `name` if it exists, killing what runs in it
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time

from stockade.errors import SandboxError

__all__ = ["Cgroup", "CgroupBackend", "NoCgroup", "V1Backend", "V2Backend", "detect"]

# Controllers we need in v2; cpu.stat (usage_usec) exists in every cgroup without "cpu".
_V2_CONTROLLERS = ("memory", "pids")
# v1 hierarchy -> a file only that controller creates in a child cgroup.
_V1_HIERARCHIES = {
    "memory": "memory.limit_in_bytes",
    "pids": "pids.max",
    "cpuacct": "cpuacct.usage",
    "freezer": "freezer.state",
}
# Rootless v2: the leaf we move ourselves into, so our own delegated cgroup may
# enable controllers for its children (v2 forbids processes in such a cgroup).
_SUPERVISOR_LEAF = "supervisor"
# Bound on waiting for the kernel after a kill (exit and memory release are async).
_KILL_WAIT = 2.0
# Bound on waiting for a v1/v2 freezer to report frozen before killing anyway.
_FREEZE_WAIT = 0.5
# Cgroup files are seq_files: a read shorter than the buffer means end of file.
_READ_SIZE = 65536
# A v1 group serves its slot's next run only while it holds no more than this
# after a run (kernel objects and page cache its programs were first to touch,
# which stay charged to it until it is removed; removing hands them to the parent).
RECYCLE_MAX_CHARGE = 2 << 20
# v1 files a recycled group both reads and writes: one descriptor each.
_READ_WRITE = frozenset({"cpuacct.usage", "memory.max_usage_in_bytes"})


def _mkdir(path: str) -> None:
    """Create one cgroup directory; the kernel fills it with its files.

    Module-level so the v2 tests can replace it with a fake that writes those files.
    """
    os.mkdir(path, 0o755)


def _rmdir(path: str) -> None:
    """Remove one cgroup directory; the kernel allows it despite the files inside.

    Replaced in the fake-tree tests, where the files are real and rmdir would fail.
    """
    os.rmdir(path)


def _self_cgroup() -> str:
    """Our own v2 cgroup path relative to the cgroup2 mount ("0::/path" line)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return ""


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = chunk = os.read(fd, _READ_SIZE)
        while len(chunk) == _READ_SIZE:
            chunk = os.read(fd, _READ_SIZE)
            data += chunk
    finally:
        os.close(fd)
    return data.decode()


def _write(path: str, value: str) -> None:
    # No O_CREAT: a missing file means a missing controller, never a file to create.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _keyed(text: str, key: str) -> int | None:
    """Value of `key` in a flat-keyed file ("key value" per line), None if absent."""
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return None


def _open_read_only(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SandboxError(f"cannot open {path}: {e}") from e


def _procs(path: str) -> list[int]:
    """Pids listed in a cgroup.procs file; [] when the group is already gone."""
    try:
        return [int(p) for p in _read(path).split()]
    except FileNotFoundError:
        return []


def _sigkill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _kill_until_empty(procs_path: str, what: str) -> None:
    """Wait (bounded) until the group is empty, SIGKILLing any survivor each round.

    Survivors only exist when the freeze timed out or the kernel lacks cgroup.kill,
    i.e. when a fork could race our signals; zombies do not count (they leave the
    group at exit), so the supervisor may reap its own child afterwards.
    """
    deadline = time.monotonic() + _KILL_WAIT
    delay = 0.0002
    while pids := _procs(procs_path):
        if time.monotonic() > deadline:
            raise SandboxError(f"cgroup {what}: processes {pids[:8]} survived SIGKILL")
        _sigkill(pids)
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def _rmdir_if_empty(path: str) -> bool:
    """rmdir a group that holds no process (the normal end of a run: one system
    call, no listing of its processes); False when it is busy."""
    try:
        _rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise SandboxError(f"cannot remove cgroup {path}: {e}") from e
    return True


def _rmdir_group(path: str) -> None:
    """rmdir a killed group, retrying briefly on EBUSY; gone already is fine."""
    deadline = time.monotonic() + _KILL_WAIT
    delay = 0.0002
    while True:
        try:
            _rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                raise SandboxError(f"cannot remove cgroup {path}: {e}") from e
        # The sandbox cannot create subgroups (no cgroupfs inside), but a crash
        # leftover could hold some: remove those first, then anything still inside.
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    _rmdir_group(entry.path)
        _sigkill(_procs(os.path.join(path, "cgroup.procs")))
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def _subdirs(parents) -> set[str]:
    names: set[str] = set()
    for parent in set(parents):
        with contextlib.suppress(FileNotFoundError), os.scandir(parent) as it:
            names.update(entry.name for entry in it if entry.is_dir(follow_symlinks=False))
    return names


def _limited(cg: Cgroup, memory: int | None, pids: int | None) -> Cgroup:
    """A new group with its limits set, or removed again if they cannot be."""
    try:
        cg.set_limits(memory, pids)
    except SandboxError:
        cg.remove()
        raise
    return cg


def _check_name(name: str) -> None:
    # The name becomes a path component under our parent: never let it walk out.
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise ValueError(f"bad cgroup name {name!r}")


class Cgroup:
    """One group. The base class is the "none" backend: it limits and counts nothing."""

    name = ""
    # memory_peak() is the kernel's high-water mark (False: a sample, read after the run).
    exact_peak = True

    def set_limits(self, memory: int | None = None, pids: int | None = None) -> None:
        pass

    def add(self, pid: int) -> None:
        pass

    def procs_files(self) -> list[str]:
        """The cgroup.procs files a process writes "0" to, in this order, to
        join the group itself (what add(pid) does from outside)."""
        return []

    def cpu_time(self) -> float:
        return 0.0

    def open_cpu_counter(self) -> int | None:
        """A new read-only descriptor of the file cpu_time() reads, for the
        box's launcher (launch.c --cpu-fd); None: no counter to give."""
        return None

    def memory_peak(self) -> int:
        return 0

    def oom_killed(self) -> bool:
        return False

    def pids(self) -> list[int]:
        return []

    def kill(self, wait: bool = True) -> None:
        """SIGKILL every process of the group; with `wait`, until it is empty
        (SandboxError if some survive). Without, it only signals: for a caller
        on an event loop, where waiting (seconds, for a fork bomb on a busy
        host) would hold everything else the loop runs."""

    def remove(self) -> None:
        pass

    def close(self) -> None:
        pass

    def recycle(self) -> bool:
        return False

    def renew(self, memory: int | None = None, pids: int | None = None) -> None:
        raise SandboxError("this cgroup cannot be reused")


class CgroupBackend:
    kind = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def create(self, name: str, memory: int | None = None, pids: int | None = None) -> Cgroup:
        _check_name(name)
        return Cgroup()

    def names(self) -> set[str]:
        return set()

    def discard(self, name: str) -> None:
        _check_name(name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind}: {self.reason}>"


class NoCgroup(CgroupBackend):
    """No usable cgroups: the supervisor relies on rlimits and the pid namespace."""


# ---------------------------------------------------------------- cgroup v2


class V2Cgroup(Cgroup):
    def __init__(self, backend: V2Backend, name: str) -> None:
        self.name = name
        self.path = os.path.join(backend.parent, name)
        self._backend = backend

    def _f(self, file: str) -> str:
        return os.path.join(self.path, file)

    def _stat(self, file: str) -> str:
        try:
            return _read(self._f(file))
        except OSError as e:
            raise SandboxError(f"cgroup {self.path}: cannot read {file}: {e}") from e

    def add(self, pid: int) -> None:
        try:
            _write(self._f("cgroup.procs"), str(pid))
        except OSError as e:
            raise SandboxError(f"cannot move pid {pid} into cgroup {self.path}: {e}") from e

    def procs_files(self) -> list[str]:
        return [self._f("cgroup.procs")]

    def cpu_time(self) -> float:
        return (_keyed(self._stat("cpu.stat"), "usage_usec") or 0) / 1e6

    def open_cpu_counter(self) -> int:
        return _open_read_only(self._f("cpu.stat"))

    @property
    def exact_peak(self) -> bool:
        return self._backend.has_peak

    def memory_peak(self) -> int:
        if self._backend.has_peak:
            return int(self._stat("memory.peak"))
        # Kernel < 5.19 has no memory.peak: the current usage at read time is the
        # best we have (reads after the program exited see only what is still
        # charged: the supervisor takes the largest process's RSS when higher).
        return int(self._stat("memory.current"))

    def oom_killed(self) -> bool:
        return bool(_keyed(self._stat("memory.events"), "oom_kill"))

    def pids(self) -> list[int]:
        return _procs(self._f("cgroup.procs"))

    def set_limits(self, memory: int | None = None, pids: int | None = None) -> None:
        try:
            if memory is not None:
                _write(self._f("memory.max"), str(memory))
                if self._backend.has_swap:
                    # No swap: memory.max must be the whole story (and swap is slow).
                    _write(self._f("memory.swap.max"), "0")
            if pids is not None:
                _write(self._f("pids.max"), str(pids))
        except OSError as e:
            raise SandboxError(f"cannot set limits on cgroup {self.path}: {e}") from e

    def kill(self, wait: bool = True) -> None:
        if self._backend.has_kill:
            # cgroup.kill (5.14+) kills every task and blocks forks racing with it.
            try:
                _write(self._f("cgroup.kill"), "1")
            except FileNotFoundError:
                return  # the kernel has the file, so the group is gone
        else:
            self._freeze_and_kill()
        if wait:
            _kill_until_empty(self._f("cgroup.procs"), self.path)

    def _freeze_and_kill(self) -> None:
        # Older kernels: freeze so nothing forks between reading the pids and
        # signalling them; v2 lets SIGKILL through to frozen tasks.
        pids = self.pids()
        if not pids:
            return
        if not self._backend.has_freeze:
            _sigkill(pids)  # kernel < 5.2: _kill_until_empty catches forks that raced
            return
        freeze = self._f("cgroup.freeze")
        try:
            _write(freeze, "1")
            try:
                deadline = time.monotonic() + _FREEZE_WAIT
                while _keyed(_read(self._f("cgroup.events")), "frozen") != 1:
                    if time.monotonic() > deadline:
                        break  # kill anyway; _kill_until_empty catches stragglers
                    time.sleep(0.0005)
                _sigkill(self.pids())
            finally:
                # Never leave a group frozen: its tasks could not even die.
                _write(freeze, "0")
        except FileNotFoundError:
            pass  # emptied and removed meanwhile (by whoever held the slot next)

    def remove(self) -> None:
        if _rmdir_if_empty(self.path):
            return
        self.kill()
        _rmdir_group(self.path)


class V2Backend(CgroupBackend):
    kind = "v2"

    def __init__(self, reason: str, parent: str) -> None:
        super().__init__(reason)
        self.parent = parent
        # Per-kernel features: checked once on our (non-root) parent, whose files
        # every child group has too, instead of probing on each run.
        self.has_swap = os.path.exists(os.path.join(parent, "memory.swap.max"))
        self.has_peak = os.path.exists(os.path.join(parent, "memory.peak"))
        self.has_kill = os.path.exists(os.path.join(parent, "cgroup.kill"))
        self.has_freeze = os.path.exists(os.path.join(parent, "cgroup.freeze"))

    def create(self, name: str, memory: int | None = None, pids: int | None = None) -> V2Cgroup:
        _check_name(name)
        cg = V2Cgroup(self, name)
        try:
            try:
                _mkdir(cg.path)
            except FileExistsError:
                # A supervisor crashed while this slot ran: its processes may live on.
                cg.remove()
                _mkdir(cg.path)
        except OSError as e:
            raise SandboxError(f"cannot create cgroup {cg.path}: {e}") from e
        return _limited(cg, memory, pids)

    def names(self) -> set[str]:
        return _subdirs([self.parent])

    def discard(self, name: str) -> None:
        _check_name(name)
        V2Cgroup(self, name).remove()


# ---------------------------------------------------------------- cgroup v1


class V1Cgroup(Cgroup):
    """A group in each v1 hierarchy. Its limit and counter files are opened
    once and kept open (closed by close() or remove()): a group recycled for its slot's
    next run reads and writes them with one pread or pwrite each (single
    values, read afresh each time; not cgroup.procs, whose kept descriptor
    reads back its first list).

    Recycling: a new cgroup costs a mkdir and an rmdir in each hierarchy, and a
    first open of each file the kernel creates lazily: ~0.4 ms of the
    supervisor's CPU per run. So after a run that left the group empty and
    (nearly) uncharged, the group waits for its slot's next run, which resets
    its counters (peak memory from the usage at that moment, CPU time to zero,
    the OOM-kill count as a baseline) and sets its limits. What stays charged
    (< RECYCLE_MAX_CHARGE) is subtracted from the peak it reports."""

    def __init__(self, backend: V1Backend, name: str) -> None:
        self.name = name
        self._backend = backend
        self.paths = {c: os.path.join(p, name) for c, p in backend.parents.items()}
        # Distinct directories: co-mounted hierarchies (cpu,cpuacct) share one.
        self._dirs = list(dict.fromkeys(self.paths.values()))
        self._memory: int | None = None  # the limit we set last (None: a new group, unlimited)
        self._fds: dict[tuple[str, str], int] = {}  # (8 at most: see _fd)
        # Counters at renew(): what a recycled group had before this run.
        self._base_memory = 0
        self._base_ooms = 0

    def _f(self, controller: str, file: str) -> str:
        return os.path.join(self.paths[controller], file)

    def _fd(self, controller: str, file: str, flags: int = os.O_RDONLY) -> int:
        fd = self._fds.get((controller, file))
        if fd is None:
            flags = os.O_RDWR if file in _READ_WRITE else flags
            # No O_CREAT: a missing file means a missing controller, never a file to create.
            fd = self._fds[controller, file] = os.open(self._f(controller, file), flags | os.O_CLOEXEC)
        return fd

    def _set(self, controller: str, file: str, value: str) -> None:
        os.pwrite(self._fd(controller, file, os.O_WRONLY), value.encode(), 0)

    def _stat(self, controller: str, file: str) -> str:
        try:
            return os.pread(self._fd(controller, file), _READ_SIZE, 0).decode()
        except OSError as e:
            raise SandboxError(f"cgroup {self.paths[controller]}: cannot read {file}: {e}") from e

    def add(self, pid: int) -> None:
        for path in self.procs_files():
            try:
                _write(path, str(pid))
            except OSError as e:
                raise SandboxError(f"cannot move pid {pid} into cgroup {os.path.dirname(path)}: {e}") from e

    def procs_files(self) -> list[str]:
        # Freezer first: whatever joined any of our groups can then be killed.
        return [os.path.join(d, "cgroup.procs") for d in reversed(self._dirs)]

    def set_limits(self, memory: int | None = None, pids: int | None = None) -> None:
        try:
            if memory is not None:
                self._set_memory(str(memory), self._memory is not None and memory > self._memory)
                self._memory = memory
            if pids is not None:
                self._set("pids", "pids.max", str(pids))
        except OSError as e:
            raise SandboxError(f"cannot set limits on cgroup {self.name}: {e}") from e

    def _set_memory(self, value: str, raising: bool) -> None:
        # memsw may never be below the limit: lowering, the limit goes first;
        # raising, memsw does. Equal values mean no swap at all.
        files = ["memory.limit_in_bytes"]
        if self._backend.has_memsw:
            files.insert(0 if raising else 1, "memory.memsw.limit_in_bytes")
        for file in files:
            self._set("memory", file, value)

    def renew(self, memory: int | None = None, pids: int | None = None) -> None:
        # Each write also proves that hierarchy's group is still the one we
        # opened: a process that held the slot since may have removed it (ENODEV).
        self._set("freezer", "freezer.state", "THAWED")
        self._set("cpuacct", "cpuacct.usage", "0")
        self._set("memory", "memory.max_usage_in_bytes", "0")  # peak := usage now
        self._base_memory = int(self._stat("memory", "memory.max_usage_in_bytes"))
        self._base_ooms = self._ooms()
        if memory is None:  # unlimited, as in a new group
            self._set_memory("-1", raising=True)
            self._memory = None
        if pids is None:
            self._set("pids", "pids.max", "max")
        self.set_limits(memory, pids)

    def recycle(self) -> bool:
        try:
            # Freezer's list: the first each process joins (procs_files), so it
            # holds everything that joined any of them. Opened anew: a kept
            # cgroup.procs descriptor reads back the list of its first read.
            if _procs(self._f("freezer", "cgroup.procs")):
                return False
            return int(self._stat("memory", "memory.usage_in_bytes")) <= RECYCLE_MAX_CHARGE
        except (OSError, SandboxError, ValueError):
            return False

    def cpu_time(self) -> float:
        return int(self._stat("cpuacct", "cpuacct.usage")) / 1e9

    def open_cpu_counter(self) -> int:
        # Its own descriptor, read-only (ours is read-write, to reset the counter).
        return _open_read_only(self._f("cpuacct", "cpuacct.usage"))

    def memory_peak(self) -> int:
        return max(0, int(self._stat("memory", "memory.max_usage_in_bytes")) - self._base_memory)

    def _ooms(self) -> int:
        kills = _keyed(self._stat("memory", "memory.oom_control"), "oom_kill")
        if kills is not None:
            return kills
        # Kernel < 4.13 has no oom_kill counter: hitting the limit is the closest sign
        # (it may also count reclaim that succeeded without killing).
        return int(self._stat("memory", "memory.failcnt"))

    def oom_killed(self) -> bool:
        return self._ooms() > self._base_ooms

    def pids(self) -> list[int]:
        return _procs(self._f("freezer", "cgroup.procs"))

    def kill(self, wait: bool = True) -> None:
        procs = self._f("freezer", "cgroup.procs")
        if not _procs(procs):
            return  # empty (or gone): nothing left that could fork
        state = self._f("freezer", "freezer.state")
        # Frozen tasks cannot fork, so the pid list we read is complete; the
        # SIGKILLs stay pending and take effect at THAWED.
        _write(state, "FROZEN")
        try:
            deadline = time.monotonic() + _FREEZE_WAIT
            while _read(state).strip() != "FROZEN":
                if time.monotonic() > deadline:
                    break  # a task stuck in the kernel: kill anyway, stragglers below
                time.sleep(0.0005)
            _sigkill(_procs(procs))
        finally:
            # Never leave a group frozen: its tasks could not even die.
            _write(state, "THAWED")
        if wait:
            _kill_until_empty(procs, self.paths["freezer"])

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def remove(self) -> None:
        self.close()
        # A process is in every hierarchy at once: if the first directory goes,
        # the group was empty and so are the others (nothing can join it again).
        if _rmdir_if_empty(self._dirs[0]):
            for d in self._dirs[1:]:
                _rmdir_group(d)
            return
        try:
            self.kill()
        except FileNotFoundError:
            pass  # removed by someone else between our reads
        for d in self._dirs:
            _rmdir_group(d)


class V1Backend(CgroupBackend):
    kind = "v1"

    def __init__(self, reason: str, parents: dict[str, str]) -> None:
        super().__init__(reason)
        self.parents = parents
        # Needs swap accounting (swapaccount=1); checked once, not per run.
        self.has_memsw = os.path.exists(
            os.path.join(parents["memory"], "memory.memsw.limit_in_bytes")
        )

    def create(self, name: str, memory: int | None = None, pids: int | None = None) -> V1Cgroup:
        _check_name(name)
        cg = V1Cgroup(self, name)
        try:
            for d in cg._dirs:
                try:
                    _mkdir(d)
                except FileExistsError:
                    # A supervisor crashed while this slot ran: start from nothing.
                    cg.remove()
                    for d2 in cg._dirs:
                        _mkdir(d2)
                    break
        except OSError as e:
            cg.remove()
            raise SandboxError(f"cannot create cgroup {name} in v1 hierarchies: {e}") from e
        return _limited(cg, memory, pids)

    def names(self) -> set[str]:
        return _subdirs(self.parents.values())

    def discard(self, name: str) -> None:
        _check_name(name)
        V1Cgroup(self, name).remove()  # (a group missing from some hierarchies too)


# ---------------------------------------------------------------- detection


class _Unusable(Exception):
    """One backend cannot be used; the message goes into the reason."""


def _ensure_dir(path: str) -> None:
    try:
        _mkdir(path)
    except FileExistsError:
        pass
    except OSError as e:
        raise _Unusable(f"cannot create {path}: {e.strerror}") from e
    if not os.access(path, os.W_OK):
        raise _Unusable(f"{path} is not writable")


def _detect_v1(root: str, parent: str) -> V1Backend:
    parents: dict[str, str] = {}
    for controller, marker in _V1_HIERARCHIES.items():
        base = os.path.join(root, controller)
        # `tasks` exists only in v1 hierarchies (never in cgroup2).
        if not os.path.exists(os.path.join(base, "tasks")):
            raise _Unusable(f"no {controller} hierarchy at {base}")
        p = os.path.join(base, parent)
        _ensure_dir(p)
        if not os.path.exists(os.path.join(p, marker)):
            raise _Unusable(f"{base} is not the {controller} controller (no {marker})")
        # Resolved, so co-mounted hierarchies (cpu,cpuacct links) share one directory.
        parents[controller] = os.path.realpath(p)
    # memory.use_hierarchy: our limits sit on the leaf group itself, so they hold
    # whatever the parents' setting (and kernels >= 5.17 always use the hierarchy).
    memsw = os.path.exists(os.path.join(parents["memory"], "memory.memsw.limit_in_bytes"))
    reason = f"cgroup v1: {', '.join(_V1_HIERARCHIES)} under {root}/*/{parent}" + (
        "" if memsw else "; no swap accounting (boot with swapaccount=1): swap is not limited"
    )
    return V1Backend(reason, parents)


def _check_given(cgroup: str) -> None:
    """Top-down: a group may enable for its children only what its parent
    enabled for it (else ENOENT, which would say nothing of the cause)."""
    given = _read(os.path.join(cgroup, "cgroup.controllers")).split()
    if lacking := [c for c in _V2_CONTROLLERS if c not in given]:
        raise _Unusable(
            f"{cgroup} was not given {' '.join(lacking)} by its parent (its cgroup.controllers: "
            f"{' '.join(given) or 'none'}); the parent must enable them: under systemd, Delegate=yes "
            "(or Delegate=memory pids) on the unit stockade runs in, for a user's units on user@.service"
        )


def _enable(cgroup: str) -> None:
    """Make memory and pids available to the children of `cgroup`."""
    have = _read(os.path.join(cgroup, "cgroup.subtree_control")).split()
    missing = [c for c in _V2_CONTROLLERS if c not in have]
    if not missing:
        return
    _check_given(cgroup)
    # "No internal processes": a non-root cgroup (it has cgroup.type) holding
    # processes cannot hand domain controllers to children; refuse, say why.
    if os.path.exists(os.path.join(cgroup, "cgroup.type")) and _procs(os.path.join(cgroup, "cgroup.procs")):
        raise _Unusable(
            f"{cgroup} holds processes, so cgroup v2 cannot enable {'+'.join(missing)} "
            "for its children (no internal processes rule); move them to a leaf cgroup"
        )
    try:
        _write(os.path.join(cgroup, "cgroup.subtree_control"), " ".join(f"+{c}" for c in missing))
    except OSError as e:
        raise _Unusable(f"cannot enable {' '.join(missing)} in {cgroup}: {e.strerror}") from e


def _may_move(source: str, target: str) -> bool:
    """Delegation containment: a writer other than root may move a process from
    group `source` to `target` only if it may write the cgroup.procs of the
    lowest group holding both (else EACCES)."""
    return os.access(os.path.join(os.path.commonpath([source, target]), "cgroup.procs"), os.W_OK)


def _delegated_base(mount: str, parent: str) -> tuple[str, str]:
    """Where may we create our parent, not being root of the whole hierarchy
    (not root, or root in a container whose cgroup namespace makes its own
    group the mount's root)? Returns (base, note)."""
    who = "not root" if os.geteuid() != 0 else "in a cgroup namespace (a container)"
    own = os.path.normpath(os.path.join(mount, _self_cgroup().lstrip("/")))
    given = os.path.join(mount, parent)
    outside = ""
    if os.access(given, os.W_OK):
        # Our boxes start as our children, in our cgroup: each must be moved from there.
        if _may_move(own, given):
            return mount, f"delegated {given}"
        outside = (f"{given} is delegated to us, but our cgroup {own} is outside it, so the kernel would "
                   "refuse to move our boxes there (start stockade inside it); ")
    if os.path.basename(own) == _SUPERVISOR_LEAF and (
        os.path.isdir(os.path.join(os.path.dirname(own), parent))
        or not _procs(os.path.join(os.path.dirname(own), "cgroup.procs"))
    ):
        # detect() ran before and moved us here (even if it failed after that):
        # never a leaf in the leaf.
        return os.path.dirname(own), "own delegated cgroup (already set up)"
    if not os.access(own, os.W_OK) or not os.access(os.path.join(own, "cgroup.procs"), os.W_OK):
        how = ("start stockade alone in a delegated cgroup (systemd-run --user --scope -p Delegate=yes ...)"
               if os.geteuid() != 0 else
               "the container's cgroup mount is read-only (Docker mounts it writable with --privileged)")
        raise _Unusable(f"{outside}{who} and our cgroup {own} is not writable: {how}")
    others = set(_procs(os.path.join(own, "cgroup.procs"))) - {os.getpid()}
    if others:
        raise _Unusable(
            f"{outside}{who} and our cgroup {own} also holds pids {sorted(others)[:8]}: a cgroup holding "
            "processes cannot give memory and pids to groups below it (no internal processes rule), and "
            "we move only ourselves out; start stockade alone in its cgroup (a container's only process, "
            "or systemd-run --user --scope -p Delegate=yes ...)"
        )
    _check_given(own)  # before moving: else a later detect() would nest a leaf in the leaf
    # We are alone in our delegated cgroup: move into a leaf child so the cgroup
    # itself becomes process-free and may enable controllers for our boxes.
    leaf = os.path.join(own, _SUPERVISOR_LEAF)
    _ensure_dir(leaf)
    try:
        _write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
    except OSError as e:
        raise _Unusable(f"cannot move ourselves into {leaf}: {e.strerror}") from e
    return own, f"own delegated cgroup (this process moved to {leaf})"


def _detect_v2(root: str, parent: str) -> V2Backend:
    # Pure v2 mounts cgroup2 at root; hybrid hosts mount it at root/unified.
    for mount in (root, os.path.join(root, "unified")):
        if os.path.exists(os.path.join(mount, "cgroup.controllers")):
            break
    else:
        raise _Unusable(f"no cgroup2 mount at {root}")
    # Only a non-root group has cgroup.type: a mount whose root has it is a
    # cgroup namespace's view (a container's), its root our own group.
    namespaced = os.path.exists(os.path.join(mount, "cgroup.type"))
    available = _read(os.path.join(mount, "cgroup.controllers")).split()
    missing = [c for c in _V2_CONTROLLERS if c not in available]
    if missing:
        hint = ("the container's cgroup was not given them" if namespaced
                else "bound to v1 hierarchies, or disabled at boot?")
        raise _Unusable(
            f"cgroup2 at {mount} lacks {', '.join(missing)} (controllers: "
            f"{' '.join(available) or 'none'}; {hint})"
        )
    if os.geteuid() == 0 and not namespaced:
        # The hierarchy's root: exempt from the no internal processes rule.
        base, where = mount, mount
    else:
        base, where = _delegated_base(mount, parent)
    _enable(base)
    p = os.path.join(base, parent)
    _ensure_dir(p)
    _enable(p)
    backend = V2Backend("", p)
    features = [
        "swap limit" if backend.has_swap else "NO swap limit (memory.swap.max missing)",
        "memory.peak" if backend.has_peak else "no memory.peak (kernel < 5.19: peak is the largest process's RSS)",
        "cgroup.kill" if backend.has_kill else "no cgroup.kill (kernel < 5.14: freeze and kill)",
    ]
    backend.reason = f"cgroup v2 at {p} ({where}): memory, pids; {', '.join(features)}"
    return backend


def detect(root: str = "/sys/fs/cgroup", parent: str = "stockade") -> CgroupBackend:
    """Pick the cgroup backend for this host, creating our `parent` group(s).

    v1 first when its memory, pids, cpuacct and freezer hierarchies are usable
    (hybrid hosts bind those controllers to v1), then v2, else "none" with the reasons.

    >>> backend = detect()
    >>> backend.kind, backend.reason  # doctest: +SKIP
    ('v1', 'cgroup v1: memory, pids, cpuacct, freezer under /sys/fs/cgroup/*/stockade')
    """
    _check_name(parent)
    notes = []
    for version, probe in (("v1", _detect_v1), ("v2", _detect_v2)):
        try:
            return probe(root, parent)
        except _Unusable as e:
            notes.append(f"{version}: {e}")
        except OSError as e:
            notes.append(f"{version}: {e}")
    return NoCgroup("no usable cgroups (" + "; ".join(notes) + "): rlimits only")


# Options of a cgroup2 superblock that are mount flags, not cgroup options.
_MOUNT_FLAGS = {"rw", "ro"}


def favordynmods_plan(mountinfo: str) -> tuple[str, str] | None:
    """The cgroup2 mount to remount, and its option string, so that the kernel
    favours task migration (None when one already does, or there is none).

    Every move of a process between cgroups takes a global rwsem whose writer
    waits for an RCU grace period when it was idle: several milliseconds per run,
    on v1 as on v2. `favordynmods` keeps that semaphore writer-ready (the
    kernel's option for hosts that move tasks often; forks and exits get a
    little slower). It is global, so one cgroup2 mount is enough; the mount's
    own cgroup options are kept, since a remount resets those it does not list."""
    candidates = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        sep = fields.index("-")
        if fields[sep + 1] != "cgroup2":
            continue
        options = [o for o in fields[sep + 3].split(",") if o not in _MOUNT_FLAGS]
        if "favordynmods" in options:
            return None
        candidates.append((fields[4], ",".join([*options, "favordynmods"])))
    return candidates[0] if candidates else None


def favor_dynamic_migrations(mountinfo_path: str = "/proc/self/mountinfo", remount: bool = True) -> str:
    """Apply favordynmods_plan as root (`remount`); a line for `stockade doctor` either way."""
    import ctypes

    with open(mountinfo_path) as f:
        plan = favordynmods_plan(f.read())
    if plan is None:
        return "favordynmods on (fast task migration)"
    target, options = plan
    if not remount:
        return f"favordynmods off: switching it on remounts {target}, which needs root"
    libc = ctypes.CDLL(None, use_errno=True)
    MS_REMOUNT = 32
    if libc.mount(b"cgroup2", target.encode(), b"cgroup2", MS_REMOUNT, options.encode()) != 0:
        return f"favordynmods off: cannot remount {target}: {os.strerror(ctypes.get_errno())}"
    return f"favordynmods switched on at {target} (fast task migration)"
