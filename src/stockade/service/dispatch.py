"""Dispatch: the durable queue and the in-process worker pool.

The queue *is* the database: a submission is committed before it is
acknowledged, and on start every row left In Queue or Processing is queued again,
so nothing accepted is lost. In memory there is only the order of work, the set
of tokens being run, and the futures of requests waiting for a result
(`wait=true`), resolved the moment the result is stored: no polling.

A run may start while its row is still being committed (that commit is the
longest wait on an idle server's path); its result is stored, and answered,
only after the commit, and dropped if the commit failed (nobody was told the
submission exists). A worker does not wait for its result's commit either: it
takes the next submission while the result is committed (and then answered),
so a slow fsync stalls answers, never runs.

When the server stops, drain() ends the waits: each waiting request answers
with its submission as it stands (In Queue or Processing, with its token), and
the run, cut short with the workers, runs again at the next start.

Swappable: the API only calls submit/wait_for/is_processing/has_room; a
distributed dispatcher (Celery on Redis) can offer the same four.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence

from stockade.errors import StockadeError
from stockade.service.store import Row, Store, first_line

log = logging.getLogger("stockade.dispatch")

Execute = Callable[[Row], Awaitable[Row]]
Fail = Callable[[Row, BaseException], Row]


# How long stop() lets results that are being committed finish.
_STORE_GRACE = 5.0
# After the store failed (a full disk, a locked or vanished database): seconds
# before the first try again, doubled each time up to the last.
_RETRY_FIRST, _RETRY_LAST = 0.5, 10.0
# Runs of one submission that a stop or a crash may cut short: past them, it
# is not run again at the next start but finished as an Internal Error. A
# submission that brought the server down (or that a deploy caught each time)
# started a run at every start, for ever.
MAX_ATTEMPTS = 3


class Interrupted(StockadeError):
    """Each of a submission's runs was cut short by a stop or crash of the server."""


class _Unreadable(Exception):
    """A recovered submission's row could not be read (the store failed)."""


class QueueFull(Exception):
    """More unfinished submissions than the queue may hold."""


class Dispatcher:
    """Runs stored submissions on `workers` concurrent tasks.

    execute(row) -> the result columns to store; fail(row, exc) -> the columns of
    an internal error when execute raised. on_finished(row) sees each stored result.
    """

    def __init__(
        self,
        store: Store,
        execute: Execute,
        fail: Fail,
        *,
        workers: int,
        max_queue_size: int,
        on_finished: Callable[[Row], None] | None = None,
    ):
        self.store = store
        self.execute = execute
        self.fail = fail
        self.workers = workers
        self.max_queue_size = max_queue_size
        self.on_finished = on_finished
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._rows: dict[str, Row | None] = {}  # unfinished token -> row (None: read it from the store)
        self._commits: dict[str, asyncio.Future[None]] = {}  # token -> its insert, while in flight
        self._processing: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[Row]]] = {}
        self._tasks: list[asyncio.Task] = []
        self._storing: set[asyncio.Task] = set()  # results being committed, their workers gone on
        self._stopping = asyncio.Event()  # set by stop(): no more tries again
        self._starts: set[asyncio.Future[None]] = set()  # runs' starts being recorded
        # Done once the server is stopping: nobody waits for a result any more.
        # (One future every wait watches, made on first use, on the serving loop:
        # no task per waiting request.)
        self._drained: asyncio.Future[None] | None = None
        self._draining = False
        self.busy = 0

    # --- the API's side
    @property
    def pending(self) -> int:
        """Unfinished submissions: queued or running."""
        return len(self._rows)

    def has_room(self, count: int = 1) -> bool:
        """Room for `count` more in the queue, which holds what waits for a
        worker (as Judge0's MAX_QUEUE_SIZE counts its Resque queue), not what runs."""
        return self.pending - len(self._processing) + count <= self.max_queue_size

    def is_processing(self, token: str) -> bool:
        return token in self._processing

    async def submit(self, rows: Sequence[Row], *, wait: bool = False) -> list[asyncio.Future[Row]]:
        """Store and queue submissions; returns once they are committed. Raises
        QueueFull without storing any, or the store's error (then none is run).
        With wait, returns one future per row, resolved with the stored result."""
        if not self.has_room(len(rows)):
            raise QueueFull()
        tokens = [row["token"] for row in rows]
        futures = [self._waiter(token) for token in tokens] if wait else []
        # The insert is a task of its own: a request that goes away while it is
        # in flight does not stop it, and what it commits is run.
        commit = asyncio.ensure_future(self.store.insert(rows))
        commit.add_done_callback(functools.partial(self._committed, tokens))
        for token, row in zip(tokens, rows, strict=True):
            self._rows[token] = row
            self._commits[token] = commit
            self._queue.put_nowait(token)
        await asyncio.shield(commit)
        return futures

    async def wait_for(self, future: asyncio.Future[Row]) -> Row | None:
        """The result `future` (from submit) resolves with, or None once the
        server drains: the submission then runs after the restart, and the
        request answers with what it has (its token) instead of being
        cancelled by the server with a 500."""
        if self._draining:
            return None
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.wait({future, self._drained}, return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return future.result()
        future.cancel()  # (only this request's future: the run is the worker's)
        return None

    def drain(self) -> None:
        """The server is stopping: end every wait for a result (see wait_for)."""
        self._draining = True
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _committed(self, tokens: list[str], commit: asyncio.Future[None]) -> None:
        for token in tokens:
            self._commits.pop(token, None)
        if commit.cancelled() or commit.exception() is not None:
            # Never stored, so never acknowledged: forget the rows (a worker
            # skips them, or drops the result of one it already started).
            for token in tokens:
                self._rows.pop(token, None)
                self._drop_waiters(token)

    def _waiter(self, token: str) -> asyncio.Future[Row]:
        # One future per waiting request: a client that goes away cancels only
        # its own future, never the run or other waiters.
        future: asyncio.Future[Row] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(token, []).append(future)
        return future

    def _drop_waiters(self, token: str) -> None:
        for future in self._waiters.pop(token, []):
            future.cancel()

    # --- lifecycle
    async def start(self) -> int:
        """Queue what a previous run left unfinished, start the workers; returns
        how many submissions were recovered."""
        for row in await self.store.interrupted(MAX_ATTEMPTS):
            # (Its callback, if any, goes with the others callbacks.resume() finds.)
            attempts = row["attempts"]
            try:
                await self.store.finish(row["token"], self.fail(row, Interrupted(
                    f"the server stopped during each of this submission's {attempts} runs: it is not run again")))
            except Exception as exc:  # (a full disk): no reason not to start; unfinished, it is not run
                log.error("submission %s not run again, but not finished either (tried again at the next start): %s",
                          row["token"], first_line(exc))
                continue
            log.error("submission %s not run again: the server stopped during each of its %d runs", row["token"], attempts)
        recovered = await self.store.unfinished(MAX_ATTEMPTS)
        for token in recovered:
            self._rows[token] = None
            self._queue.put_nowait(token)
        if recovered:
            log.info("recovered %d unfinished submissions", len(recovered))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"worker-{i}") for i in range(self.workers)]
        return len(recovered)

    async def stop(self) -> None:
        """Cancel the workers, let results being stored finish (briefly). A run
        cut short stays unfinished in the store and runs again at the next start."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._storing:
            _, late = await asyncio.wait(set(self._storing), timeout=_STORE_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for token in list(self._waiters):
            self._drop_waiters(token)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            token = await self._queue.get()
            self._processing.add(token)
            self.busy += 1
            handed_off = False
            try:
                result = await self._run_one(token)
                if result is not None:
                    # The result's commit goes on without this worker: a slow
                    # fsync (100-300 ms happen on a busy disk) delays this answer
                    # only, never the next run. Answered once committed, as before.
                    task = loop.create_task(self._store_result(token, *result))
                    self._storing.add(task)
                    task.add_done_callback(self._storing.discard)
                    handed_off = True
            except asyncio.CancelledError:
                raise
            except _Unreadable as exc:  # the store failed to read the row: again later
                self._failed(token, exc.__cause__ or exc)
                if token in self._rows:
                    # Left out of the queue, it stayed unfinished (and counted
                    # against the queue's size) until a restart.
                    loop.call_later(_RETRY_LAST, self._queue.put_nowait, token)
            except Exception as exc:
                self._failed(token, exc)
            finally:
                self.busy -= 1
                if not handed_off:
                    self._processing.discard(token)

    def _failed(self, token: str, exc: Exception) -> None:
        log.error("submission %s could not be completed: %s", token, first_line(exc))
        for future in self._waiters.pop(token, []):
            if not future.done():
                future.set_exception(exc)

    async def _run_one(self, token: str) -> tuple[Row, Row] | None:
        """Run one queued submission: (row, result values) to store, or None
        when there is nothing to store (its insert failed, or it was deleted)."""
        if token not in self._rows:  # its insert failed
            return None
        row = self._rows[token]
        if row is None:
            try:
                row = await self.store.get(token)
            except Exception as exc:
                raise _Unreadable() from exc
            if row is None:  # deleted meanwhile
                self._rows.pop(token, None)
                self._drop_waiters(token)
                return None
        # Counted before it runs (a write of its own, committed beside the run):
        # a run the server does not survive is counted too.
        started = asyncio.ensure_future(self.store.started(token))
        self._starts.add(started)
        started.add_done_callback(self._start_written)
        try:
            values = await self.execute(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("submission %s failed in the engine", token)
            values = self.fail(row, exc)
        return row, values

    def _start_written(self, write: asyncio.Future[None]) -> None:
        self._starts.discard(write)
        if not write.cancelled() and write.exception() is not None:
            log.warning("a run's start could not be recorded: %s", first_line(write.exception()))

    async def _store_result(self, token: str, row: Row, values: Row) -> None:
        try:
            commit = self._commits.get(token)
            if commit is not None:
                await asyncio.wait([commit])  # its outcome is _committed's business
            if token not in self._rows:
                return  # never stored (the insert failed): nobody waits for this result
            # Exactly one result: the store writes only over an unfinished row.
            stored = await self._finish(token, values)
            if stored is None:
                return  # stopping, still not stored: the row runs again at the next start
            self._rows.pop(token, None)
            final = {**row, **values}
            for future in self._waiters.pop(token, []):
                if not future.done():
                    future.set_result(final)
            if stored and self.on_finished is not None:
                try:
                    self.on_finished(final)
                except Exception:
                    log.exception("on_finished failed for %s", token)
        finally:
            self._processing.discard(token)

    async def _finish(self, token: str, values: Row) -> bool | None:
        """store.finish, tried again until it succeeds (the result is kept
        meanwhile), or None once the dispatcher stops. A result whose commit
        failed (a full disk) was dropped: the row stayed In Queue, counted
        against the queue's size, until a restart ran it again."""
        delay = _RETRY_FIRST
        for tries in itertools.count(1):
            try:
                return await self.store.finish(token, values)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if tries == 1:
                    self._failed(token, exc)  # the waiting requests are told now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return None
            delay = min(delay * 2, _RETRY_LAST)
        return None  # (never reached: count() has no end)

