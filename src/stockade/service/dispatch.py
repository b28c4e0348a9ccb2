"""Dispatch: the durable queue and the in-process worker pool.

The queue *is* the database: a submission is committed before it is
acknowledged, and on start every row left In Queue or Processing is queued again,
so nothing accepted is lost. In memory there is only the order of work, the set
of tokens being run, and the futures of requests waiting for a result
(`wait=true`), resolved the moment the result is stored: no polling.

Swappable: the API only calls submit/wait_for/is_processing/has_room; a
distributed dispatcher (Celery on Redis) can offer the same four.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from stockade.service.store import Row, Store

log = logging.getLogger("stockade.dispatch")

Execute = Callable[[Row], Awaitable[Row]]
Fail = Callable[[Row, BaseException], Row]


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
        self._reserved = 0  # places taken by submissions being stored right now
        self._processing: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[Row]]] = {}
        self._tasks: list[asyncio.Task] = []
        self.busy = 0

    # --- the API's side
    @property
    def pending(self) -> int:
        """Unfinished submissions: queued or running."""
        return len(self._rows) + self._reserved

    def has_room(self, count: int = 1) -> bool:
        return self.pending + count <= self.max_queue_size

    def is_processing(self, token: str) -> bool:
        return token in self._processing

    async def submit(self, rows: Sequence[Row], *, wait: bool = False) -> list[asyncio.Future[Row]]:
        """Store and queue submissions; raises QueueFull without storing any.
        With wait, returns one future per row, resolved with the stored result."""
        if not self.has_room(len(rows)):
            raise QueueFull()
        futures = [self._waiter(row["token"]) for row in rows] if wait else []
        self._reserved += len(rows)
        try:
            await self.store.insert(rows)
        except BaseException:
            for row in rows:
                self._drop_waiters(row["token"])
            raise
        finally:
            self._reserved -= len(rows)
        for row in rows:
            self._rows[row["token"]] = row
            self._queue.put_nowait(row["token"])
        return futures

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
        recovered = await self.store.unfinished()
        for token in recovered:
            self._rows[token] = None
            self._queue.put_nowait(token)
        if recovered:
            log.info("recovered %d unfinished submissions", len(recovered))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"worker-{i}") for i in range(self.workers)]
        return len(recovered)

    async def stop(self) -> None:
        """Cancel the workers. A run cut short stays unfinished in the store and
        runs again at the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for token in list(self._waiters):
            self._drop_waiters(token)

    async def _work(self) -> None:
        while True:
            token = await self._queue.get()
            self._processing.add(token)
            self.busy += 1
            try:
                await self._run_one(token)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store failed: the row stays unfinished for a restart
                log.exception("submission %s could not be completed", token)
                for future in self._waiters.pop(token, []):
                    if not future.done():
                        future.set_exception(exc)
            finally:
                self.busy -= 1
                self._processing.discard(token)

    async def _run_one(self, token: str) -> None:
        row = self._rows.get(token)
        if row is None:
            row = await self.store.get(token)
            if row is None:  # deleted meanwhile
                self._rows.pop(token, None)
                self._drop_waiters(token)
                return
        try:
            values = await self.execute(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("submission %s failed in the engine", token)
            values = self.fail(row, exc)
        # Exactly one result: the store writes only over an unfinished row.
        stored = await self.store.finish(token, values)
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
