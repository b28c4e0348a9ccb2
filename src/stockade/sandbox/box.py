"""Sandbox: run one command in one box and account for it exactly.

One run: take a slot -> make /box -> make the cgroup -> spawn bwrap as the
slot's uid, in the cgroup, under the run's rlimits, with an empty environment
-> handshake (the box's pid 1 exists, then unblock) -> supervise on the event
loop (stdin, bounded output, wall and CPU time) -> account -> kill the whole
cgroup -> tear down. When the box's launcher reports the program's end (it
has killed and reaped everything else in the box by then), the result is made
at once and returned, and the box is torn down after, by a task of its own
(Sandbox.settle waits for those).
Every way out of `run` goes through the same `finally` blocks."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import errno
import functools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

from stockade.errors import CollectError, LimitError, SandboxError, SandboxUnavailable
from stockade.sandbox import bwrap, cgroup, devtree, launch, seccomp, spawn, tmpfs
from stockade.sandbox.etc import EtcTree
from stockade.sandbox.model import GiB, Limits, MiB, Mount, RunResult, Status, decide
from stockade.sandbox.slots import Slot, SlotPool, locked
from stockade.sandbox.workdir import (
    File,
    check_relpath,
    collect,
    copy_in,
    make_box_dir,
    remove_flat_tree,
    remove_tree,
    small_tree,
    write_files,
)

log = logging.getLogger("stockade.sandbox")

T = TypeVar("T")

__all__ = ["File", "Sandbox"]

_READ_CHUNK = 1 << 16
# After bwrap exits every box process is dead; its pipes reach EOF at once.
# This only bounds the wait if something unexpected still holds one.
_DRAIN_GRACE = 1.0
# Reads of each pipe made at once when bwrap has exited, before waiting on the
# loop for the rest (a bound, should something in the box still be writing).
_DRAIN_NOW = 16
# A CPU check never waits less than this (bounds the checks of a busy run).
_MIN_CPU_CHECK = 0.01
# Warm boxes are built with these limits, adjusted when a run takes one.
_WARM_LIMITS = Limits()
# The largest run sent to a warm box (below a pipe's 64 KiB: never blocks).
_WARM_MESSAGE_MAX = 60_000
# The largest tree a warm box takes as a copy instead of a bind (Mount.copy).
_COPY_MAX = 256 * MiB
# Entries of a box directory deleted on the event loop after a run, at most
# (more, or any directory, are deleted in a thread: see _remove_after_run).
_INLINE_REMOVALS = 64
# Files (and bytes) written into a box on the event loop, at most: more are
# written in a thread (see _write_in_box).
_INLINE_FILES = 64
_INLINE_BYTES = 4 * MiB
# Slot cgroups kept for their slots' next runs, at most (8 open files each;
# slots are taken lowest first, so the busy ones are the ones kept).
_KEPT_GROUPS = 64


def _default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/run/stockade"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "stockade") if runtime else f"/tmp/stockade-{os.getuid()}"


@dataclass(eq=False)
class _Box:
    """One box as bwrap builds it: its processes, our fds, where it lives."""

    slot: Slot
    workdir: str
    group: cgroup.Cgroup
    loop: asyncio.AbstractEventLoop
    fds: list[int] = field(default_factory=list)  # every fd we own, closed on every path out
    watched: set[int] = field(default_factory=set)  # fds the event loop watches now
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    proc: subprocess.Popen | _Child | None = None
    pidfd: int = -1  # bwrap's
    box_pid: int = -1  # the box's pid 1
    box_pidfd: int = -1
    in_w: int = -1
    out_r: int = -1
    err_r: int = -1
    stderr_to_stdout: bool = False  # the program's fd 2 is its stdout pipe (run(stderr_to_stdout=))
    block_r: int = -1
    block_w: int = -1
    exec_w: int = -1  # a warm box's run goes here
    status_r: int = -1  # the launcher's report of the program's wait status (launch.c --status-fd)
    report: bytearray = field(default_factory=bytearray)  # read from status_r so far
    # The launcher's whole report came before bwrap's exit: the result was made
    # then, and bwrap is still to be reaped (Sandbox._end).
    ended_early: bool = False
    removed: bool = False  # its end has begun (_end_now, or close())
    info_r: int = -1
    info: bytearray = field(default_factory=bytearray)  # read from info_r so far

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe2(os.O_CLOEXEC)
        self.fds.extend((r, w))
        return r, w

    def close(self, fd: int) -> None:
        if fd in self.fds:
            self.fds.remove(fd)
            os.close(fd)


@dataclass
class _Child:
    """bwrap started by the spawner (a Popen's pid and returncode, no more)."""

    pid: int
    returncode: int | None = None


@dataclass
class _Outcome:
    """What the supervisor saw; turned into a RunResult at the end."""

    events: set[Status] = field(default_factory=set)
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    message: str = ""


class Sandbox:
    """Runs commands in boxes. One Sandbox serves many concurrent runs.

    >>> sandbox = Sandbox()
    >>> result = sandbox.run_sync(["/usr/bin/python3", "-c", "print(input()[::-1])"],
    ...                           stdin=b"stressed\\n", limits=Limits(cpu_time=1))
    >>> result.status, result.stdout
    (<Status.ok: 'ok'>, b'desserts\\n')

    `slots` bounds the boxes alive at once (and the host uids used:
    `first_uid` .. `first_uid + slots - 1`). `state_dir` holds the box
    directories, the generated /etc and the slot locks (default /run/stockade
    as root). `box_space` caps the tmpfs all box directories live on (root only;
    by default, with cgroups, only each box's own memory limit bounds its files there).
    `tune_cgroups` lets a root Sandbox switch on the kernel's `favordynmods`
    (see cgroup.favordynmods_plan): without it every run on an idle host waits
    several milliseconds for the kernel to move the box into its cgroup.
    `launcher` is the static stockade-launch built by `make setup`; when it
    does not exist (or is None), util-linux's setpriv and prlimit do its work,
    about 1 ms slower per run (see launch.py). `spawner` is libstockade-spawn,
    with which, as root, bwrap starts from our own vfork child instead of
    through the launcher (spawn.py; None: through the launcher).
    `warm` boxes are kept built ahead of time, each holding a slot, so that a
    run pays only for its own program: see "warm boxes" below. They are built
    on the event loop of the runs, after each run (or by `prewarm`), with
    `warm_mounts` (say, every runtime's configuration directory) bound in each;
    a run with other mounts than those (and than Mount.copy trees) goes cold.
    """

    def __init__(
        self,
        *,
        slots: int = 32,
        state_dir: str | None = None,
        first_uid: int = 60000,
        cgroup_root: str = "/sys/fs/cgroup",
        box_space: int | None = None,
        tune_cgroups: bool = True,
        launcher: str | None = launch.DEFAULT_LAUNCHER,
        spawner: str | None = spawn.DEFAULT_LIBRARY,
        warm: int = 0,
        warm_mounts: Sequence[Mount] = (),
        netns_per_slot: bool = True,
    ):
        if not 1 <= slots <= 4096:
            raise LimitError("slots must be between 1 and 4096")
        if not 0 <= warm <= slots // 2:
            raise LimitError(f"warm must be between 0 and half the slots ({slots // 2})")
        self._bwrap = bwrap.find_bwrap()
        self.is_root = os.geteuid() == 0
        self.state_dir = state_dir or _default_state_dir()
        self.boxes_dir = os.path.join(self.state_dir, "boxes")
        self.cgroups = cgroup.detect(root=cgroup_root, parent="stockade")
        self._prepare_state(box_space)
        # Our copy of stockade-launch, or None: then setpriv and prlimit do its work.
        self.launcher = launch.install(launcher, self.state_dir)
        self.cgroup_tuning = "not tuned"
        if self.cgroups.kind != "none" and tune_cgroups:
            self.cgroup_tuning = cgroup.favor_dynamic_migrations(remount=self.is_root)
        self._slots = SlotPool(os.path.join(self.state_dir, "locks"), slots, first_uid, self.is_root)
        self._ncpu = len(os.sched_getaffinity(0))
        self.warm = warm if self.launcher else 0
        # As root with the launcher, bwrap starts set up: as the slot's uid, in the
        # box's cgroup, under the run's rlimits. Our vfork child takes those steps
        # with libstockade-spawn (no exec between), else the launcher does.
        self._bwrap_starts_set_up = self.is_root and self.launcher is not None
        self.spawner = spawn.load(spawner) if self._bwrap_starts_set_up else None
        self.warm_mounts = tuple(warm_mounts)
        _check_input(["/bin/true"], {}, {}, self.warm_mounts, b"", bwrap.BOX_DIR)
        self._warm: list[_Box] = []  # built, idle, waiting for a run
        self._warming: set[asyncio.Task] = set()
        self._ending: dict[asyncio.Task, _Box] = {}  # boxes whose ends were deferred (_end)
        self._exit_hook = False
        # Slot cgroups between runs (cgroup name -> its slot and group), empty: see _group_for.
        self._idle_groups: dict[str, tuple[Slot, cgroup.Cgroup]] = {}
        self._closed = False
        self.warm_runs = self.cold_runs = 0  # runs that found a warm box, runs that did not
        self._told_sync = False  # (run_sync's warning about warm boxes, once)
        # As root with the launcher: each slot's own network namespace (loopback
        # only), made once and joined by each of its boxes, instead of a new one
        # per box, whose creation and teardown cost more than the rest of bwrap.
        self.netns_per_slot = netns_per_slot and self._bwrap_starts_set_up
        self._netns: dict[int, int] = {}  # slot index -> fd of its network namespace
        _become_subreaper()
        self._sweep()

    # -- setup -------------------------------------------------------------

    def _prepare_state(self, box_space: int | None) -> None:
        # state_dir and boxes/ are 0711: slot uids may traverse to their own box
        # directory (bwrap binds it as that uid) but never list the others;
        # each box directory is 0700 and owned by its slot's uid.
        for path, mode in ((self.state_dir, 0o711), (self.boxes_dir, 0o711),
                           (os.path.join(self.state_dir, "locks"), 0o700)):
            os.makedirs(path, mode=mode, exist_ok=True)
            st = os.lstat(path)
            if st.st_uid != os.geteuid() or not os.path.isdir(path) or os.path.islink(path):
                raise SandboxUnavailable(f"{path} is not a directory owned by us")
            os.chmod(path, mode)
        # Processes starting at once on a new host would each build the trees
        # and mount the tmpfs over one another: one prepares, the others find it done.
        with locked(os.path.join(self.state_dir, "locks", "state.lock")):
            self._etc = EtcTree(self.state_dir)
            self._etc.current()  # build it now: a broken state directory fails here, not in a run
            # As root, /dev is one prepared directory instead of bwrap's --dev (devtree.py).
            self.dev_dir = devtree.prepare(self.state_dir)
            if self.is_root:
                _mount_box_space(self.boxes_dir, box_space, memory_counted=self.cgroups.kind != "none")

    def _sweep(self) -> None:
        """Remove the box directories and slot cgroups that a supervisor killed
        with SIGKILL left (no other way out leaves any), for the slots no
        process holds now. A slot's next run would replace them, but a slot
        may not run again for long."""
        groups = {name.removeprefix("box-") for name in self.cgroups.names() if name.startswith("box-")}
        for name in groups.union(os.listdir(self.boxes_dir)):
            uid, _, index = name.partition("-")
            if not (uid.isdigit() and index.isdigit()):
                continue
            try:
                with self._slots.holding(int(uid), int(index)) as held:
                    if held:
                        workdir = os.path.join(self.boxes_dir, name)
                        if os.path.lexists(workdir):
                            remove_tree(workdir)
                        if name in groups:
                            self.cgroups.discard(f"box-{name}")
            except (OSError, SandboxError) as exc:  # the slot's next run tries again
                log.warning("cannot remove what a killed supervisor left of box %s: %s", name, exc)

    # -- public ------------------------------------------------------------

    async def run(
        self,
        argv: Sequence[str],
        files: Mapping[str, bytes | File] | None = None,
        stdin: bytes = b"",
        limits: Limits | None = None,
        *,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
        collect: Sequence[str] = (),
        cwd: str = bwrap.BOX_DIR,
        stderr_to_stdout: bool = False,
        _use_warm: bool = True,  # (run_sync: no warm box taken or built)
    ) -> RunResult:
        """Run `argv` (paths as seen inside the box) with `files` written to
        /box and `stdin` fed to it, within `limits`. `collect` names files of
        /box (fnmatch patterns) to return in `RunResult.files` after a run
        whose status is ok (a failed run's are not read). `stderr_to_stdout`:
        the program's stderr is its stdout pipe (isolate's --stderr-to-stdout),
        so `stdout` has both in the order they were written, under one output
        limit, and `stderr` is empty.
        Raises LimitError for malformed input, and CollectError (its `result`
        the run) when what `collect` names is too much to read back; a failure
        of the box itself is a RunResult with status sandbox_error."""
        limits = limits or Limits()
        files = files or {}
        env = dict(env or {})
        _check_input(argv, files, env, mounts, stdin, cwd)
        self._closed = False  # (a Sandbox may run again after close())
        message = None
        if _use_warm:
            message = self._warm_message(argv, files, limits, env, mounts, cwd, stderr_to_stdout)
        box = self._take_warm() if message is not None else None
        try:
            if box is not None:
                self.warm_runs += 1
                return await self._run_warm(box, message, files, mounts, stdin, limits, collect)
            self.cold_runs += 1
            slot = await self._acquire_slot()
            return await self._run_in_slot(slot, argv, files, stdin, limits, env, mounts, collect, cwd,
                                           stderr_to_stdout, defer=_use_warm)
        finally:
            # Replacements are built once the result is out, never on a run's
            # path (a box whose end is deferred asks for its own once it is
            # gone); not for a cancelled run (its loop may be shutting down).
            if _use_warm and not asyncio.current_task().cancelling():
                self._refill_warm()

    def run_sync(self, *args, **kwargs) -> RunResult:
        """`run` for callers without an event loop. It runs cold: each call has
        an event loop of its own, which ends with it, and warm boxes live on the
        loop that built them (a box built here would only be thrown away)."""
        if self.warm and not self._told_sync:
            self._told_sync = True
            log.warning("run_sync does not use warm boxes (each call has its own event loop):"
                        " await run() on one event loop, or use Sandbox(warm=0)")
        return asyncio.run(self.run(*args, _use_warm=False, **kwargs))

    @property
    def kept_cgroups(self) -> frozenset[str]:
        """Names of the slot cgroups kept, empty, for their slots' next runs."""
        return frozenset(self._idle_groups)

    def slot_in_use(self, index: int) -> bool:
        """Whether any process on this host holds slot `index` right now."""
        return self._slots.in_use(index)

    async def prewarm(self) -> int:
        """Build warm boxes up to `warm` now, instead of after the next run (a
        server calls it at start); returns how many are ready."""
        await self.settle()  # (a box on its way out holds a slot, and asks for its replacement)
        self._refill_warm()
        await asyncio.gather(*self._warming, return_exceptions=True)
        return len(self._warm)

    async def settle(self) -> None:
        """Wait until the boxes of the runs that returned are all gone (their
        processes reaped, cgroups and directories removed, slots free). A run
        returns as soon as its program's result is known, and most boxes are
        removed just after, by a task of their own. A coroutine calls it before
        close(); a close() outside the event loop waits for them itself."""
        loop = asyncio.get_running_loop()
        while mine := [task for task in list(self._ending) if task.get_loop() is loop]:
            await asyncio.gather(*mine, return_exceptions=True)

    def close(self) -> None:
        """Remove the warm boxes and kept cgroups, and let the slots go. Called
        from a coroutine, await settle() first: the boxes still on their way
        out are then removed here, blocking."""
        if self._exit_hook:
            atexit.unregister(self._at_exit)
            self._exit_hook = False
        self._closed = True  # groups of builds cut short are removed, not kept
        self._finish_ending()
        self._discard_warm()
        self._remove_idle_groups()
        self._slots.close()
        for fd in self._netns.values():
            os.close(fd)
        self._netns.clear()

    def _slot_netns(self, slot: Slot) -> int | None:
        if not self.netns_per_slot:
            return None
        if slot.index not in self._netns:
            self._netns[slot.index] = launch.make_netns(self.launcher)
        return self._netns[slot.index]

    # -- warm boxes ----------------------------------------------------------
    #
    # A warm box is built ahead of time, while nobody waits for it: slot, /box,
    # cgroup, bubblewrap with the whole mount table, seccomp, and as its first
    # program stockade-launch --exec-fd, blocked reading the run. A run takes
    # one, writes its files and limits, sends the program, limits and environment
    # on that pipe, and pays only for the exec of its program; a new warm box is
    # then built in the background. A warm box serves exactly one run and is
    # torn down like any other. Only runs with the warm boxes' shape (mounts
    # among warm_mounts or copied, the default /tmp size) and a built launcher
    # use them.

    def _warm_message(self, argv, files, limits: Limits, env, mounts, cwd, stderr_to_stdout=False) -> bytes | None:
        """The run as stockade-launch --exec-fd reads it; None if no warm box fits."""
        if not self.warm or limits.tmp_size != _WARM_LIMITS.tmp_size:  # (warm is 0 without the launcher)
            return None
        if not all(mount in self.warm_mounts or self._copyable(mount, files) for mount in mounts):
            return None
        # (One stream: the box's pipes were given before the run was known, so the
        # launcher makes the program's fd 2 its fd 1 just before the exec.)
        items = ["O"] if stderr_to_stdout else []
        items += [f"R{name}:{soft}:{hard}" for name, soft, hard in launch.rlimits(limits, self.cgroups.kind == "none")]
        # The environment bwrap would have made: ours, the caller's, PWD of --chdir.
        items += [f"E{key}={value}" for key, value in {**bwrap.BASE_ENV, **env, "PWD": cwd}.items()]
        items += [f"C{cwd}", *(f"A{arg}" for arg in argv)]
        message = os.fsencode("\0".join(items) + "\0")  # (one encode, not one per item)
        # It must fit in the pipe: the write never waits for the box.
        return message if len(message) <= _WARM_MESSAGE_MAX else None

    def _copyable(self, mount: Mount, files) -> bool:
        """A read-only tree that a warm box can hold as a root-owned copy in /box
        (where none of the run's own files is): the box's user cannot change it.
        Only as root: rootless, the box's user would own the copy."""
        if not (mount.copy and not mount.writable and self.is_root):
            return False
        inside = os.path.normpath(mount.target).removeprefix(bwrap.BOX_DIR + "/")
        if inside == os.path.normpath(mount.target) or ".." in inside.split("/"):
            return False
        return not any(name == inside or name.startswith(inside + "/") for name in
                       ("/".join(check_relpath(name)) for name in files))

    def _warm_elsewhere(self, loop) -> bool:
        """Whether the warm boxes (built or building) are another event loop's,
        running now in another thread: they are its to take and replace, and
        this loop's runs go cold."""
        loops = {box.loop for box in self._warm} | {task.get_loop() for task in self._warming if not task.done()}
        return any(other is not loop and other.is_running() for other in loops)

    def _take_warm(self) -> _Box | None:
        loop = asyncio.get_running_loop()
        if self._warm_elsewhere(loop):
            return None
        while self._warm:
            box = self._warm.pop()
            if box.loop is loop and not _exited(box.pidfd):
                return box
            self._teardown_now(box)  # built for another event loop, or died idle
        return None

    def _refill_warm(self) -> None:
        if not self.warm:
            return
        loop = asyncio.get_running_loop()
        if self._warm_elsewhere(loop):
            return
        if any(box.loop is not loop for box in self._warm):
            self._discard_warm()  # built on an event loop that has finished
        self._warming = {t for t in self._warming if not t.done() and t.get_loop() is loop}
        # A box on its way out asks for its replacement once it is gone (_end):
        # built now, the replacement would start on the result's way out.
        me = asyncio.current_task()  # (an end's own task, asking as it finishes)
        ending = sum(1 for task in list(self._ending) if task.get_loop() is loop and task is not me)
        while len(self._warm) + len(self._warming) + ending < self.warm:
            task = loop.create_task(self._make_warm())
            self._warming.add(task)
            self._hook_exit()

    async def _make_warm(self) -> None:
        # Idle warm boxes must never starve a run that cannot use one: no build
        # takes a slot a run waits for, and a box built meanwhile gives it up.
        slot = self._slots.try_acquire()  # (None while a run waits in line)
        if slot is None:
            return  # every slot is busy, or a run waits for one: runs go cold meanwhile
        box = None
        try:
            try:
                box = self._new_box(slot, {}, _WARM_LIMITS)
            except BaseException:
                self._slots.release(slot)
                raise
            exec_r, box.exec_w = box.pipe()
            report, report_fds = self._report_channel(box)
            inner = [launch.BOX_LAUNCHER, f"--exec-fd={exec_r}", *report]
            failure = await self._start(box, inner, {}, self.warm_mounts, bwrap.BOX_DIR, _WARM_LIMITS,
                                        (exec_r, *report_fds))
            if failure is not None:
                log.warning("cannot build a warm box: %s", failure.message)
                self.warm = 0  # the cold path reports the same failure to each run
                while self._warm:  # and idle boxes would only hold slots now
                    self._teardown_now(self._warm.pop())
            else:
                # Let bwrap finish the box now; the launcher then waits for the run.
                _write_all(box.block_w, b"1")
                box.close(box.block_w)
                if self.warm and not self._slots.awaited:
                    self._warm.append(box)
                    box = None
        except (OSError, SandboxError) as exc:
            log.warning("cannot build a warm box: %s", exc)
        finally:
            if box is not None:
                self._teardown_now(box)

    def _hook_exit(self) -> None:
        if not self._exit_hook:
            # Idle warm boxes die with us (--die-with-parent), but their cgroups
            # and directories would stay, and so would idle slot cgroups: a
            # process that never calls close() still removes them on its way out.
            atexit.register(self._at_exit)
            self._exit_hook = True

    def _at_exit(self) -> None:
        self._closed = True
        self._finish_ending()
        self._discard_warm()
        self._remove_idle_groups()

    def _discard_warm(self) -> None:
        building = [task for task in self._warming if not task.done()]
        self._warming.clear()
        for task in building:
            task.cancel()
        # A build cut short tears down what it had started (bwrap, cgroup, /box)
        # once its loop runs it again.
        _run_out(building)
        while self._warm:
            self._teardown_now(self._warm.pop())

    def _finish_ending(self) -> None:
        """Remove the boxes whose ends were deferred (_end), now: their slots
        are about to be let go. Outside their event loop it runs their tasks
        to the end; inside it (a close() without settle()) it removes them
        itself, blocking, and their tasks find them removed."""
        _run_out(list(self._ending))
        for task, box in list(self._ending.items()):
            task.cancel()
            self._end_at_once(box)
        self._ending.clear()

    def _end_at_once(self, box: _Box) -> None:
        """A deferred end, done here and now (blocking), unless begun already."""
        if not box.removed:
            box.removed = True
            _end_box_now(box)
            self._teardown_now(box)

    def _teardown_now(self, box: _Box) -> None:
        """Remove a warm box (used or not) and give its slot back."""
        try:
            self._remove(box)
        finally:
            self._slots.release(box.slot)

    async def _acquire_slot(self) -> Slot:
        slot = self._slots.try_acquire()
        if slot is None and self._warm:
            # Idle warm boxes must never starve a run that cannot use one.
            self._teardown_now(self._warm.pop(0))
        return slot or await self._slots.acquire()

    async def _run_warm(self, box: _Box, message: bytes, files, mounts, stdin, limits: Limits, patterns) -> RunResult:
        try:
            try:
                if _few(files):
                    write_files(box.workdir, box.slot.uid, box.slot.gid, files)  # LimitError: the caller's
                else:
                    await _write_in_box(box, files)
                for mount in mounts:
                    if mount in self.warm_mounts:
                        continue  # bound in every warm box already
                    target = os.path.normpath(mount.target).removeprefix(bwrap.BOX_DIR + "/").split("/")
                    try:
                        # In a thread unless small (a C or C++ program: one file): a
                        # compiled product may be thousands of files, _COPY_MAX bytes.
                        listing = small_tree(mount.source, _INLINE_FILES, _INLINE_BYTES)
                        if listing is not None:
                            copy_in(box.workdir, mount.source, target, _COPY_MAX, listing)
                        else:
                            await _in_thread(copy_in, box.workdir, mount.source, target, _COPY_MAX)
                    except LimitError as exc:  # a product too large to copy
                        raise SandboxError(str(exc)) from exc
                box.group.set_limits(memory=limits.total_memory, pids=limits.box_processes)
            except (SandboxError, OSError) as exc:
                return RunResult(Status.sandbox_error, message=f"cannot prepare the box: {exc}")

            def start() -> RunResult | None:
                try:
                    _write_all(box.exec_w, message)
                except BrokenPipeError:  # the launcher is gone: the box died idle
                    return RunResult(Status.sandbox_error, message="the prepared box ended before the run")
                box.close(box.exec_w)
                return None

            return await self._collected(box, await self._watch(box, stdin, limits, start), patterns, limits)
        finally:
            await self._end(box, defer=True)

    # -- one run -----------------------------------------------------------

    def _new_box(self, slot: Slot, files, limits: Limits) -> _Box:
        # Named like the slot's cgroup: unique on the host while our lock holds it
        # (another Sandbox may use the same index with another uid range).
        workdir = os.path.join(self.boxes_dir, f"{slot.uid}-{slot.index}")
        if os.path.lexists(workdir):  # left by a supervisor that was killed -9
            remove_tree(workdir)
        try:
            make_box_dir(workdir, slot.uid, slot.gid, files)  # LimitError: a file given twice
            group = self._group_for(slot, limits)
        except BaseException:
            if os.path.lexists(workdir):
                remove_tree(workdir)
            raise
        return _Box(slot, workdir, group, asyncio.get_running_loop())

    def _group_for(self, slot: Slot, limits: Limits) -> cgroup.Cgroup:
        """The slot's cgroup as its last run left it (cgroup.V1Cgroup.recycle),
        its counters reset; else a new one."""
        # Host-wide name: the uid is unique on the host while our lock holds it.
        name = f"box-{slot.uid}-{slot.index}"
        slot_group = self._idle_groups.pop(name, None)
        if slot_group is not None:
            group = slot_group[1]
            try:
                group.renew(memory=limits.total_memory, pids=limits.box_processes)
                return group
            except (OSError, SandboxError):
                # Removed by another process that held the slot since: our open
                # files are of a group that is gone. create() replaces whatever is there.
                with contextlib.suppress(OSError, SandboxError):
                    group.remove()
        return self.cgroups.create(name, memory=limits.total_memory, pids=limits.box_processes)

    def _release_group(self, slot: Slot, group: cgroup.Cgroup) -> None:
        """After a run, its slot still ours: keep the group for the slot's next
        run, or remove it. At most _KEPT_GROUPS are kept: each holds a few open files."""
        if not self._closed and len(self._idle_groups) < _KEPT_GROUPS and group.recycle():
            self._idle_groups[group.name] = (slot, group)
            self._hook_exit()
        else:
            group.remove()

    def _remove_idle_groups(self) -> None:
        """Remove the kept groups, each only while we hold its slot: once we let
        the slot go, another Sandbox (in this process or another) may have made
        a group of that name its own, with its run inside."""
        while self._idle_groups:
            slot, group = self._idle_groups.popitem()[1]
            try:
                with self._slots.holding(slot.uid, slot.index) as held:
                    if held:
                        group.remove()
            except (OSError, SandboxError):
                pass  # left for the slot's next run, or the next Sandbox's sweep
            finally:
                group.close()  # our files of it, removed or not

    async def _run_in_slot(self, slot, argv, files, stdin, limits, env, mounts, patterns, cwd, stderr_to_stdout,
                           defer=False):
        """A run in a box built for it, in `slot`, which is given back once the
        box is gone (`defer`: see _end)."""
        inline = _few(files)
        try:
            box = self._new_box(slot, files if inline else {}, limits)
            box.stderr_to_stdout = stderr_to_stdout
        except (SandboxError, OSError) as exc:  # (LimitError, the caller's, goes on up)
            self._slots.release(slot)
            # A box that cannot be made (its directory on a full tmpfs, its cgroup)
            # is the box's failure, a result like any other: it was raised out of run().
            return RunResult(Status.sandbox_error, message=f"cannot prepare the box: {exc}")
        except BaseException:
            self._slots.release(slot)
            raise
        try:
            if not inline:
                try:
                    await _write_in_box(box, files)
                except (SandboxError, OSError) as exc:
                    return RunResult(Status.sandbox_error, message=f"cannot prepare the box: {exc}")
            rlimits = launch.rlimits(limits, self.cgroups.kind == "none")
            # Set by the step that becomes the slot's uid (no exec of its own),
            # or else by the box's first program.
            outside = rlimits if self._bwrap_starts_set_up and launch.settable_outside(rlimits) else []
            extra_fds: tuple[int, ...] = ()
            if self.launcher:
                # The launcher as the box's pid 1, reporting the program's wait status.
                report, extra_fds = self._report_channel(box)
                first = launch.rlimit_argv([] if outside else rlimits, launch.BOX_LAUNCHER, report=report)
            else:
                first = launch.rlimit_argv(rlimits, None)  # (util-linux's prlimit)
            failure = await self._start(box, [*first, *argv], env, mounts, cwd, limits, extra_fds, rlimits=outside)
            if failure is not None:
                return failure

            def start() -> None:
                # The wall clock starts when the program may start.
                _write_all(box.block_w, b"1")
                box.close(box.block_w)

            return await self._collected(box, await self._watch(box, stdin, limits, start), patterns, limits)
        finally:
            await self._end(box, defer)

    @staticmethod
    def _report_channel(box: _Box) -> tuple[list[str], tuple[int, ...]]:
        """The launcher's report (launch.c --status-fd): a pipe, read from
        box.status_r, and the box cgroup's CPU counter, read-only (our copies
        closed with the box). Its options, and the fds the box gets."""
        box.status_r, status_w = box.pipe()
        cpu_fd = box.group.open_cpu_counter()
        if cpu_fd is None:
            return launch.report_options(status_w), (status_w,)
        box.fds.append(cpu_fd)
        return launch.report_options(status_w, cpu_fd), (status_w, cpu_fd)

    @staticmethod
    async def _collected(box: _Box, result: RunResult, patterns, limits: Limits) -> RunResult:
        # Only a run that ended well is read back: a compile that failed has no
        # product, and a program that left 10^5 files (or too many bytes) before
        # it failed or hit a limit gets that verdict and its output, not a
        # collection error in their place.
        if patterns and result.status is Status.ok:
            try:
                # (In a thread: up to 20,000 files and 64 MiB or more to read.)
                files = await _in_thread(collect, box.workdir, patterns, max(limits.file_size, 64 * MiB))
            except SandboxError as exc:
                # The caller still gets the run (a compiler's warnings) with the reason.
                raise CollectError(str(exc), result) from None
            result = replace(result, files=files)
        return result

    def _remove(self, box: _Box) -> None:
        """Every way out of a box: its processes, fds, cgroup and directory."""
        try:
            self._release(box)
        finally:
            remove_tree(box.workdir)

    def _release(self, box: _Box) -> None:
        """A box's processes, fds and cgroup (its directory is the caller's)."""
        try:
            self._stop(box)
        finally:
            self._release_group(box.slot, box.group)

    async def _end(self, box: _Box, defer: bool) -> None:
        """The end of a box whose run is over, its slot given back after it.
        A box that ended early (its program's whole report came before bwrap's
        exit: see _watch) is ended by a task of its own when `defer`, so that its
        result goes out now, not after bwrap, pid 1 and the box directory are
        gone; that task then asks for a warm box in its place (_refill_warm)."""
        if defer and box.ended_early and not self._closed:
            task = box.loop.create_task(self._end_now(box, refill=True))
            self._ending[task] = box
            task.add_done_callback(_log_failure)
            task.add_done_callback(functools.partial(self._end_task_done, box))
            self._hook_exit()
        else:
            await self._end_now(box)

    async def _end_now(self, box: _Box, refill: bool = False) -> None:
        try:
            try:
                if refill:
                    # (As a task of its own: one turn of the loop first, for what
                    # awaited the result. Killing pid 1 can hand it the CPU, and
                    # its exit, the box's namespaces torn down, takes ~0.1 ms.)
                    await asyncio.sleep(0)
                if box.ended_early:
                    await self._reap_bwrap(box)
            finally:
                if not box.removed:  # (else close() has removed it meanwhile)
                    box.removed = True
                    try:
                        if box.ended_early:
                            _end_box_now(box)  # (cut short, cancelled: at once, blocking)
                        await self._remove_after_run(box)
                    finally:
                        self._slots.release(box.slot)
        finally:
            # (Not when cancelled, or closed with its loop by close(): no loop runs it.)
            if refill and _loop_running() and not asyncio.current_task().cancelling():
                self._refill_warm()

    def _end_task_done(self, box: _Box, task: asyncio.Task) -> None:
        self._ending.pop(task, None)
        # (Cancelled before its first step, a loop shutting down: its coroutine
        # never ran, nor its `finally`.)
        self._end_at_once(box)

    @staticmethod
    async def _reap_bwrap(box: _Box) -> None:
        """End a box that ended early: its pid 1 (the launcher, waiting since its
        report) is killed, which ends the box's pid namespace; bwrap then exits
        and is reaped here, and pid 1 too if bwrap left it to us. Still there
        after _DRAIN_GRACE, bwrap is killed by _stop, as any box's."""
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(box.box_pidfd, signal.SIGKILL)
        loop = box.loop
        gone = loop.create_future()
        # (In box.watched: _stop, from close(), may take the reader off first.)
        loop.add_reader(box.pidfd, lambda: gone.done() or gone.set_result(None))
        box.watched.add(box.pidfd)
        timer = loop.call_later(_DRAIN_GRACE, lambda: gone.done() or gone.set_result(None))
        try:
            await gone
        finally:
            timer.cancel()
            if box.pidfd in box.watched:
                loop.remove_reader(box.pidfd)
                box.watched.discard(box.pidfd)
        if not box.removed:
            _reap_ended_box(box)

    async def _remove_after_run(self, box: _Box) -> None:
        """_remove for a box whose program ran: its directory is deleted in a
        thread. The program may have left millions of entries there (a hard
        link costs it one dentry, ~200 bytes and a few microseconds): seconds
        of deletion that, on the event loop, would stall every other box's
        supervision and the service with it."""
        try:
            self._release(box)
        finally:
            # (A few files, as most runs leave, go at once: a thread costs ~0.1 ms.)
            if not remove_flat_tree(box.workdir, _INLINE_REMOVALS):
                await _in_thread(remove_tree, box.workdir)

    async def _start(self, box: _Box, inner, env, mounts, cwd, limits: Limits, extra_fds=(),
                     rlimits=()) -> RunResult | None:
        """Start bwrap for `box` and wait until the box's pid 1 exists, in its
        cgroup; the program waits on block_w. A RunResult if bwrap failed."""
        loop = box.loop
        info_r, info_w = box.pipe()
        box.block_r, box.block_w = box.pipe()
        seccomp_r, seccomp_w = box.pipe()
        # No network for any box yet (a networked box must first be kept off the
        # host's loopback and private ranges: Judge0's CVE-2024-29021).
        _write_all(seccomp_w, seccomp.compile_filter(network=False))
        box.close(seccomp_w)
        in_r, box.in_w = box.pipe()
        box.out_r, out_w = box.pipe()
        box.err_r, err_w = box.pipe()
        # Our ends never block the loop (_watch). Set now, when a warm box is
        # built, not on its run's path: 8 fcntl calls.
        for fd in (box.in_w, box.out_r, box.err_r, box.status_r):
            if fd != -1:
                os.set_blocking(fd, False)
        # One stream (isolate's --stderr-to-stdout): bwrap, and so the program,
        # gets the stdout pipe as fd 2; the writes stay in their order, under one
        # output limit. (Appending stderr after the run put a traceback after
        # output written later, and let the two streams hold twice the limit.)
        child_err = out_w if box.stderr_to_stdout else err_w
        etc_dir = self._etc.current()
        for mount in mounts:
            if mount.target.startswith("/etc/"):
                # A runtime's own configuration (/etc/php): bound over our /etc.
                self._etc.mountpoint(etc_dir, mount.target, os.path.isdir(mount.source))
        # The generated tree as the root (one bind), when every mount lands under
        # /etc or /box, where it has or makes the mountpoint; else bwrap's tmpfs root.
        in_tree = all(os.path.normpath(m.target).startswith(("/etc/", bwrap.BOX_DIR + "/")) for m in mounts)
        root_dir = os.path.dirname(etc_dir) if in_tree else None
        args_r, args_w = box.pipe()
        netns = self._slot_netns(box.slot)
        command = bwrap.build_argv(
            self._bwrap.path, inner, workdir=box.workdir, etc_dir=etc_dir,
            tmp_size=limits.tmp_size, env=env, mounts=mounts, cwd=cwd, info_fd=info_w, block_fd=box.block_r,
            seccomp_fd=seccomp_r, launcher=self.launcher if inner[0] == launch.BOX_LAUNCHER else None,
            own_netns=netns is None,
            dev_dir=self.dev_dir, root_dir=root_dir, as_pid_1=box.status_r != -1,
        )
        # bwrap's options arrive on --args (off its command line, which the host
        # can read), which bwrap reads to EOF before doing anything. Race-free
        # start: bwrap creates the box, and the box's cgroup namespace, inside
        # the box's cgroup: as root with the launcher it starts there (the
        # spawner's child, or the launcher, joins it before it execs bwrap);
        # otherwise we move it in while it waits for those options.
        split = command.index("--")  # the program stays on the command line
        bwrap_argv = [self._bwrap.path, "--args", str(args_r), *command[split:]]
        passed = (args_r, info_w, box.block_r, seccomp_r, *extra_fds)
        joined = self._bwrap_starts_set_up
        if self.is_root:
            # The program may reopen /dev/stdin or /dev/stdout (node's readFileSync
            # does): its own pipes must belong to it, not to root with mode 0600.
            for fd in (in_r, out_w, err_w):
                os.fchown(fd, box.slot.uid, box.slot.gid)
        # Empty environment: bwrap (pid 1's parent, visible in /proc) holds no
        # secret of ours. Only the fds named here pass.
        try:
            if self.spawner is not None:
                # bwrap starts as the slot's uid, never as root: a user namespace made
                # by root maps the box's user to host uid 0 (spawn.py).
                box.proc = _Child(self.spawner.spawn(
                    bwrap_argv, stdio=(in_r, out_w, child_err), keep=passed, uid=box.slot.uid, gid=box.slot.gid,
                    netns_fd=netns, cgroup_procs=box.group.procs_files(), rlimits=rlimits,
                ))
            else:
                if self.is_root:
                    # The launcher switches identity and execs bwrap, so that Popen
                    # can vfork: Popen(user=) must fork, copying the whole supervisor
                    # (milliseconds in a large server process).
                    bwrap_argv = [*launch.identity_argv(box.slot.uid, box.slot.gid, self.launcher, netns, rlimits,
                                                        box.group.procs_files() if joined else ()), *bwrap_argv]
                box.proc = subprocess.Popen(
                    bwrap_argv, stdin=in_r, stdout=out_w, stderr=child_err,
                    pass_fds=(*passed, *([netns] if netns is not None else [])), env={}, cwd="/", close_fds=True,
                )
        except OSError as exc:
            return RunResult(Status.sandbox_error, message=f"cannot start bubblewrap: {exc}")
        # block_r stays open here: after the run, a byte still in it means bwrap
        # failed building the box before it ever read it (the program never ran).
        for fd in (in_r, out_w, err_w, info_w, seccomp_r, args_r, *extra_fds):
            box.close(fd)
        box.pidfd = os.pidfd_open(box.proc.pid)
        box.fds.append(box.pidfd)

        async def setup_failed() -> RunResult:
            # bwrap died building the box (a bad mount, no user namespaces...):
            # the program never ran; bwrap's stderr says why.
            await _readable(loop, box.pidfd)
            os.waitpid(box.proc.pid, 0)
            box.proc.returncode = 0
            return _setup_failure(_read_available(box.out_r if box.stderr_to_stdout else box.err_r))

        if not joined:
            try:
                box.group.add(box.proc.pid)
            except SandboxError:
                if _exited(box.pidfd):
                    return await setup_failed()
                raise
        try:
            _write_all(args_w, os.fsencode("\0".join(command[1:split]) + "\0"))  # (one encode, not one per item)
        except BrokenPipeError:  # bwrap (or the launcher) died before reading them
            return await setup_failed()
        box.close(args_w)

        box.info_r = info_r
        box_pid = await _read_child_pid(loop, info_r, box.pidfd, box.info)
        if box_pid is None:
            return await setup_failed()
        try:
            box.box_pidfd = os.pidfd_open(box_pid)
        except ProcessLookupError:
            return await setup_failed()
        box.box_pid = box_pid
        box.fds.append(box.box_pidfd)
        return None

    async def _watch(self, box: _Box, stdin, limits: Limits, start: Callable[[], RunResult | None]) -> RunResult:
        """Let the box's program start (`start()`: a RunResult if it cannot),
        supervise it until it ends, and account."""
        loop = box.loop
        out = _Outcome()
        group, watched, timers = box.group, box.watched, box.timers

        def kill(reason: Status | None) -> None:
            if reason is not None:
                out.events.add(reason)
            # A callback of the loop (a limit's timer, a reader past the output
            # limit): it signals and returns. Waiting here for the group to
            # empty held every other box and request for up to seconds (a fork
            # bomb's processes on a busy host die slowly), and the SandboxError
            # of survivors escaped into the loop before pid 1 below was killed.
            # Whatever still lives is killed, and waited for, at teardown.
            with contextlib.suppress(OSError, SandboxError):
                group.kill(wait=False)
            # Killing the pid namespace's init kills every process in it.
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(box.box_pidfd, signal.SIGKILL)

        # Done when bwrap exits, or when the launcher's whole report is in: then
        # the program has ended, and every other process of the box with it.
        over = loop.create_future()

        def on_exit() -> None:
            # A pidfd stays readable: watched any longer, it would spin the loop.
            loop.remove_reader(box.pidfd)
            watched.discard(box.pidfd)
            if not over.done():
                over.set_result(None)

        loop.add_reader(box.pidfd, on_exit)
        watched.add(box.pidfd)
        if box.status_r != -1:
            self._report_reader(loop, box, over)
        readers = [self._reader(loop, box.out_r, out, "stdout", limits.output, kill, watched),
                   self._reader(loop, box.err_r, out, "stderr", limits.output, kill, watched)]
        self._writer(loop, box.in_w, stdin, watched, box.close)

        timers.append(loop.call_later(limits.wall_time, kill, Status.wall_time_limit))

        def check_cpu() -> None:
            used = group.cpu_time() - _cpu_at_start(box)  # (not the box's setup)
            if used >= limits.cpu_time:
                kill(Status.time_limit)
                return
            # CPU time grows at most ncpu seconds per second: no need to look
            # again before the limit could possibly be reached.
            delay = max(_MIN_CPU_CHECK, (limits.cpu_time - used) / self._ncpu)
            timers.append(loop.call_later(delay, check_cpu))

        if self.cgroups.kind != "none" and not limits.per_process_time:
            # (Per-process time limits are rlimits: the sum may exceed cpu_time.)
            timers.append(loop.call_later(max(_MIN_CPU_CHECK, limits.cpu_time / self._ncpu), check_cpu))

        # Started last, just before we wait: a pipe's writer wakes its reader on
        # the writer's own CPU, expecting it to sleep now, and the program's
        # start waited for whatever we still did here (~80 us of it, once).
        started = time.monotonic()
        failure = start()
        if failure is not None:
            return failure
        await over
        if box.status_r in watched:
            loop.remove_reader(box.status_r)
            watched.discard(box.status_r)
        if len(box.report) == _FULL_REPORT and not _exited(box.pidfd):
            return self._ended(box, out, readers, limits)
        wall = time.monotonic() - started
        _, status, usage = os.wait4(box.proc.pid, 0)
        box.proc.returncode = os.waitstatus_to_exitcode(status)
        # bwrap's monitor exits as soon as it has the exit code; the box's pid 1
        # may still be on its way out. Killing it ends the pid namespace: the
        # kernel kills every process in it before pid 1 is reported exited.
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(box.box_pidfd, signal.SIGKILL)
        # By now what the box wrote, and the pipes' end, are usually there to
        # read: read them here rather than in more turns of the loop.
        for eof, read_once in readers:
            for _ in range(_DRAIN_NOW):
                if eof.done() or not read_once():
                    break
        eofs = [eof for eof, _ in readers]
        try:
            await _all_done(loop, eofs if _exited(box.box_pidfd) else [*eofs, _readable(loop, box.box_pidfd)],
                            _DRAIN_GRACE)
        except TimeoutError:
            # Something still holds the box's pipes or pid 1: kill the whole cgroup
            # now (frozen first). Otherwise every box process is gone, and the
            # cgroup's removal checks it is empty anyway.
            with contextlib.suppress(OSError):
                group.kill()
        if _unread(box.block_r) and not out.events & {Status.wall_time_limit, Status.time_limit}:
            # (A time limit that ran out before bwrap read the byte, a wall time
            # of 1 ms say, is that limit's verdict: we killed the box.)
            return _setup_failure(_box_stderr(box, out))
        if box.status_r != -1:
            box.report += _read_available(box.status_r)
        report = _split_report(bytes(box.report))
        if report.outcome == _LAUNCH_FAILED:  # the box's launcher, before the program: the box failed
            return _setup_failure(_box_stderr(box, out), "the box's launcher failed")
        first = _reap_orphan(box.box_pid, box.box_pidfd)  # the box's pid 1, if bwrap left it to us
        exit_code, sig = _program_status(report.outcome, status)
        if report.ended_at is not None:
            # The program's own wall time, not the box's setup after the clock
            # started (a killed box keeps ours: the limit ran from there).
            wall = (report.ended_at - report.started_at) / 1e9
        # The peak resident set: the launcher's count of the program and its
        # children; else pid 1's, which holds theirs; else (a box killed, pid 1
        # reaped by bwrap) none, 0: bwrap's own is no measure, its exec kept
        # the peak of the supervisor that spawned it.
        peak = report.peak_rss if report.peak_rss is not None else first.ru_maxrss * 1024 if first else 0
        return self._account(group, out, exit_code, sig, [u for u in (usage, first) if u is not None], wall,
                             limits, (report.started_cpu, report.ended_cpu), peak)

    @staticmethod
    def _report_reader(loop, box: _Box, over: asyncio.Future) -> None:
        """Read the launcher's report as it comes (status_r is non-blocking:
        _start); `over` is done once it is whole (_FULL_REPORT bytes: the end
        record is the last, written after every process of the box is reaped)."""

        def on_report() -> None:
            try:
                chunk = os.read(box.status_r, _FULL_REPORT)
            except BlockingIOError:
                return
            box.report += chunk
            # (No more can come once it is whole; EOF only with bwrap's exit.)
            if not chunk or len(box.report) >= _FULL_REPORT:
                loop.remove_reader(box.status_r)
                box.watched.discard(box.status_r)
                if not over.done():
                    over.set_result(None)

        loop.add_reader(box.status_r, on_report)
        box.watched.add(box.status_r)

    def _ended(self, box: _Box, out: _Outcome, readers, limits: Limits) -> RunResult:
        """The result of a box whose launcher has reported the program's end
        while bwrap has not exited yet. The launcher writes that report after
        it has killed and reaped every other process of the box, and it holds
        none of the program's pipes: what the box wrote is all in them now
        (bwrap's monitor still holds their other ends, so there is no EOF to
        wait for). bwrap is reaped, and the box removed, after (_end)."""
        for timer in box.timers:
            timer.cancel()
        box.loop.remove_reader(box.pidfd)  # (_reap_bwrap waits for bwrap)
        box.watched.discard(box.pidfd)
        for eof, read_once in readers:
            while not eof.done() and read_once():
                pass
        box.ended_early = True
        report = _split_report(bytes(box.report))
        exit_code, sig = _program_status(report.outcome, 0)
        return self._account(box.group, out, exit_code, sig, [], (report.ended_at - report.started_at) / 1e9,
                             limits, (report.started_cpu, report.ended_cpu), report.peak_rss or 0)

    @staticmethod
    def _adopt_box_pid(box: _Box, info: bytes) -> None:
        pid = _child_pid(info)
        if pid is not None:
            with contextlib.suppress(OSError):  # gone already
                box.box_pidfd = os.pidfd_open(pid)
                box.fds.append(box.box_pidfd)
                box.box_pid = pid

    def _stop(self, box: _Box) -> None:
        """Every way out of a box: timers, watches, processes, fds."""
        for timer in box.timers:
            timer.cancel()
        if not box.loop.is_closed():
            for fd in box.watched:
                if fd in box.fds:  # not closed (and maybe reused) already
                    box.loop.remove_reader(fd)
                    box.loop.remove_writer(fd)
            box.watched.clear()
        try:
            if box.proc is not None and box.proc.returncode is None:
                # Cancelled, failed mid-run or never used: kill the box and bwrap, then reap.
                with contextlib.suppress(OSError, SandboxError):  # (survivors: removing the group says so)
                    box.group.kill()
                with contextlib.suppress(OSError):
                    # Not proc.kill(): Popen would reap bwrap behind our back.
                    signal.pidfd_send_signal(box.pidfd, signal.SIGKILL)
                os.waitpid(box.proc.pid, 0)
                box.proc.returncode = -9
                if box.box_pidfd == -1 and box.info_r in box.fds:
                    # Stopped while bwrap was building the box: its pid 1 may exist,
                    # now our orphan (and dying: bwrap gave it PDEATHSIG). Reap it.
                    self._adopt_box_pid(box, box.info + _read_available(box.info_r))
                if box.box_pidfd != -1:
                    _reap_orphan(box.box_pid, box.box_pidfd, block=True)
                elif box.info_r != -1 and self.is_root:
                    # Killed between cloning pid 1 and reporting it: find it by its
                    # slot's own uid (rootless, every box shares ours: not safe).
                    _reap_orphans_of(box.slot.uid)
            elif box.box_pidfd != -1:
                _reap_orphan(box.box_pid, box.box_pidfd)
        finally:
            for fd in box.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            box.fds.clear()

    def _reader(self, loop, fd: int, out: _Outcome, name: str, cap: int, kill: Callable,
                watched: set[int]) -> tuple[asyncio.Future, Callable[[], bool]]:
        """Read `fd` into out.<name> until EOF; past `cap` bytes keep the first
        `cap`, mark it truncated and kill the box (output_limit). A future done
        at EOF, and the read the loop makes when `fd` is readable (True when it
        read a whole chunk: there may be more; a pipe's read takes all there is
        up to the chunk's size, so once the writers are gone, False means drained).
        `fd` is non-blocking (_start)."""
        buffer: bytearray = getattr(out, name)
        done = loop.create_future()

        def on_readable() -> bool:
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                return False
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(fd)
                watched.discard(fd)
                if not done.done():
                    done.set_result(None)
                return False
            if getattr(out, name + "_truncated"):
                return len(chunk) == _READ_CHUNK  # already over the limit: drain and drop until EOF
            room = cap - len(buffer)
            buffer.extend(chunk[:room])
            if len(chunk) > room:
                setattr(out, name + "_truncated", True)
                kill(Status.output_limit)
            return len(chunk) == _READ_CHUNK

        loop.add_reader(fd, on_readable)
        watched.add(fd)
        return done, on_readable

    def _writer(self, loop, fd: int, data: bytes, watched: set[int], close: Callable[[int], None]) -> None:
        """Feed `data` to the box's stdin (`fd`, non-blocking: _start) without
        ever blocking the loop; a program that never reads just leaves it in
        the pipe until it ends."""
        view = memoryview(data)

        def finish() -> None:
            loop.remove_writer(fd)
            watched.discard(fd)
            close(fd)  # EOF for the program

        def write_some() -> bool:
            """One write; True once everything is written (or cannot be)."""
            nonlocal view
            try:
                view = view[os.write(fd, view[:1 << 20]):]
            except BlockingIOError:
                return False
            except OSError:  # EPIPE: the program closed stdin or ended
                view = view[:0]
            return not view

        def on_writable() -> None:
            if write_some():
                finish()

        # Most stdin fits in the empty pipe: written now, the loop watches only for the rest.
        if not view or write_some():
            close(fd)
            return
        loop.add_writer(fd, on_writable)
        watched.add(fd)

    def _account(self, group, out: _Outcome, exit_code: int | None, sig: int | None, usages: list, wall: float,
                 limits: Limits, reported: tuple[int | None, int | None] = (None, None), largest: int = 0,
                 ) -> RunResult:
        # CPU ns by the launcher's count (launch.c --status-fd), if it told; `largest`:
        # the peak resident set of the program's largest process, in bytes (_watch)
        started, ended = reported
        if self.cgroups.kind != "none":
            memory = group.memory_peak()
            if not group.exact_peak:
                # (cgroup v2 before Linux 5.19: what the group holds after the
                # run, its page cache and kernel objects, is no peak at all.)
                memory = max(memory, largest)
            oom = group.oom_killed()
        else:
            memory = largest
            oom = False
        # The program's CPU time, not the box's setup before it (bwrap's, ~5 ms):
        # from the program's start to its end, or (killed with its launcher) to now.
        if started is not None and ended is not None and ended >= started:
            cpu = (ended - started) / 1e9
        elif self.cgroups.kind != "none":
            cpu = max(0.0, group.cpu_time() - (started or 0) / 1e9)
        else:
            cpu = sum(u.ru_utime + u.ru_stime for u in usages)
        events = set(out.events)
        if oom:
            events.add(Status.memory_limit)
        if limits.per_process_time:
            # The rlimit is the limit: SIGXCPU at its soft value, SIGKILL at its
            # hard one (SIGXCPU ignored). Only with the CPU time to show for it: a
            # SIGXCPU the program sent itself is a signal like any other. (The
            # rlimit's clock and the cgroup's differ by a few ms: 0.992 s for 1 s.)
            if sig in (signal.SIGXCPU, signal.SIGKILL) and cpu >= launch.cpu_rlimit(limits) - _XCPU_SLACK:
                events.add(Status.time_limit)
        elif cpu > limits.cpu_time:  # the cgroup's total (the rlimit is a backstop above it)
            events.add(Status.time_limit)
        if exit_code not in (0, None) or sig is not None:
            events.add(Status.runtime_error)
        verdict = decide(events)
        return RunResult(
            status=verdict,
            exit_code=exit_code,
            signal=sig,
            stdout=bytes(out.stdout),
            stderr=bytes(out.stderr),
            stdout_truncated=out.stdout_truncated,
            stderr_truncated=out.stderr_truncated,
            time=cpu,
            wall_time=wall,
            memory=memory,
            oom_killed=oom,
            message=out.message,
        )


def _box_stderr(box: _Box, out: _Outcome) -> bytes:
    """What bwrap and the launcher wrote on their stderr: the program's stdout
    pipe when the run has one stream."""
    return bytes(out.stdout if box.stderr_to_stdout else out.stderr)


def _setup_failure(stderr: bytes, what: str = "bubblewrap failed") -> RunResult:
    """A box that failed before its program ran; its stderr (the program's
    pipe: nothing else has written to it) says why."""
    detail = stderr.decode("utf-8", "replace").strip()
    return RunResult(Status.sandbox_error, message=f"{what}: {detail or 'no detail'}")


def _unread(fd: int) -> bool:
    """Whether a byte is still waiting in the pipe `fd`."""
    os.set_blocking(fd, False)
    try:
        return bool(os.read(fd, 1))
    except BlockingIOError:
        return False


def _few(files: Mapping[str, bytes | File]) -> bool:
    """Whether writing `files` into a box is quick enough for the event loop."""
    if len(files) > _INLINE_FILES:
        return False
    return sum(len(item.content if isinstance(item, File) else item) for item in files.values()) <= _INLINE_BYTES


async def _write_in_box(box: _Box, files: Mapping[str, bytes | File]) -> None:
    """write_files in a thread, for many files or many bytes: a multi-file
    program's compiled tree (up to 20,000 files) is copied into each of its run
    boxes, and writing it took ~0.5 s on the event loop, a stall of every other
    box's supervision (their output pipes, their limits) and of the service."""
    await _in_thread(write_files, box.workdir, box.slot.uid, box.slot.gid, files)


async def _in_thread(fn: Callable[..., T], *args) -> T:
    """fn(*args) in the event loop's default executor, off the loop. It has
    always finished when this returns, even when the caller is cancelled
    meanwhile (then it is waited for here, blocking): a slot is never given
    back while its directory is still being deleted (or read, or written)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a coroutine closed outside its loop: no thread to wait for
        return fn(*args)
    finished = threading.Event()

    def call() -> T:
        try:
            return fn(*args)
        finally:
            finished.set()

    try:
        future = loop.run_in_executor(None, call)
    except RuntimeError:  # its executor is shut down (the interpreter is exiting): here, then
        return fn(*args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        finished.wait()
        # (Its failure, if any, is logged: nobody awaits it any more.)
        future.add_done_callback(_log_failure)
        raise


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("teardown after a cancelled run failed: %s", future.exception())


def _run_out(tasks: list[asyncio.Task]) -> None:
    """Run `tasks` to their end on their own event loops, when none runs here
    (a sync close() after run_until_complete); a closed loop's are left."""
    if tasks and not _loop_running():
        for loop in {task.get_loop() for task in tasks}:
            if not loop.is_closed():
                mine = [task for task in tasks if task.get_loop() is loop]
                loop.run_until_complete(asyncio.gather(*mine, return_exceptions=True))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _program_status(reported: bytes, bwrap_status: int) -> tuple[int | None, int | None]:
    """(exit code, signal) of the program: from the launcher's report of its
    wait status when there is one, else from bwrap's exit, which is the
    program's code, or 128 + N when signal N killed it (like a shell): an
    exit(152) then reads as SIGXCPU. No report: no launcher (util-linux's
    prlimit instead), the box killed before the program ended, or the
    launcher killed (by us: pid 1 ignores its own namespace's signals)."""
    if len(reported) == _STATUS_SIZE:
        status = int.from_bytes(reported, sys.byteorder, signed=True)
        if os.WIFSIGNALED(status):
            return None, os.WTERMSIG(status)
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status), None
    if os.WIFSIGNALED(bwrap_status):  # bwrap itself killed: we killed the box
        return None, os.WTERMSIG(bwrap_status)
    code = os.WEXITSTATUS(bwrap_status)
    if 128 < code <= 128 + signal.NSIG:
        return None, code - 128
    return code, None


class _Report(NamedTuple):
    """The launcher's report (launch.c --status-fd), in ns (CLOCK_MONOTONIC for
    the times). None, or an empty outcome, for what it did not report: killed,
    or failed before the program."""

    started_cpu: int | None  # the box's CPU time as the program started
    started_at: int | None
    outcome: bytes  # the program's wait status, or LAUNCH_FAILED
    ended_cpu: int | None  # as it ended
    ended_at: int | None
    peak_rss: int | None = None  # bytes: the largest resident set of the program and its children


def _split_report(report: bytes) -> _Report:
    if len(report) < _TIMES_SIZE:
        return _Report(None, None, report, None, None)
    started_cpu, started_at = _times(report[:_TIMES_SIZE])
    rest = report[_TIMES_SIZE:]
    # (A launcher built before the peak was reported ends without it.)
    if len(rest) not in (_STATUS_SIZE + _TIMES_SIZE, _STATUS_SIZE + _END_SIZE):
        return _Report(started_cpu, started_at, rest, None, None)
    end = rest[_STATUS_SIZE:]
    peak = int.from_bytes(end[_TIMES_SIZE:], sys.byteorder) if len(end) == _END_SIZE else _CPU_UNKNOWN
    return _Report(started_cpu, started_at, rest[:_STATUS_SIZE], *_times(end[:_TIMES_SIZE]),
                   None if peak == _CPU_UNKNOWN else peak)


def _times(record: bytes) -> tuple[int | None, int]:
    cpu, at = (int.from_bytes(record[i:i + 8], sys.byteorder) for i in (0, 8))
    return (None if cpu == _CPU_UNKNOWN else cpu), at


def _cpu_at_start(box: _Box) -> float:
    """The box's CPU time (s) when its program started, once the launcher has
    said (0 before, or without a launcher): the box's setup, not the program's."""
    if box.status_r != -1 and len(box.report) < _TIMES_SIZE:
        box.report += _read_available(box.status_r)
    return (_split_report(bytes(box.report)).started_cpu or 0) / 1e9


_XCPU_SLACK = 0.05  # seconds
_STATUS_SIZE = 4  # an int: launch.c writes the wait status as wait(2) gives it
_TIMES_SIZE = 16  # two uint64 of ns: launch.c's CPU time and time
_END_SIZE = _TIMES_SIZE + 8  # and at the end a uint64 of bytes, the peak resident set
_FULL_REPORT = _TIMES_SIZE + _STATUS_SIZE + _END_SIZE  # a program's start and end, as reported
_CPU_UNKNOWN = 2**64 - 1  # launch.c's CPU_UNKNOWN (and PEAK_UNKNOWN)
_LAUNCH_FAILED = (-1).to_bytes(_STATUS_SIZE, sys.byteorder, signed=True)  # launch.c's LAUNCH_FAILED


def _check_input(argv, files, env, mounts, stdin, cwd) -> None:
    if isinstance(argv, str | bytes) or not argv or not all(isinstance(a, str) for a in argv):
        raise LimitError("argv must be a non-empty list of strings")
    if any("\0" in a for a in argv):
        raise LimitError("argv items must not contain NUL bytes")
    # What reaches the box is bytes (os.fsencode: undecodable bytes that came in
    # as surrogate escapes go back out as those bytes); other surrogates cannot.
    for text in (*argv, *env, *env.values(), cwd, *(m.source for m in mounts), *(m.target for m in mounts)):
        try:
            os.fsencode(text)
        except UnicodeEncodeError:
            raise LimitError(f"not valid text (a lone surrogate): {text!r}") from None
    for name in files:
        check_relpath(name)
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise LimitError(f"invalid environment variable {key!r}")
    for mount in mounts:
        if not os.path.isabs(mount.source) or not os.path.isabs(mount.target):
            raise LimitError(f"mount paths must be absolute: {mount}")
        if "\0" in mount.source + mount.target:
            raise LimitError(f"mount paths must not contain NUL bytes: {mount}")
        if os.path.normpath(mount.target) in ("/", "/etc", "/usr", "/proc", "/dev", "/box"):
            raise LimitError(f"mount target {mount.target} would replace part of the box itself")
    if not isinstance(stdin, bytes | bytearray | memoryview):
        raise LimitError("stdin must be bytes")
    # bwrap changes directory after the box is built: a missing one would look
    # like the program's own failure, so only /box and directories of `files`.
    if cwd != bwrap.BOX_DIR:
        inside = cwd.removeprefix(bwrap.BOX_DIR + "/").strip("/")
        if not cwd.startswith(bwrap.BOX_DIR + "/") or not any(
                "/".join(check_relpath(name)).startswith(inside + "/") for name in files):
            raise LimitError(f"cwd must be /box or a directory made by files, got {cwd!r}")


async def _read_child_pid(loop, info_fd: int, pidfd: int, data: bytearray) -> int | None:
    """bwrap writes {"child-pid": N} on --info-fd once the box's pid 1 exists;
    None when bwrap exits before that (a setup error, on its stderr). What was
    read is kept in `data`, for a teardown after a cancellation."""
    got = loop.create_future()
    os.set_blocking(info_fd, False)

    def on_info() -> None:
        try:
            chunk = os.read(info_fd, 4096)
        except BlockingIOError:
            return
        data.extend(chunk)
        if not chunk or data.rstrip().endswith(b"}"):
            if not got.done():
                got.set_result(None)

    def on_exit() -> None:
        if not got.done():
            got.set_result(None)

    loop.add_reader(info_fd, on_info)
    loop.add_reader(pidfd, on_exit)
    try:
        await got
    finally:
        loop.remove_reader(info_fd)
        loop.remove_reader(pidfd)
    with contextlib.suppress(OSError):
        data.extend(os.read(info_fd, 4096))
    return _child_pid(data)


def _child_pid(data: bytes | bytearray) -> int | None:
    try:
        return int(json.loads(bytes(data))["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


async def _all_done(loop, futures: list[asyncio.Future], timeout: float) -> None:
    """Wait until every future is done (TimeoutError past `timeout`): what
    wait_for(gather(...)) does, without its tasks, on every run's hot path."""
    pending = [f for f in futures if not f.done()]
    if not pending:
        return
    all_done = loop.create_future()

    def one_done(_) -> None:
        if not all_done.done() and all(f.done() for f in pending):
            all_done.set_result(None)

    for future in pending:
        future.add_done_callback(one_done)
    timer = loop.call_later(timeout, lambda: all_done.done() or all_done.set_exception(TimeoutError()))
    try:
        await all_done
    finally:
        timer.cancel()
        for future in pending:
            future.remove_done_callback(one_done)
            if not future.done():
                future.cancel()  # runs the future's own cleanup (its reader is removed)


def _readable(loop, fd: int) -> asyncio.Future:
    """A future done when `fd` polls readable (a pidfd: when its process ended)."""
    done = loop.create_future()

    def ready() -> None:
        loop.remove_reader(fd)
        if not done.done():
            done.set_result(None)

    def cancelled(future: asyncio.Future) -> None:
        if future.cancelled():  # (else ready() removed it already)
            loop.remove_reader(fd)

    loop.add_reader(fd, ready)
    done.add_done_callback(cancelled)
    return done


def _exited(pidfd: int) -> bool:
    poller = select.poll()  # (not select(): a busy supervisor has descriptors past 1024)
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def _reap_orphan(pid: int, pidfd: int, block: bool = False):
    """bwrap's monitor exits as soon as it knows the exit code, sometimes before
    reaping the box's pid 1; as child subreaper we inherit that zombie and reap
    it here, returning its rusage (which covers every process it reaped).
    WNOWAIT on the pidfd first proves it is our child: a child's pid cannot be
    recycled before we reap it, so wait4 by pid is then safe. Not our child:
    None. `block`: a live child of ours is killed (through the pidfd: that very
    process; without a cgroup, and with bwrap's PDEATHSIG lost to its uid
    changes, nothing else would end it), then reaped."""
    try:
        if os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
            if not block:
                return None  # still alive: its parent will reap it
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ChildProcessError:
        return None
    return os.wait4(pid, 0)[2]


def _end_box_now(box: _Box) -> None:
    """Sandbox._reap_bwrap without the event loop, blocking (at most
    _DRAIN_GRACE): for a box that ended early whose end was cut short."""
    if box.proc is None or box.proc.returncode is not None or box.pidfd not in box.fds:
        return
    with contextlib.suppress(OSError):
        signal.pidfd_send_signal(box.box_pidfd, signal.SIGKILL)
    poller = select.poll()
    poller.register(box.pidfd, select.POLLIN)
    poller.poll(_DRAIN_GRACE * 1000)
    _reap_ended_box(box)


def _reap_ended_box(box: _Box) -> None:
    """Reap bwrap of a box whose pid 1 was killed, once it has exited (else
    _stop kills it), and pid 1 if bwrap left it to us."""
    if _exited(box.pidfd):
        box.proc.returncode = os.waitstatus_to_exitcode(os.waitpid(box.proc.pid, 0)[1])
        if box.box_pidfd != -1:
            _reap_orphan(box.box_pid, box.box_pidfd, block=True)


def _reap_orphans_of(uid: int) -> None:
    """Reap our children running as `uid` (a slot's, used by no other box now):
    orphans of a bwrap we killed before it told us its box's pid. Only after a
    cancellation mid-build."""
    me = str(os.getpid())
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
            if fields.get("PPid", "").strip() != me or int(fields["Uid"].split()[0]) != uid:
                continue
            pidfd = os.pidfd_open(int(name))
        except (OSError, KeyError, ValueError):
            continue  # gone, or not ours
        try:
            _reap_orphan(int(name), pidfd, block=True)
        finally:
            os.close(pidfd)


def _become_subreaper() -> None:
    """Orphans of our boxes come to us, not to the host's pid 1 (which, in some
    containers, never reaps them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, _READ_CHUNK):
            chunks.append(chunk)
            if sum(map(len, chunks)) > 65536:
                break
    return b"".join(chunks)


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _default_box_space() -> int:
    """The box tmpfs's cap where no cgroup bounds what each box writes there."""
    return max(1 * GiB, _host_memory() // 4)


def _mount_box_space(path: str, box_space: int | None, memory_counted: bool) -> None:
    """Box directories live on their own tmpfs (root only): what a program
    writes to /box is memory and can never fill the host's disk.

    Its caps are shared by every box, so a few boxes could use them up for all
    the others: a hard link costs a box one inode of the tmpfs's count for
    ~200 bytes of its memory, and three boxes of 256 MiB took the 3 million
    inodes a 24 GiB host's tmpfs has by default; no other box could start.
    With cgroups, each byte, inode and dentry a box makes there is memory of
    its own cgroup, under its own limit: then no inode count, and the host's
    RAM as the only bound on bytes (statfs still shows room). A cap of an
    earlier version is lifted. An explicit `box_space`, or no cgroups, keep one."""
    flags = tmpfs.MS_NOSUID | tmpfs.MS_NODEV  # nothing setuid or device-like there
    uncapped = box_space is None and memory_counted
    if uncapped:
        options = f"size={_host_memory()},nr_inodes=0,mode=0711"
    else:
        options = f"size={box_space or _default_box_space()},mode=0711"
    try:
        if tmpfs.is_mounted(path):
            current = tmpfs.superblock_options(path)
            if uncapped and current is not None and _capped(current):
                tmpfs.mount(path, "stockade-boxes", flags, options, remount=True)
            return
        tmpfs.mount(path, "stockade-boxes", flags, options)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            log.warning("cannot mount a tmpfs for box directories (%s): using %s as it is", exc.strerror, path)
            return
        raise SandboxUnavailable(str(exc)) from None


def _capped(options: dict[str, str]) -> bool:
    """Whether a tmpfs (its options as the kernel shows them) counts inodes,
    or holds fewer bytes than the host's RAM."""
    size = options.get("size")  # absent: the kernel's default, half of RAM; "0k": no cap
    small = size is None or 0 < int(size.removesuffix("k")) * 1024 < _host_memory()
    return small or options.get("nr_inodes") != "0"
