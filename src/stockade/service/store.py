"""The submission store: one SQLAlchemy table, SQLite (WAL) by default, any
SQLAlchemy URL (PostgreSQL) at scale. The schema belongs to the Alembic
migrations in service/migrations; this module only reads and writes it.

SQLAlchemy here is synchronous; every call runs on a small thread pool owned by
the store (one thread for SQLite, whose writers serialize anyway), so the event
loop never blocks on the database. Writes are group-committed: those that arrive
while a commit is in flight share the next transaction, so a busy server pays
one commit (one fsync) and one thread hop for many of them; each write still
returns only once its own transaction is committed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

MIGRATIONS = Path(__file__).parent / "migrations"

# Status ids the store needs to know: a submission in either is unfinished.
IN_QUEUE, PROCESSING = 1, 2

metadata = MetaData()

# Mirrors migrations/versions/0001_submissions.py; change both together.
submissions = Table(
    "submissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token", String(36), nullable=False, unique=True),
    Column("source_code", LargeBinary),
    Column("language_id", Integer, nullable=False),
    Column("stdin", LargeBinary),
    Column("expected_output", LargeBinary),
    Column("stdout", LargeBinary),
    Column("stderr", LargeBinary),
    Column("compile_output", LargeBinary),
    Column("message", LargeBinary),
    Column("status_id", Integer, nullable=False, index=True),
    Column("created_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("time", Float),
    Column("wall_time", Float),
    Column("memory", Integer),
    Column("exit_code", Integer),
    Column("exit_signal", Integer),
    Column("number_of_runs", Integer, nullable=False),
    Column("cpu_time_limit", Float, nullable=False),
    Column("cpu_extra_time", Float, nullable=False),
    Column("wall_time_limit", Float, nullable=False),
    Column("memory_limit", Integer, nullable=False),
    Column("stack_limit", Integer, nullable=False),
    Column("max_processes_and_or_threads", Integer, nullable=False),
    Column("enable_per_process_and_thread_time_limit", Boolean, nullable=False),
    Column("enable_per_process_and_thread_memory_limit", Boolean, nullable=False),
    Column("max_file_size", Integer, nullable=False),
    Column("compiler_options", Text),
    Column("command_line_arguments", Text),
    Column("redirect_stderr_to_stdout", Boolean, nullable=False),
    Column("callback_url", Text),
    Column("additional_files", LargeBinary),
    Column("enable_network", Boolean, nullable=False),
    # Set in the same transaction as the result, cleared once the callback was
    # delivered or given up on: a restart re-sends what a crash interrupted.
    Column("callback_pending", Boolean, nullable=False, default=False),
    # Runs started (migration 0002): a submission whose runs a stop or a crash
    # cut short this many times is not run again at the next start.
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
)

Row = dict[str, Any]


class Unavailable(Exception):
    """The database could not take a write: full, read-only, locked, gone or
    unreachable (its words, one line). Nothing of that write was stored."""


def first_line(exc: BaseException) -> str:
    """A store error in one line: the database's own words (its driver's, not
    SQLAlchemy's paragraph), an OSError's reason, or else the error's type."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(getattr(exc, "orig", None) or exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]

# The hot statements, built once: building an update with .values() on every
# call cost SQLAlchemy more (~0.5 ms) than SQLite's own work. Columns to set come
# from the parameters' keys; the where clause's names must not be column names.
_INSERT = insert(submissions)
_FINISH = update(submissions).where(
    submissions.c.token == bindparam("where_token"),
    submissions.c.status_id.in_((IN_QUEUE, PROCESSING)),
)
# A worker took the submission: Processing, one more run started.
_START = (
    update(submissions)
    .where(submissions.c.token == bindparam("where_token"), submissions.c.status_id.in_((IN_QUEUE, PROCESSING)))
    .values(status_id=PROCESSING, attempts=submissions.c.attempts + 1)
)
_SET = update(submissions).where(submissions.c.token == bindparam("where_token"))
_GET = select(submissions).where(submissions.c.token == bindparam("where_token"))


def _may_exist(token: str) -> bool:
    # A token is ours (a uuid4): never longer than its column, never a NUL,
    # which PostgreSQL refuses in any text (a DataError: GET /submissions/%00
    # was a 500 and a traceback in the log). Such a token is simply not found.
    return len(token) <= 36 and "\x00" not in token


def utcnow() -> dt.datetime:
    """Naive UTC with milliseconds, the precision Judge0 shows."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _settle(futures: list[asyncio.Future[Any]], outcomes: list[tuple[bool, Any]]) -> None:
    for future, (ok, value) in zip(futures, outcomes, strict=True):
        if future.done():  # its caller went away
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. synchronous=FULL: a commit is on disk
    # before we acknowledge the submission (fsync is cheap next to a run).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# PostgreSQL: how long a statement may wait for a lock another session holds
# (an operator's LOCK TABLE, a VACUUM FULL), and run at all, before it fails
# (a 503 for a submission; a result is tried again). Without them, a write
# waited for ever, and every write queued behind it. SQLite's busy_timeout is
# the same 10 s wait.
PG_LOCK_TIMEOUT_MS = 10_000
PG_STATEMENT_TIMEOUT_MS = 60_000
# And TCP keep-alives: a database host that vanished leaves no FIN behind.
_PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def _postgres_args(url: str) -> dict[str, Any]:
    """connect_args for a PostgreSQL URL: the timeouts above and keep-alives,
    each unless the URL sets it itself."""
    given = set(make_url(url).query)
    args = {key: value for key, value in _PG_KEEPALIVES.items() if key not in given}
    if "options" not in given:
        args["options"] = f"-c lock_timeout={PG_LOCK_TIMEOUT_MS} -c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"
    return args


class Store:
    """Async facade over the submissions table."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # The SQLite file, and its identity (device, inode) once first seen:
        # see _check_file.
        self._file: Path | None = None
        self._file_id: tuple[int, int] | None = None
        if self.is_sqlite and ":///" in url:
            path = url.split(":///", 1)[1].split("?", 1)[0]
            if path and path != ":memory:" and not path.startswith("file:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._file = Path(path)
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False}
        elif url.startswith("postgresql"):
            kwargs["connect_args"] = _postgres_args(url)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._check_file()  # (its identity, if it exists already)
        self._executor = ThreadPoolExecutor(max_workers=1 if self.is_sqlite else 4, thread_name_prefix="store")
        # /statistics scans the whole table (a second for 200k submissions), and
        # anybody may ask for it again (invalidate_cache): on the store's thread,
        # every insert and read waited behind it. A reader of its own (SQLite's
        # WAL lets it read beside the writer) keeps it off their way.
        self._reporter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-report")
        # Writes waiting for the next group commit, and whether a writer job is
        # queued or running on the executor (it takes every waiting write in turn).
        self._writes: list[tuple[Any, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._writes_lock = threading.Lock()
        self._writer_busy = False

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _write(self, fn: Any, *args: Any) -> Any:
        """fn(connection, *args) in a transaction shared with the writes that
        arrived meanwhile; returns fn's result once that transaction committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._writes_lock:
            self._writes.append((fn, args, future))
            start = not self._writer_busy
            self._writer_busy = True
        if start:
            loop.run_in_executor(self._executor, self._write_all, loop)
        return await future

    def _write_all(self, loop: asyncio.AbstractEventLoop) -> None:
        # On the store's thread: commit what is waiting, then what arrived
        # during that commit, until nothing waits.
        while True:
            with self._writes_lock:
                batch, self._writes = self._writes, []
                if not batch:
                    self._writer_busy = False
                    return
            outcomes = self._commit(batch)
            try:
                loop.call_soon_threadsafe(_settle, [future for _, _, future in batch], outcomes)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _check_file(self) -> None:
        """Raise OSError if the SQLite file this store writes to is no longer
        the one at its path (deleted, moved or replaced: `rm -rf` of the data
        directory). SQLite goes on writing to its open, unlinked file, so every
        submission acknowledged from then on was gone at the next start, which
        finds no database, or another one, at that path."""
        if self._file is None:
            return
        try:
            st = os.stat(self._file)
        except FileNotFoundError:
            if self._file_id is None:
                return  # (not made yet: the first connection makes it)
            raise OSError(errno.ENOENT, f"the database file {self._file} was deleted or moved") from None
        file_id = (st.st_dev, st.st_ino)
        if self._file_id is None:
            self._file_id = file_id
        elif file_id != self._file_id:
            raise OSError(errno.ESTALE, f"the database file {self._file} was replaced by another file")

    def _commit(self, batch: list[tuple[Any, tuple[Any, ...], asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        """(ok, result or exception) per write: one transaction for all, or, if
        it fails, one each, so an error is only its own write's."""
        try:
            self._check_file()  # (a stat: a few microseconds for a whole group)
        except OSError as exc:
            return [(False, exc)] * len(batch)
        if len(batch) > 1:
            committing = False
            try:
                with self.engine.begin() as connection:
                    outcomes = [(True, fn(connection, *args)) for fn, args, _ in batch]
                    committing = True  # (the block's end commits)
                return outcomes
            except DBAPIError as exc:
                if committing and exc.connection_invalidated:
                    # The connection died during COMMIT (PostgreSQL restarting,
                    # its session ended): the transaction may be committed. Done
                    # again one by one, an insert that was committed failed as a
                    # duplicate (a 500, and a stored submission not run) and a
                    # run's start was counted twice. Each write fails instead, as
                    # a lone write would (an insert's 503; a result is tried again).
                    return [(False, exc)] * len(batch)
            except Exception:  # noqa: S110 - retried one by one below, where it is reported
                pass
        outcomes: list[tuple[bool, Any]] = []
        for fn, args, _ in batch:
            # The outcome is known only once the block is left: the commit, at
            # its end, is what fails on a full disk. (Noted inside it, a failed
            # commit was a success and then a failure: every later write of the
            # batch got its neighbour's outcome, a 201 for a row never stored.)
            try:
                with self.engine.begin() as connection:
                    result = fn(connection, *args)
            except Exception as exc:
                outcomes.append((False, exc))
            else:
                outcomes.append((True, result))
        return outcomes

    # --- schema
    def migrate_sync(self) -> tuple[str | None, str | None]:
        """Bring the schema to the newest migration (Alembic `upgrade head`);
        returns the revisions before and after (None: no schema yet)."""
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            after = MigrationContext.configure(connection).get_current_revision()
        self._check_file()  # (its identity, now that it exists)
        return before, after

    async def migrate(self) -> None:
        await self._call(self.migrate_sync)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._reporter.shutdown(wait=True)
        self.engine.dispose()

    # --- writes (each fn(connection, ...) runs inside a group commit)
    @staticmethod
    def _insert(connection: Connection, rows: list[Row]) -> None:
        connection.execute(_INSERT, rows)

    async def insert(self, rows: Sequence[Row]) -> None:
        """Store new submissions; returns once they are committed. Raises
        Unavailable when the database cannot take them (none is stored)."""
        if rows:
            try:
                await self._write(self._insert, list(rows))
            except (OperationalError, OSError) as exc:
                raise Unavailable(first_line(exc)) from exc

    @staticmethod
    def _finish(connection: Connection, token: str, values: Row) -> bool:
        return connection.execute(_FINISH, {**values, "where_token": token}).rowcount == 1

    async def finish(self, token: str, values: Row) -> bool:
        """Write a result, only if the submission has none yet (exactly one result)."""
        return await self._write(self._finish, token, values)

    @staticmethod
    def _start(connection: Connection, token: str) -> None:
        connection.execute(_START, {"where_token": token})

    async def started(self, token: str) -> None:
        """A run of this submission starts: Processing, and one more attempt."""
        await self._write(self._start, token)

    @staticmethod
    def _set(connection: Connection, token: str, values: Row) -> None:
        connection.execute(_SET, {**values, "where_token": token})

    async def callback_done(self, token: str) -> None:
        await self._write(self._set, token, {"callback_pending": False})

    @staticmethod
    def _delete(connection: Connection, token: str) -> None:
        connection.execute(delete(submissions).where(submissions.c.token == token))

    async def delete(self, token: str) -> None:
        await self._write(self._delete, token)

    # --- reads
    def _get_many(self, tokens: Iterable[str]) -> dict[str, Row]:
        tokens = [token for token in tokens if _may_exist(token)]
        if not tokens:
            return {}
        with self.engine.connect() as connection:
            rows = connection.execute(select(submissions).where(submissions.c.token.in_(tokens))).mappings()
            return {row["token"]: dict(row) for row in rows}

    def _get(self, token: str) -> Row | None:
        with self.engine.connect() as connection:
            row = connection.execute(_GET, {"where_token": token}).mappings().first()
            return dict(row) if row is not None else None

    async def get(self, token: str) -> Row | None:
        if not _may_exist(token):
            return None
        return await self._call(self._get, token)

    async def get_many(self, tokens: Iterable[str]) -> dict[str, Row]:
        return await self._call(self._get_many, list(tokens))

    def _page(self, page: int, per_page: int) -> tuple[list[Row], int]:
        with self.engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(submissions)).scalar_one()
            if (page - 1) * per_page >= total:
                # Past the last row: nothing to read (and an offset past the
                # database's integers would not even bind).
                return [], total
            rows = connection.execute(
                select(submissions)
                .order_by(submissions.c.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            ).mappings()
            return [dict(row) for row in rows], total

    async def page(self, page: int, per_page: int) -> tuple[list[Row], int]:
        """One page of submissions, newest first, and the total count."""
        return await self._call(self._page, page, per_page)

    def _unfinished(self, max_attempts: int) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(submissions.c.token)
                .where(submissions.c.status_id.in_((IN_QUEUE, PROCESSING)), submissions.c.attempts < max_attempts)
                .order_by(submissions.c.id)
            )
            return [row[0] for row in rows]

    async def unfinished(self, max_attempts: int) -> list[str]:
        """Tokens left In Queue or Processing (by a previous run of the
        service) with fewer than max_attempts runs started, oldest first."""
        return await self._call(self._unfinished, max_attempts)

    def _interrupted(self, max_attempts: int) -> list[Row]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(submissions)
                .where(submissions.c.status_id.in_((IN_QUEUE, PROCESSING)), submissions.c.attempts >= max_attempts)
                .order_by(submissions.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    async def interrupted(self, max_attempts: int) -> list[Row]:
        """Rows left unfinished whose runs were started max_attempts times or more."""
        return await self._call(self._interrupted, max_attempts)

    def _pending_callbacks(self) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(submissions.c.token).where(submissions.c.callback_pending.is_(True)).order_by(submissions.c.id)
            )
            return [row[0] for row in rows]

    async def pending_callbacks(self) -> list[str]:
        """Tokens of the finished submissions whose callback is still to deliver, oldest first."""
        return await self._call(self._pending_callbacks)

    def _statistics(self, since_day: dt.datetime, since_month: dt.datetime) -> dict[str, Any]:
        c = submissions.c
        with self.engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(submissions)).scalar_one()
            today = connection.execute(select(func.count()).where(c.created_at >= since_day)).scalar_one()
            days = connection.execute(
                select(func.date(c.created_at), func.count()).where(c.created_at >= since_month).group_by(func.date(c.created_at))
            ).all()
            languages = connection.execute(select(c.language_id, func.count()).group_by(c.language_id)).all()
            statuses = connection.execute(select(c.status_id, func.count()).group_by(c.status_id)).all()
        return {
            "total": total,
            "today": today,
            "days": {str(day): count for day, count in days},
            "languages": {language: count for language, count in languages},
            "statuses": {status: count for status, count in statuses},
        }

    async def statistics(self) -> dict[str, Any]:
        now = utcnow()
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return await asyncio.get_running_loop().run_in_executor(
            self._reporter, self._statistics, day, day - dt.timedelta(days=30))

    def database_size(self) -> int | None:
        """Bytes on disk of a SQLite database (None for other databases)."""
        if not self.is_sqlite or ":///" not in self.url:
            return None
        path = Path(self.url.split(":///", 1)[1])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
