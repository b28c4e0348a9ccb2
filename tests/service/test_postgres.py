"""The service on PostgreSQL: the same migrations, API and durability as on
SQLite, against a real PostgreSQL server (Debian's, installed by `make test`):
a throwaway cluster in a temporary directory, on a unix socket only, run by
the `postgres` user, removed afterwards."""

from __future__ import annotations

import base64
import datetime as dt
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

import httpx
import pytest
from stockade_server import ADMIN, Server, alembic, free_port, kill_during_each_run, wait_done

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:]  # the newest installed

pytestmark = [
    pytest.mark.skipif(not PG_BIN, reason="PostgreSQL is not installed (make test installs it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the throwaway cluster runs as the postgres user: root only"),
]


def as_postgres(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                          check=check, timeout=120, cwd="/")


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    bin_dir = PG_BIN[0]
    root = tempfile.mkdtemp(prefix="stockade-pg-")
    shutil.chown(root, "postgres", "postgres")
    data, port = os.path.join(root, "data"), free_port()
    try:
        as_postgres(f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        as_postgres(f"{bin_dir}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "-o",
                    f"-k {root} -p {port} -c listen_addresses=''", "start")
        as_postgres(f"{bin_dir}/createdb", "-h", root, "-p", str(port), "stockade")
        yield f"postgresql+psycopg://postgres@/stockade?host={root}&port={port}"
    finally:
        as_postgres(f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def wait_finished(client: httpx.Client, tokens: list[str], timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [item for i in range(0, len(tokens), 20) for item in client.get("/submissions/batch", params={
            "tokens": ",".join(tokens[i:i + 20]), "base64_encoded": "true", "fields": "token,status,stdout",
        }).json()["submissions"]]  # (20 at most in a batch)
        if all(s["status"]["id"] > 2 for s in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_service_runs_on_postgresql(make_server, database_url):
    server = make_server({"STOCKADE_DATABASE_URL": database_url, "STOCKADE_ENABLE_SUBMISSION_DELETE": "true",
                          "STOCKADE_AUTHZ_TOKEN": ADMIN})
    admin = {"X-Auth-User": ADMIN}
    with server.client() as client:
        # One answered at once, with stdin, expected output and a verdict.
        done = client.post("/submissions", params={"wait": "true", "base64_encoded": "true"}, json={
            "language_id": 71, "source_code": b64("print(input()[::-1])"), "stdin": b64("stressed"),
            "expected_output": b64("desserts"),
        })
        assert done.status_code == 201, done.text
        assert done.json()["status"] == {"id": 3, "description": "Accepted"}
        assert base64.b64decode(done.json()["stdout"]) == b"desserts\n"
        token = done.json()["token"]
        # Stored: read back, listed, counted, deleted.
        again = client.get(f"/submissions/{token}", params={"fields": "token,status_id,time,memory,created_at"})
        assert again.status_code == 200 and again.json()["status_id"] == 3, again.text
        assert again.json()["created_at"].endswith("Z") and float(again.json()["time"]) >= 0
        # A batch, queued and run by the workers.
        batch = client.post("/submissions/batch", params={"base64_encoded": "true"}, json={"submissions": [
            {"language_id": 71, "source_code": b64(f"print({i} * {i})")} for i in range(6)]})
        assert batch.status_code == 201, batch.text
        tokens = [item["token"] for item in batch.json()]
        finished = wait_finished(client, tokens)
        assert [base64.b64decode(s["stdout"]) for s in finished] == [f"{i * i}\n".encode() for i in range(6)]
        listed = client.get("/submissions", params={"per_page": 100}, headers=admin).json()
        assert {s["token"] for s in listed["submissions"]} >= {token, *tokens}
        assert listed["meta"]["total_count"] == 7
        pages = [client.get("/submissions", params={"per_page": 3, "page": page, "fields": "token"},
                            headers=admin).json() for page in (1, 2, 3, 4)]
        assert [len(p["submissions"]) for p in pages] == [3, 3, 1, 0]
        assert [s["token"] for p in pages for s in p["submissions"]] == [s["token"] for s in listed["submissions"]]
        assert [s["token"] for s in listed["submissions"]] == [*reversed(tokens), token]  # newest first
        assert pages[1]["meta"] == {"current_page": 2, "next_page": 3, "prev_page": 1, "total_pages": 3,
                                    "total_count": 7}
        statistics = client.get("/statistics").json()
        assert statistics["submissions"]["total"] == 7, statistics
        assert statistics["submissions"]["today"] == 7, statistics  # (last_30_days: the days before today)
        assert set(statistics["submissions"]["last_30_days"].values()) == {0}, statistics
        assert client.delete(f"/submissions/{token}", headers=admin).status_code == 200
        assert client.get(f"/submissions/{token}").status_code == 404
        # A submission of two days ago is counted on its day (PostgreSQL's date(), SQLite's string).
        _psql(database_url, "UPDATE submissions SET created_at = created_at - interval '2 days'"
                            f" WHERE token = '{tokens[0]}'")
        days = client.get("/statistics", params={"invalidate_cache": "true"}).json()["submissions"]["last_30_days"]
        day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).strftime("%Y-%m-%d")
        assert days[day] == 1 and sum(days.values()) == 1, days


def test_kill_9_on_postgresql_loses_nothing(make_server, database_url, tmp_path):
    """50 slow submissions, kill -9 mid-way, restart: each finishes once, with
    its one result (random output: two runs could not agree), and a run
    counted for each time it was started."""
    url = _new_database(database_url, "kill_9")
    env = {"STOCKADE_DATABASE_URL": url, "STOCKADE_WORKERS": "2"}
    data_dir = tmp_path / "data"
    server = make_server(env, data_dir=data_dir)
    with server.client() as client:
        source = b64("import os, time\ntime.sleep(0.25)\nprint(input(), os.urandom(8).hex())")
        tokens = []
        for start in range(0, 50, 10):
            response = client.post("/submissions/batch", params={"base64_encoded": "true"}, json={"submissions": [
                {"language_id": 71, "source_code": source, "stdin": b64(str(i))} for i in range(start, start + 10)]})
            assert response.status_code == 201, response.text
            tokens += [item["token"] for item in response.json()]
        deadline = time.monotonic() + 60
        while int(_psql(url, "SELECT count(*) FROM submissions WHERE status_id = 3")) < 6:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    before = dict(line.split("|") for line in _psql(url, "SELECT token, stdout FROM submissions").splitlines())
    server.kill()
    assert 0 < sum(1 for stdout in before.values() if stdout) < 50, "the kill must land mid-way"
    restarted = make_server(env, data_dir=data_dir, port=server.port)
    with restarted.client() as client:
        finished = wait_finished(client, tokens)
    assert [s["status"]["id"] for s in finished] == [3] * 50, finished
    outputs = [base64.b64decode(s["stdout"]).decode().split() for s in finished]
    assert [output[0] for output in outputs] == [str(i) for i in range(50)]
    for token, output in zip(tokens, outputs, strict=True):  # a result stored before the kill is kept
        if before[token]:
            assert bytes.fromhex(before[token][2:]).decode().split() == output
    attempts = [int(n) for n in _psql(url, "SELECT attempts FROM submissions").splitlines()]
    assert len(attempts) == 50 and set(attempts) <= {1, 2}


def test_one_server_per_postgresql_database(make_server, database_url, tmp_path):
    """A second server on the database stops at start, naming the first: it
    would have run again everything the first one is running. The first one's
    lock ends with it, kill -9 included."""
    env = {"STOCKADE_DATABASE_URL": database_url}
    first = make_server(env)
    second = Server(tmp_path / "second", env)
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError) as failure:
            second.start(timeout=60)
    finally:
        second.stop()  # (if it started after all)
    message = str(failure.value)
    assert "exited with 1" in message and "Traceback" not in message, message
    assert "another Stockade server" in message and f"pid {first.process.pid}'" in message, message
    assert time.monotonic() - started < 30, "it waits a few seconds for a server just killed, not more"
    first.kill()
    make_server(env, data_dir=tmp_path / "second")  # (raises if it cannot start)


def test_a_bad_database_url_is_a_clear_error_at_start(tmp_path):
    server = Server(tmp_path / "data", {"STOCKADE_DATABASE_URL": "postgresql+psycopg://nobody@/none?host=/nonexistent"})
    with pytest.raises(RuntimeError) as failure:
        server.start(timeout=30)
    assert "Traceback" not in str(failure.value) and "database" in str(failure.value).lower(), str(failure.value)


def test_a_token_postgresql_cannot_hold_is_not_found(make_server, database_url):
    """PostgreSQL refuses a NUL in any text: a token with one, in the path or
    in a batch, was a DataError, a 500 and a traceback in the log."""
    server = make_server({"STOCKADE_DATABASE_URL": database_url, "STOCKADE_ENABLE_SUBMISSION_DELETE": "true",
                          "STOCKADE_AUTHZ_TOKEN": ADMIN})
    with server.client() as client:
        for token in ("%00", "a%00b", "0" * 36 + "%00"):
            response = client.get(f"/submissions/{token}")
            assert response.status_code == 404 and response.json() == {"error": "not found"}, response.text
            response = client.delete(f"/submissions/{token}", headers={"X-Auth-User": ADMIN})
            assert response.status_code == 404, response.text
        response = client.get("/submissions/batch", params={"tokens": "a\x00,b"})
        assert response.status_code == 200 and response.json() == {"submissions": [None, None]}, response.text
    assert "Traceback" not in server.log()


def _psql(database_url: str, sql: str) -> str:
    """psql's unaligned answer to `sql` on the URL's database."""
    host, port = database_url.split("host=", 1)[1].split("&port=")
    name = database_url.split("?", 1)[0].rsplit("/", 1)[1]
    return as_postgres(f"{PG_BIN[0]}/psql", "-h", host, "-p", port, "-d", name, "-Atc", sql).stdout.strip()


def _lock_holder(database_url: str) -> str:
    """application_name of the session holding the servers' advisory lock ('' if none)."""
    from stockade.service.serve import PG_LOCK_KEY

    return _psql(database_url, "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                 f" WHERE l.locktype = 'advisory' AND l.granted AND l.objid = {PG_LOCK_KEY}")


def test_a_server_whose_lock_session_ends_takes_the_lock_again(make_server, database_url, tmp_path):
    """The advisory lock lives as long as its session: ended (PostgreSQL
    restarted, pg_terminate_backend), the lock was gone for good and a second
    server could start beside the first. The server takes it again."""
    server = make_server({"STOCKADE_DATABASE_URL": database_url})
    name = f"pid {server.process.pid}"
    assert name in _lock_holder(database_url)
    ended = _psql(database_url, "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory'")
    assert ended == "t"
    deadline = time.monotonic() + 60
    while name not in _lock_holder(database_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert name in _lock_holder(database_url), server.log()
    second = Server(tmp_path / "second", {"STOCKADE_DATABASE_URL": database_url})
    try:
        with pytest.raises(RuntimeError, match="another Stockade server"):
            second.start(timeout=60)
    finally:
        second.stop()
    with server.client() as client:
        done = client.post("/submissions", params={"wait": "true"}, json={"language_id": 71, "source_code": "print(1)"})
        assert done.status_code == 201 and done.json()["stdout"] == "1\n", done.text


def test_a_server_whose_lock_another_took_meanwhile_stops(make_server, database_url):
    """Lock session ended, and another holder took the lock before the server
    could take it back: two servers would run the same submissions, so this
    one stops (gracefully: what it runs runs again under the other)."""
    import psycopg

    from stockade.service.serve import PG_LOCK_KEY

    server = make_server({"STOCKADE_DATABASE_URL": database_url})
    host, port = database_url.split("host=", 1)[1].split("&port=")
    with psycopg.connect(host=host, port=port, dbname="stockade", user="postgres", autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'")
        other.execute("SELECT pg_advisory_lock(%s)", (PG_LOCK_KEY,))  # (waits for the ended session to go)
        assert server.process.wait(60) == -signal.SIGTERM  # (as after `kill PID`: uvicorn raises it again)
    assert "the database lock was lost and another Stockade server" in server.log(), server.log()
    assert "Traceback" not in server.log()


def _new_database(database_url: str, name: str) -> str:
    """A new, empty database in the throwaway cluster; its URL."""
    host, port = database_url.split("host=", 1)[1].split("&port=")
    as_postgres(f"{PG_BIN[0]}/createdb", "-h", host, "-p", port, name)
    return database_url.replace("/stockade?", f"/{name}?")


def _row(token: str) -> dict:
    """A new submission's row, as the store inserts it."""
    from stockade.service.store import IN_QUEUE, utcnow

    return {"token": token, "language_id": 71, "source_code": b"x", "status_id": IN_QUEUE,
            "created_at": utcnow(), "number_of_runs": 1, "cpu_time_limit": 5.0, "cpu_extra_time": 1.0,
            "wall_time_limit": 10.0, "memory_limit": 128000, "stack_limit": 64000,
            "max_processes_and_or_threads": 60, "enable_per_process_and_thread_time_limit": False,
            "enable_per_process_and_thread_memory_limit": False, "max_file_size": 1024,
            "redirect_stderr_to_stdout": False, "enable_network": False, "callback_pending": False}


def test_a_database_made_before_attempts_is_migrated_and_its_submissions_run(make_server, database_url):
    """A PostgreSQL database made by the version before migration 0002, with
    a submission left Processing: the server adds `attempts` (0 for the rows
    already there), runs the submission once, and the migration goes down and
    up again without losing rows."""
    url = _new_database(database_url, "before_attempts")
    alembic(url, "upgrade", "0001")
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO submissions (token, source_code, language_id, status_id, created_at, number_of_runs,"
            " cpu_time_limit, cpu_extra_time, wall_time_limit, memory_limit, stack_limit,"
            " max_processes_and_or_threads, enable_per_process_and_thread_time_limit,"
            " enable_per_process_and_thread_memory_limit, max_file_size, redirect_stderr_to_stdout, enable_network)"
            " VALUES ('old-one', 'print(6 * 7)', 71, 2, '2026-01-02 03:04:05.678', 1, 5, 1, 10, 128000, 64000,"
            " 60, false, false, 1024, false, false)"))
    server = make_server({"STOCKADE_DATABASE_URL": url})
    with server.client() as client:
        done = wait_done(client, "old-one")
    assert done["status"]["id"] == 3 and done["stdout"] == "42\n" and done["created_at"] == "2026-01-02T03:04:05.678Z"
    server.stop()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT attempts FROM submissions")).scalar_one() == 1
    alembic(url, "downgrade", "0001")
    alembic(url, "upgrade", "head")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT token, attempts FROM submissions")).all() == [("old-one", 0)]
    engine.dispose()


def test_group_commits_on_postgresql_fail_only_the_bad_write_and_count_each_start_once(database_url):
    """The store's writes share transactions on PostgreSQL too (4 threads, one
    writer at a time): a duplicate token fails its own insert only, and a
    run's start and its result, committed together or apart, count one
    attempt and leave the result (a start never comes after its finish)."""
    import asyncio
    import threading

    from sqlalchemy.exc import IntegrityError

    from stockade.service.store import Store

    url = _new_database(database_url, "group_commits")

    async def scenario() -> None:
        store = Store(url)
        await store.migrate()
        await store.insert([_row("taken")])
        # Hold the writer, so that every write below waits for one group commit.
        gate = threading.Event()
        held = asyncio.ensure_future(store._write(lambda _connection: gate.wait()))
        await asyncio.sleep(0.05)
        writes = [asyncio.ensure_future(store.insert([_row(f"t{i}")])) for i in range(5)]
        writes.append(asyncio.ensure_future(store.insert([_row("taken")])))  # a duplicate
        writes.append(asyncio.ensure_future(store.started("t0")))
        writes.append(asyncio.ensure_future(store.finish("t0", {"status_id": 3, "stdout": b"\x00\xff"})))
        writes.append(asyncio.ensure_future(store.started("t0")))  # (too late: it has its result)
        await asyncio.sleep(0.05)
        gate.set()
        await held
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert outcomes[:5] == [None] * 5 and isinstance(outcomes[5], IntegrityError), outcomes
        assert outcomes[6:] == [None, True, None], outcomes
        t0 = await store.get("t0")
        assert (t0["status_id"], t0["attempts"], t0["stdout"]) == (3, 1, b"\x00\xff")
        # Apart: each its own commit.
        await store.started("t1")
        assert await store.finish("t1", {"status_id": 3}) is True
        await store.started("t1")
        t1 = await store.get("t1")
        assert (t1["status_id"], t1["attempts"]) == (3, 1)
        store.close()

    asyncio.run(scenario())


def test_a_submission_the_server_never_survives_is_finished_at_the_4th_start_on_postgresql(make_server, database_url,
                                                                                        tmp_path):
    """As on SQLite: each start's `attempts` write is committed while the run
    goes on, so three kills -9 mid-run count three runs, and the fourth start
    finishes the submission as an Internal Error instead of running it."""
    url = _new_database(database_url, "attempts")
    env, data = {"STOCKADE_DATABASE_URL": url, "STOCKADE_WORKERS": "1"}, tmp_path / "data"

    def attempts(token: str) -> int:
        return int(_psql(url, f"SELECT attempts FROM submissions WHERE token = '{token}'"))

    server, token = kill_during_each_run(make_server, env, data, attempts)
    with server.client() as client:
        final = wait_done(client, token)
        assert final["status"]["id"] == 13
        assert final["message"] == "the server stopped during each of this submission's 3 runs: it is not run again"
        done = client.post("/submissions", params={"wait": "true"}, json={"source_code": "print(1)", "language_id": 71})
        assert done.json()["status"]["id"] == 3
    assert attempts(token) == 3 and attempts(done.json()["token"]) == 1


@pytest.mark.parametrize("outage", ["restart", "pg_terminate_backend"])
def test_postgresql_restarted_under_a_busy_server(make_server, database_url, outage):
    """PostgreSQL restarts (or ends every session of the server) while
    clients submit and read: each request gets
    201/200 or a 503 that says to try again (never a 500), every 201 is a
    stored submission that runs once, and the server recovers by itself: new
    submissions run, and the database lock is taken again."""
    import threading

    host, port = database_url.split("host=", 1)[1].split("&port=")
    server = make_server({"STOCKADE_DATABASE_URL": database_url, "STOCKADE_WORKERS": "2",
                          "STOCKADE_MAX_QUEUE_SIZE": "100000"})
    answers: list[tuple[str, int, str]] = []
    restarted = threading.Event()
    after_restart = threading.Semaphore(0)

    def client_loop(i: int) -> None:
        with server.client() as client:
            while True:
                done = restarted.is_set()
                answer = client.post("/submissions", params={"wait": str(i % 2 == 0).lower()},
                                     json={"language_id": 71, "source_code": "import time\ntime.sleep(0.1)\nprint(7)"})
                answers.append(("post", answer.status_code, answer.text))
                if answer.status_code == 201:
                    read = client.get(f"/submissions/{answer.json()['token']}", params={"fields": "token"})
                    answers.append(("get", read.status_code, read.text))
                    if done:
                        after_restart.release()
                        return

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    while sum(1 for kind, status, _ in answers if kind == "post" and status == 201) < 8:
        time.sleep(0.05)
    if outage == "restart":
        as_postgres(f"{PG_BIN[0]}/pg_ctl", "-D", os.path.join(host, "data"), "-m", "fast", "-w", "restart",
                    "-l", os.path.join(host, "log"), "-o", f"-k {host} -p {port} -c listen_addresses=''")
    else:
        assert "t" in _psql(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = 'stockade' AND pid <> pg_backend_pid()")
    restarted.set()
    for thread in threads:
        thread.join(120)
    bad = [(kind, status, text) for kind, status, text in answers if status not in (200, 201, 503)]
    assert not bad, bad
    for _kind, status, text in answers:
        if status == 503:
            assert text in ('{"error":"the submission could not be stored, try again later"}',
                            '{"error":"the database is unavailable, try again later"}'), text
    tokens = [json.loads(text)["token"] for kind, status, text in answers if kind == "post" and status == 201]
    with server.client() as client:
        finished = wait_finished(client, tokens)
    assert [s["status"]["id"] for s in finished] == [3] * len(tokens), finished
    assert all(base64.b64decode(s["stdout"]) == b"7\n" for s in finished)
    deadline = time.monotonic() + 60
    while f"pid {server.process.pid}" not in _lock_holder(database_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"pid {server.process.pid}" in _lock_holder(database_url), server.log()
    assert "Traceback" not in server.log()


def test_a_submission_reads_the_same_on_postgresql_as_on_sqlite(make_server, database_url):
    """The same submission, on each store: the same JSON (times and limits as
    decimal strings, timestamps to the millisecond with a Z), and its bytes
    (NUL, invalid UTF-8, a few MB) back as they were sent."""
    import re

    body = {"language_id": 71, "source_code": b64("import sys\nd = sys.stdin.buffer.read()\n"
                                                   "sys.stdout.buffer.write(d[:4] + b'\\xff\\x00')\nprint(len(d))"),
            "stdin": base64.b64encode(b"\x00\xfe\xff\x00" + bytes(range(256)) * 8192).decode(),
            "cpu_time_limit": 1.25, "cpu_extra_time": 0.1, "wall_time_limit": 3.333, "memory_limit": 65536,
            "expected_output": base64.b64encode(b"\x00\xfe\xff\x00\xff\x00" + b"2097156\n").decode()}
    seen = []
    for env in ({"STOCKADE_DATABASE_URL": database_url}, {}):
        server = make_server(env)
        with server.client() as client:
            done = client.post("/submissions", params={"wait": "true", "base64_encoded": "true"}, json=body)
            assert done.status_code == 201, done.text
            read = client.get(f"/submissions/{done.json()['token']}", params={"fields": "*", "base64_encoded": "true"})
            seen.append(read.json())
        server.stop()
    on_postgresql, on_sqlite = seen
    assert on_postgresql["status"] == {"id": 3, "description": "Accepted"}, on_postgresql
    for field, sent in (("stdin", "stdin"), ("stdout", "expected_output")):  # (base64 in lines of 60, as Judge0's)
        assert base64.b64decode(on_postgresql[field]) == base64.b64decode(body[sent])
    for field in ("created_at", "finished_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", on_postgresql[field]), on_postgresql[field]
    for field in ("time", "wall_time"):
        assert re.fullmatch(r"\d+\.\d+", on_postgresql[field]), on_postgresql[field]
    varying = {"token", "created_at", "finished_at", "time", "wall_time", "memory"}
    assert {k: v for k, v in on_postgresql.items() if k not in varying} == \
        {k: v for k, v in on_sqlite.items() if k not in varying}


def test_a_group_commit_whose_connection_dies_in_commit_is_not_done_twice(database_url):
    """The connection dies during a shared transaction's COMMIT, after the
    server committed it (PostgreSQL restarting at that moment): its writes
    were done again one by one, so the insert failed as a duplicate (an
    IntegrityError: a 500 for a stored submission, never run) and a run's
    start was counted twice. Each write now fails as a lone write would."""
    import asyncio
    import threading

    import psycopg
    from sqlalchemy.exc import OperationalError

    from stockade.service.store import IN_QUEUE, Store, Unavailable

    url = _new_database(database_url, "commit_dies")

    async def scenario() -> None:
        store = Store(url)
        await store.migrate()
        await store.insert([_row("running")])
        commits: list[int] = []
        real_commit = store.engine.dialect.do_commit

        def commit_then_die(dbapi_connection) -> None:
            real_commit(dbapi_connection)
            commits.append(1)
            if len(commits) == 2:  # (the first is the held write's, alone)
                dbapi_connection.dbapi_connection.close()  # (the pool's proxy: psycopg's own connection)
                raise psycopg.OperationalError("server closed the connection unexpectedly")

        store.engine.dialect.do_commit = commit_then_die
        gate = threading.Event()
        held = asyncio.ensure_future(store._write(lambda _connection: gate.wait()))
        await asyncio.sleep(0.05)
        writes = [asyncio.ensure_future(store.insert([_row("new")])), asyncio.ensure_future(store.started("running"))]
        await asyncio.sleep(0.05)
        gate.set()
        await held
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert isinstance(outcomes[0], Unavailable) and isinstance(outcomes[1], OperationalError), outcomes
        assert (await store.get("new"))["status_id"] == IN_QUEUE  # (committed after all: runs at the next start)
        assert (await store.get("running"))["attempts"] == 1
        store.close()

    asyncio.run(scenario())


def test_a_write_another_sessions_lock_blocks_fails_instead_of_waiting_for_ever(database_url, monkeypatch):
    """An operator's LOCK TABLE (or a VACUUM FULL) held a write, and every
    write queued behind it, for as long as it lasted. It now fails after the
    lock timeout (a 503 for a submission) and the store goes on once the lock
    is gone."""
    import asyncio

    from sqlalchemy import create_engine, text

    from stockade.service import store as store_module
    from stockade.service.store import Store, Unavailable

    monkeypatch.setattr(store_module, "PG_LOCK_TIMEOUT_MS", 300)
    url = _new_database(database_url, "lock_timeout")

    async def scenario() -> None:
        store = Store(url)
        await store.migrate()
        await store.insert([_row("before")])
        other = create_engine(url)
        try:
            with other.connect() as connection, connection.begin():
                connection.execute(text("LOCK TABLE submissions IN ACCESS EXCLUSIVE MODE"))
                with pytest.raises(Unavailable, match="lock timeout"):
                    # (A bound, not to hang for ever without the timeout.)
                    await asyncio.wait_for(store.insert([_row("blocked")]), 20)
            await store.insert([_row("after")])
            assert await store.get("blocked") is None and (await store.get("after"))["token"] == "after"
        finally:
            other.dispose()
            store.close()

    asyncio.run(scenario())
