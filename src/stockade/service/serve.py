"""Run the service in the foreground with uvicorn (used by `stockade serve`
and `python -m stockade.service`)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from stockade.errors import StockadeError
from stockade.service.dispatch import Dispatcher
from stockade.settings import Settings, unknown_settings


def serve(settings: Settings) -> None:
    """Start uvicorn on settings.host:settings.port until interrupted. What
    stops it from starting (a data directory or SQLite database another server
    holds, a port in use, a database it cannot reach or use, no usable
    sandbox) is one line on stderr and exit status 1, not a traceback."""
    from stockade.service.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations: only news worth reading
    # httpx logs each callback's PUT, its URL whole at INFO: the client's path
    # and query, often a secret; callbacks.py logs what went wrong, by token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in unknown_settings(config_file=settings.config_file):
        logging.getLogger("stockade.settings").warning("not a setting, ignored: %s", name)
    if (open_to_all := open_without_authentication(settings)) is not None:
        logging.getLogger("stockade.settings").warning("%s", open_to_all)
    raise_open_files()
    try:
        hold_data_dir(settings.data_dir)
        hold_database(settings.sqlalchemy_url)
        listener = listen(settings.host, settings.port)
        if settings.port == 0:  # the kernel chose one: say which
            settings = settings.model_copy(update={"port": listener.getsockname()[1]})
        check_database(settings.sqlalchemy_url)
        app = create_app(settings, migrated=True)
    except StockadeError as exc:
        print(f"stockade: cannot serve: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    server = _Server(uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=timed_protocol(settings.request_timeout),
        log_level=settings.log_level,
        access_log=False,  # one line per run is logged by the service itself
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    ))
    server.dispatcher = app.state.service.dispatcher
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        # Ctrl-C (SIGINT): uvicorn stopped cleanly, then raised the signal again,
        # which Python turns into KeyboardInterrupt: a 20-line traceback after
        # "Finished server process" (and click's "Aborted!", exit status 1, under
        # `stockade serve`). Exit as a shell expects after SIGINT instead.
        raise SystemExit(128 + signal.SIGINT) from None
    if not server.started:
        raise SystemExit(3)  # (uvicorn's status for a start that failed: it said why)


def open_without_authentication(settings: Settings) -> str | None:
    """What to warn of when the API listens beyond loopback with no
    authentication token: anyone who reaches the port runs code on the host
    (operations.md asks for STOCKADE_AUTHN_TOKEN first). None otherwise."""
    import ipaddress

    if settings.authn_tokens or settings.host == "localhost":
        return None
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(settings.host.strip("[]")).is_loopback:
            return None
    return (f"authentication is off (no STOCKADE_AUTHN_TOKEN) and the API listens on {settings.host}, not only"
            " on loopback: anyone who reaches the port may run code here")


def raise_open_files() -> None:
    """The soft limit on descriptors up to the hard one. Every connection
    takes one, and so does each box (pipes, cgroup files, its directory):
    with systemd's default soft limit, 1024, a few hundred idle or slow
    connections left the runs none, and accepted submissions finished as
    Internal Error. (Each box sets its own, much lower, limit.)"""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # (beyond fs.nr_open: keep what we have)
            pass


BACKLOG = 2048  # uvicorn's own default
# Seconds a stopping server lets open requests finish, and how much of that
# wait=true requests wait for their result before they answer with the
# submission as it stands (uvicorn cancels what is left at the end, a 500).
GRACEFUL_SHUTDOWN = 5.0
WAIT_GRACE = GRACEFUL_SHUTDOWN - 1.0


class _Server(uvicorn.Server):
    """uvicorn's server, which tells the dispatcher when it starts to stop."""

    dispatcher: Dispatcher | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.dispatcher is not None:
            asyncio.get_running_loop().call_later(WAIT_GRACE, self.dispatcher.drain)
        await super().shutdown(sockets)


def timed_protocol(timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools) with a time limit on each request's
    head: from the connection, or from the next request's first byte, its
    request line and headers must arrive within `timeout` (the body has as
    long again: the gate's). Past it, 408 and the connection closes. uvicorn
    times out nothing until a head is complete: a client that connected, or
    sent half its headers, and waited held a connection and a descriptor for
    good, and enough of them left the server none (slowloris). A request
    answered before its body all came closes its connection too, and an
    answer the client reads nothing of for `timeout` aborts it."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    body = json.dumps({"error": f"request head not received within {timeout:g} s"}).encode()
    answer = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
              b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))

    class TimedProtocol(HttpToolsProtocol):
        head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._start_head_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._start_head_timer()  # (already running for a connection's first request)

        def on_headers_complete(self) -> None:
            self._stop_head_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            if self.cycle is not None and self.cycle.more_body:
                # Answered before its body all came (the gate's 408, 413 or 401, a
                # route that reads no body): uvicorn kept the connection and threw
                # the rest away as it came, and each byte put off the keep-alive
                # timeout, so a client sending one now and then held it for good.
                self.transport.close()
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            self._stop_head_timer()
            self._stop_write_timer()
            super().connection_lost(exc)

        # A client that reads nothing of an answer leaves it in this process's
        # memory (the kernel takes a few MiB, the rest waits here), for good:
        # an answer with fields=* can be tens of MiB, and a few hundred such
        # requests, never read, held gigabytes. No progress in `timeout`: abort.
        write_timer: asyncio.TimerHandle | None = None
        write_backlog = 0

        def pause_writing(self) -> None:
            super().pause_writing()
            self._watch_writes()

        def resume_writing(self) -> None:
            self._stop_write_timer()
            super().resume_writing()

        def _watch_writes(self) -> None:
            self._stop_write_timer()
            self.write_backlog = self._unsent()
            self.write_timer = self.loop.call_later(timeout, self._writes_stalled)

        def _unsent(self) -> int:
            # Ours and the kernel's (sent, not yet acknowledged): ours alone moves
            # only once the kernel's buffer (MiB) half empties, and a client that
            # reads slowly, but reads, must not count as one that does not.
            unsent = self.transport.get_write_buffer_size()
            sock = self.transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError, ValueError):
                unsent += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
            return unsent

        def _stop_write_timer(self) -> None:
            self.write_timer = _cancelled(self.write_timer)

        def _writes_stalled(self) -> None:
            self.write_timer = None
            if self._unsent() < self.write_backlog:
                self._watch_writes()  # read slowly, but read
            else:
                self.transport.abort()

        def _start_head_timer(self) -> None:
            if self.head_timer is None:
                self.head_timer = self.loop.call_later(timeout, self._head_timed_out)

        def _stop_head_timer(self) -> None:
            self.head_timer = _cancelled(self.head_timer)

        def _head_timed_out(self) -> None:
            self.head_timer = None
            if self.cycle is not None and not self.cycle.response_complete:
                # A request pipelined behind one still answering: that answer first.
                self._start_head_timer()
            elif not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

    return TimedProtocol


def _cancelled(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()


def listen(host: str, port: int) -> socket.socket:
    """The service's listening socket, made before anything starts: a port in
    use is one line, not a service that starts (recovering submissions) and stops."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on connections
    # whose socket says so, and one made with proto 0 (socket.create_server's)
    # left every answer's body (uvicorn sends it after the headers) to wait
    # for the client's delayed ACK: 40 ms more per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        return sock
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)  # (a name that does not resolve: getaddrinfo's words)
        raise StockadeError(f"cannot listen on {host}:{port}: {reason}") from None


LOCK_FILE = "server.lock"
_held: list = []  # our locks' descriptors (and PostgreSQL connection), kept open while the process lives


def hold_data_dir(data_dir: Path) -> None:
    """Lock `data_dir` for this process, or say which server has it. A second
    server on the same directory would run again, at its start, every
    submission the first one is running (recovery takes what is unfinished)."""
    def taken(fd: int) -> str:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        return (f"another Stockade server (pid {holder}) uses the data directory {data_dir}:"
                " one server per data directory (STOCKADE_DATA_DIR)")

    fd = _hold(data_dir / LOCK_FILE, f"the data directory {data_dir}", taken, os.O_NOFOLLOW)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _hold(path: Path, what: str, taken: Callable[[int], str], flags: int = 0) -> int:
    """Open `path` (made if missing) and flock it for this process: held until
    the process ends, even by kill -9. Another holder: StockadeError(taken(fd))."""
    try:
        # Made private: the database holds every submission (sources, stdin,
        # expected outputs), and it was 0644 in a 0755 directory, readable by
        # every local user. SQLite gives its -wal and -shm files the
        # database's mode. What exists already keeps its own.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | flags, 0o600)
    except FileExistsError:  # (mkdir's word for a file where the directory should be)
        raise StockadeError(f"cannot use {what}: {path.parent} is not a directory") from None
    except OSError as exc:
        raise StockadeError(f"cannot use {what}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        message = taken(fd)
        os.close(fd)
        if exc.errno != errno.EWOULDBLOCK:
            raise StockadeError(f"cannot lock {what}: {exc.strerror}") from None
        raise StockadeError(message) from None
    _held.append(fd)
    return fd


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None: another database, or SQLite in memory)."""
    from sqlalchemy import exc, make_url

    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a URI filename (?uri=true)
        database = database.removeprefix("file:").split("?", 1)[0]
        if not database or database == ":memory:":
            return None
    return Path(database)


def hold_database(url: str) -> None:
    """Lock a SQLite database file itself for this process, as hold_data_dir
    locks the data directory: a STOCKADE_DATABASE_URL can point two servers
    with different data directories (or another path to the same file) at one
    database. flock, on the file's inode, is held until the process ends, even
    by kill -9, and does not touch SQLite's own (POSIX, byte-range) locks.
    PostgreSQL is locked by check_database, which connects to it."""
    path = sqlite_file(url)
    if path is None:
        if url.startswith("sqlite"):
            # A server's promise is that nothing accepted is lost: not kept by a
            # database that ends with the process.
            raise StockadeError("an in-memory SQLite database loses every submission when the server stops:"
                                " give STOCKADE_DATABASE_URL a file (sqlite:///PATH)")
        return
    # (An empty file is a new, empty SQLite database. Links are followed: two
    # paths to one file must meet on one lock.)
    _hold(path, f"the database {path}", lambda fd: f"another Stockade server uses the SQLite database {path}:"
          " one server per database (STOCKADE_DATABASE_URL)")


def check_database(url: str) -> None:
    """Connect once to the database and bring its schema up to date, before
    anything starts: a wrong URL, a missing driver, a server that does not
    answer, a file that is not a SQLite database or a schema from a newer
    version is a StockadeError naming it (without its password)."""
    from sqlalchemy import create_engine, exc, make_url
    from sqlalchemy.pool import NullPool

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError as error:
        raise StockadeError(f"not a database URL: {error}") from None
    if not url.startswith("sqlite"):  # (SQLite: the store creates its file)
        postgres = make_url(url).get_backend_name() == "postgresql"
        try:
            engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={
                "application_name": f"stockade on {socket.gethostname()}, pid {os.getpid()}"[-63:],
            } if postgres else {})
        except (exc.NoSuchModuleError, ImportError) as error:
            raise StockadeError(f"no driver for the database {shown}: {error}") from None
        try:
            connection = engine.connect()
        except exc.SQLAlchemyError as error:
            engine.dispose()
            raise StockadeError(f"cannot reach the database {shown}: {_first_line(error)}") from None
        if postgres:
            hold_postgres(connection, shown)  # (the connection stays open: it holds the lock)
        else:
            connection.close()
            engine.dispose()
    migrate(url, str(sqlite_file(url) or shown))


# The advisory lock a server holds on its PostgreSQL database ("STKD"; advisory
# locks are per database, so servers on other databases never meet on it).
PG_LOCK_KEY = 0x53544B44
PG_LOCK_WAIT = 5.0  # seconds: a server killed just now may not be noticed gone yet
_PG_SESSION = (
    "SET idle_session_timeout = 0",  # (an operator's timeout would end the lock with its session)
    # A host that dies leaves no FIN behind: PostgreSQL notices within ~a minute,
    # not after the kernel's two hours. (Ignored on a unix socket: no need.)
    "SET tcp_keepalives_idle = 30",
    "SET tcp_keepalives_interval = 10",
    "SET tcp_keepalives_count = 3",
)


def hold_postgres(connection, shown: str) -> None:
    """Take the server's advisory lock on this PostgreSQL database, held by
    `connection` (kept open while the process lives; PostgreSQL releases it
    when the session ends, kill -9 included), or say which server holds it.
    A second server on one database would run again, at its start, every
    submission the first one is running, as on one data directory. Then
    watch it: see _LockWatch."""
    _take_postgres_lock(connection, shown, PG_LOCK_WAIT)
    _held.append(connection)
    _LockWatch(connection, shown).start()


def _take_postgres_lock(connection, shown: str, wait: float) -> None:
    """pg_try_advisory_lock on `connection` for up to `wait` seconds, or a
    StockadeError naming the holder; the connection is closed on failure."""
    from sqlalchemy import exc, text

    try:
        for statement in _PG_SESSION:
            with contextlib.suppress(exc.DBAPIError):  # (older servers lack idle_session_timeout)
                connection.execute(text(statement))
        deadline = time.monotonic() + wait
        while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": PG_LOCK_KEY}).scalar():
            if time.monotonic() > deadline:
                holder = connection.execute(text(
                    "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a"
                    " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0"
                    " AND l.objid = :key AND l.objsubid = 1 AND a.datname = current_database()"),
                    {"key": PG_LOCK_KEY}).first()
                who = (f" (PostgreSQL session {holder[0]!r}{f' from {holder[1]}' if holder[1] else ''})"
                       if holder else "")
                raise _LockTaken(f"another Stockade server{who} uses the database {shown}:"
                                 " one server per database (STOCKADE_DATABASE_URL)")
            time.sleep(0.2)
    except exc.SQLAlchemyError as error:
        connection.close()
        raise StockadeError(f"cannot lock the database {shown}: {_first_line(error)}") from None
    except StockadeError:
        connection.close()
        raise


class _LockTaken(StockadeError):
    """Another server holds the database's advisory lock."""


PG_LOCK_CHECK = 5.0  # seconds between two checks that the lock's session lives


class _LockWatch(threading.Thread):
    """The advisory lock lives as long as its session: PostgreSQL restarted,
    or the session ended by pg_terminate_backend (or an idle timeout of a
    pooler), and the lock was gone without a word, so a second server could
    start on the database and run again what this one runs. Every few
    seconds the session is checked; once it is gone, the lock is taken again
    on a new session as soon as PostgreSQL answers, or, if another server
    holds it by then, this server stops (SIGTERM: a graceful stop, its runs
    cut short run again under the other server)."""

    def __init__(self, connection, shown: str) -> None:
        super().__init__(name="postgres-lock", daemon=True)
        self.connection, self.shown = connection, shown
        self.log = logging.getLogger("stockade.service")

    def run(self) -> None:
        from sqlalchemy import exc, text

        while True:
            time.sleep(PG_LOCK_CHECK)
            try:
                self.connection.execute(text("SELECT 1"))
                continue
            except exc.SQLAlchemyError as error:
                if self.connection in _held:
                    self.log.warning("the session holding the database lock ended (%s): taking the lock again",
                                     _first_line(error))
                    _held.remove(self.connection)
                    with contextlib.suppress(exc.SQLAlchemyError):
                        self.connection.close()
            try:
                connection = self.connection.engine.connect()
            except exc.SQLAlchemyError:
                continue  # (PostgreSQL not back yet)
            try:
                _take_postgres_lock(connection, self.shown, 0)
            except _LockTaken as error:
                self.log.error("the database lock was lost and %s: stopping", error)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except StockadeError:
                continue  # (PostgreSQL gone again on the way: try again)
            _held.append(connection)
            self.connection = connection
            self.log.warning("the database lock is held again")


def _first_line(error: BaseException) -> str:
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


def migrate(url: str, shown: str) -> None:
    """The schema migrations, run here rather than in the app's startup, where
    a failure was a traceback and uvicorn's exit status 3."""
    from alembic.script.revision import ResolutionError
    from alembic.util import CommandError
    from sqlalchemy import exc

    from stockade.service.store import Store

    store = None
    try:
        store = Store(url)
        before, after = store.migrate_sync()
    except (ResolutionError, CommandError) as error:
        # The one an operator meets: going back a version after an upgrade.
        revision = getattr(error, "argument", None) or str(error).rsplit(" ", 1)[-1].strip("'")
        raise StockadeError(f"cannot use the database {shown}: its schema (revision {revision})"
                            " is newer than this version of Stockade") from None
    except exc.SQLAlchemyError as error:
        raise StockadeError(f"cannot use the database {shown}: {_first_line(error)}") from None
    except OSError as error:
        raise StockadeError(f"cannot use the database {shown}: {error.strerror or error}") from None
    finally:
        if store is not None:
            store.close()
    # An upgrade's migration is worth a line (alembic's own are off: one per step).
    if before is not None and before != after:
        logging.getLogger("stockade.service").info("the database's schema was migrated from revision %s to %s",
                                                   before, after)
