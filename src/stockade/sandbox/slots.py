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
        fd = os.open(self._lock_file(uid, index), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
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
            path = self.lock_path(index)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            self._fds[index] = fd
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
        """Whether a caller of acquire() waits for a slot now (or was woken
        and has not taken one yet)."""
        return bool(self._waiters)

    def try_acquire(self) -> Slot | None:
        """A free slot now, or None (never waits)."""
        with self._lock:
            return self._take()

    async def acquire(self) -> Slot:
        warn_at = time.monotonic() + WAIT_WARNING
        loop = asyncio.get_running_loop()
        while True:
            # Looking and queueing at once: a release in between would wake nobody.
            with self._lock:
                slot = self._take()
                if slot is not None:
                    return slot
                waiter = loop.create_future()
                self._waiters.append(waiter)
                held_elsewhere = len(self._free)
            if held_elsewhere and time.monotonic() >= warn_at:
                warn_at = float("inf")
                log.warning("waiting for a slot: %d of %d are held by other processes (a service keeps some for "
                            "its warm boxes); give this Sandbox more slots, or other uids (first_uid)",
                            held_elsewhere, self._count)
            try:
                # Woken by release(); when every free index is held by another
                # process instead, look again shortly.
                await asyncio.wait_for(waiter, 0.05 if held_elsewhere else None)
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    def release(self, slot: Slot) -> None:
        with self._lock:
            if slot.index not in self._fds:
                return  # the pool was closed (which let go of every lock)
            fcntl.flock(self._fds[slot.index], fcntl.LOCK_UN)
            self._free.append(slot.index)
            # Wake the first caller still asleep; it leaves the queue itself, once
            # it has looked again (until then, the pool is `awaited`).
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.get_loop().call_soon_threadsafe(_wake, waiter)
                    break

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
