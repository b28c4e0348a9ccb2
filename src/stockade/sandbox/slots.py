"""The slot pool: each concurrent box owns one slot, and each slot one
unprivileged host uid/gid (first_uid + index, like isolate's 60000 + box id).

Slots are exclusive across processes too (an flock per slot), so two
Stockade processes on one host never share a uid, a cgroup or a box directory.
As root the lock is per host uid in a host-wide directory, whatever state
directory each process uses: uids and cgroup names are host-wide too.
The pool is not tied to one event loop: `Sandbox.run_sync` may use a new one
per call, and threads may share one pool (each with its own loop)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    index: int
    uid: int
    gid: int


HOST_LOCK_DIR = "/run/lock/stockade"
# A caller waiting this long for slots that other processes hold is told why.
WAIT_WARNING = 5.0

log = logging.getLogger("stockade.sandbox")


def open_lock(path: str) -> int:
    """A lock file's descriptor: made if missing, ours alone (a slot uid
    holding one could stall us), never opened through a link."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """The lock file at `path` held for the block, waiting for it if need be."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class SlotPool:
    def __init__(self, lock_dir: str, count: int, first_uid: int, switch_user: bool):
        self._lock_dir = HOST_LOCK_DIR if switch_user else lock_dir
        os.makedirs(self._lock_dir, mode=0o700, exist_ok=True)
        self._first_uid = first_uid
        self._count = count
        # Rootless: every box runs as ourselves (we cannot switch uid).
        self._switch_user = switch_user
        self._free: list[int] = list(range(count - 1, -1, -1))  # lowest index last
        self._fds: dict[int, int] = {}
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        # Threads may share the pool: free list, descriptors and waiters change under it.
        self._lock = threading.Lock()

    def _slot(self, index: int) -> Slot:
        if self._switch_user:
            return Slot(index, self._first_uid + index, self._first_uid + index)
        return Slot(index, os.getuid(), os.getgid())

    def lock_path(self, index: int) -> str:
        return self._lock_file(self._slot(index).uid, index)

    def _lock_file(self, uid: int, index: int) -> str:
        name = f"uid-{uid}.lock" if self._switch_user else f"slot-{index}.lock"
        return os.path.join(self._lock_dir, name)

    @contextlib.contextmanager
    def holding(self, uid: int, index: int) -> Iterator[bool]:
        """The lock of the slot with host `uid` and `index` (this pool's or
        another's on the host), held for the block if no process holds it:
        yields whether it is held."""
        fd = open_lock(self._lock_file(uid, index))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # (lets go of the lock)

    def in_use(self, index: int) -> bool:
        """Whether any process (this one included) holds slot `index` now."""
        with self.holding(self._slot(index).uid, index) as held:
            return not held

    def _try_lock(self, index: int) -> bool:
        fd = self._fds.get(index)
        if fd is None:
            fd = self._fds[index] = open_lock(self.lock_path(index))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _take(self) -> Slot | None:
        for pos in range(len(self._free) - 1, -1, -1):
            index = self._free[pos]
            if self._try_lock(index):
                del self._free[pos]
                return self._slot(index)
        return None

    @property
    def awaited(self) -> bool:
        """Whether callers of acquire() are queued for a slot now."""
        return bool(self._waiters)

    def try_acquire(self) -> Slot | None:
        """A free slot now, or None (never waits). First come, first served:
        while callers are queued, a slot that frees up is theirs."""
        with self._lock:
            return None if self._waiters else self._take()

    async def acquire(self) -> Slot:
        """A slot, waiting in line for one if none is free. release() hands a
        slot straight to the first caller in line (it never goes back to the
        free list in between, where a newcomer could take it)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._waiters:
                slot = self._take()
                if slot is not None:
                    return slot
            waiter: asyncio.Future[Slot] = loop.create_future()
            self._waiters.append(waiter)
        warn_at = time.monotonic() + WAIT_WARNING
        try:
            while True:
                with self._lock:
                    held_elsewhere = len(self._free)
                # Slots another process holds are let go without a word to us:
                # then look again shortly, when first in line.
                await asyncio.wait({waiter}, timeout=0.05 if held_elsewhere else None)
                if waiter.done():
                    return waiter.result()
                with self._lock:
                    if self._waiters and self._waiters[0] is waiter:
                        slot = self._take()
                        if slot is not None:
                            self._waiters.popleft()
                            return slot
                if held_elsewhere and time.monotonic() >= warn_at:
                    warn_at = float("inf")
                    log.warning("waiting for a slot: %d of %d are held by other processes (a service keeps some "
                                "for its warm boxes); give this Sandbox more slots, or other uids (first_uid)",
                                held_elsewhere, self._count)
        except BaseException:
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued and not waiter.cancel():
                self.release(waiter.result())  # handed to us as we leave: pass it on
            raise

    def release(self, slot: Slot) -> None:
        with self._lock:
            if slot.index not in self._fds:
                return  # the pool was closed (which let go of every lock)
            while self._waiters:
                waiter = self._waiters.popleft()
                try:
                    # Still locked, still ours: it changes hands in the waiter's loop.
                    waiter.get_loop().call_soon_threadsafe(self._hand, waiter, slot)
                    return
                except RuntimeError:  # that caller's event loop is closed
                    continue
            fcntl.flock(self._fds[slot.index], fcntl.LOCK_UN)
            self._free.append(slot.index)

    def _hand(self, waiter: asyncio.Future, slot: Slot) -> None:
        if waiter.done():  # its caller left meanwhile (cancelled)
            self.release(slot)
        else:
            waiter.set_result(slot)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
