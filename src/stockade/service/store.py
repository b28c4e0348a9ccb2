"""The submission store: one SQLAlchemy table, SQLite (WAL) by default, any
SQLAlchemy URL (PostgreSQL) at scale. The schema belongs to the Alembic
migrations in service/migrations; this module only reads and writes it.

SQLAlchemy here is synchronous; every call runs on a small thread pool owned by
the store (one thread for SQLite, whose writers serialize anyway), so the event
loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
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
from sqlalchemy.engine import Engine

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
)

Row = dict[str, Any]

# The hot statements, built once: building an update with .values() on every
# call cost SQLAlchemy more (~0.5 ms) than SQLite's own work. Columns to set come
# from the parameters' keys; the where clause's names must not be column names.
_INSERT = insert(submissions)
_FINISH = update(submissions).where(
    submissions.c.token == bindparam("where_token"),
    submissions.c.status_id.in_((IN_QUEUE, PROCESSING)),
)
_SET = update(submissions).where(submissions.c.token == bindparam("where_token"))
_GET = select(submissions).where(submissions.c.token == bindparam("where_token"))


def utcnow() -> dt.datetime:
    """Naive UTC with milliseconds, the precision Judge0 shows."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. synchronous=FULL: a commit is on disk
    # before we acknowledge the submission (fsync is cheap next to a run).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Store:
    """Async facade over the submissions table."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite and ":///" in url:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._executor = ThreadPoolExecutor(max_workers=1 if self.is_sqlite else 4, thread_name_prefix="store")

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- schema
    def migrate_sync(self) -> None:
        """Bring the schema to the newest migration (Alembic `upgrade head`)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    async def migrate(self) -> None:
        await self._call(self.migrate_sync)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    # --- writes
    def _insert(self, rows: Sequence[Row]) -> None:
        with self.engine.begin() as connection:
            connection.execute(_INSERT, list(rows))

    async def insert(self, rows: Sequence[Row]) -> None:
        """Store new submissions; returns once they are committed."""
        if rows:
            await self._call(self._insert, rows)

    def _finish(self, token: str, values: Row) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(_FINISH, {**values, "where_token": token})
            return result.rowcount == 1

    async def finish(self, token: str, values: Row) -> bool:
        """Write a result, only if the submission has none yet (exactly one result)."""
        return await self._call(self._finish, token, values)

    def _set(self, token: str, values: Row) -> None:
        with self.engine.begin() as connection:
            connection.execute(_SET, {**values, "where_token": token})

    async def callback_done(self, token: str) -> None:
        await self._call(self._set, token, {"callback_pending": False})

    def _delete(self, token: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(submissions).where(submissions.c.token == token))

    async def delete(self, token: str) -> None:
        await self._call(self._delete, token)

    # --- reads
    def _get_many(self, tokens: Iterable[str]) -> dict[str, Row]:
        tokens = list(tokens)
        with self.engine.connect() as connection:
            rows = connection.execute(select(submissions).where(submissions.c.token.in_(tokens))).mappings()
            return {row["token"]: dict(row) for row in rows}

    def _get(self, token: str) -> Row | None:
        with self.engine.connect() as connection:
            row = connection.execute(_GET, {"where_token": token}).mappings().first()
            return dict(row) if row is not None else None

    async def get(self, token: str) -> Row | None:
        return await self._call(self._get, token)

    async def get_many(self, tokens: Iterable[str]) -> dict[str, Row]:
        return await self._call(self._get_many, list(tokens))

    def _page(self, page: int, per_page: int) -> tuple[list[Row], int]:
        with self.engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(submissions)).scalar_one()
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

    def _unfinished(self) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(submissions.c.token)
                .where(submissions.c.status_id.in_((IN_QUEUE, PROCESSING)))
                .order_by(submissions.c.id)
            )
            return [row[0] for row in rows]

    async def unfinished(self) -> list[str]:
        """Tokens left In Queue or Processing (by a previous run of the service), oldest first."""
        return await self._call(self._unfinished)

    def _pending_callbacks(self) -> list[Row]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(submissions).where(submissions.c.callback_pending.is_(True)).order_by(submissions.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    async def pending_callbacks(self) -> list[Row]:
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
        return await self._call(self._statistics, day, day - dt.timedelta(days=30))

    def database_size(self) -> int | None:
        """Bytes on disk of a SQLite database (None for other databases)."""
        if not self.is_sqlite or ":///" not in self.url:
            return None
        path = Path(self.url.split(":///", 1)[1])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
