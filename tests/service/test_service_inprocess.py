"""The app in this process, served by a real uvicorn on a thread: for what a
test must reach inside it to provoke (a route that raises)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from stockade_server import free_port

from stockade.service.app import create_app
from stockade.settings import Settings


class NoEngine:
    """Nothing here runs a submission."""

    async def run(self, submission):
        raise AssertionError("no run expected")


@pytest.fixture
def serve_app(tmp_path) -> Iterator[Callable[[Callable[[FastAPI], None]], str]]:
    """serve_app(change) -> base URL: create_app with a stub engine, `change(app)`
    applied (routes added), served by uvicorn on a thread until the test ends."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(change: Callable[[FastAPI], None]) -> str:
        app = create_app(Settings.load(data_dir=tmp_path / "data", workers=1, warm_boxes=0), engine=NoEngine())
        change(app)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                               log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def test_an_unexpected_exception_is_a_logged_500_that_keeps_the_connection(serve_app, caplog):
    def add_routes(app: FastAPI) -> None:
        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("kaboom")

        @app.get("/whoami")
        async def whoami(request: Request) -> dict:
            return {"port": request.client.port}

    url = serve_app(add_routes)
    with caplog.at_level(logging.ERROR, logger="stockade.service"), httpx.Client(base_url=url, timeout=10) as http:
        first = http.get("/whoami").json()["port"]
        response = http.get("/boom")
        assert response.status_code == 500 and response.json() == {"error": "internal error"}
        # The same keep-alive connection answers the next request.
        again = http.get("/whoami")
        assert again.status_code == 200 and again.json() == {"port": first}
    logged = [r for r in caplog.records if r.name == "stockade.service" and r.exc_info]
    assert len(logged) == 1 and "kaboom" in str(logged[0].exc_info[1]) and "/boom" in logged[0].getMessage()


def test_a_database_that_fails_a_read_is_a_503_and_one_log_line(serve_app, caplog):
    # (PostgreSQL restarting, say: every GET was a 500 and a traceback.)
    import sqlite3

    from sqlalchemy.exc import OperationalError

    def failing_store(app: FastAPI) -> None:
        async def get(token):
            raise OperationalError("SELECT ...", {}, sqlite3.OperationalError("disk I/O error"))

        app.state.service.store.get = get

    url = serve_app(failing_store)
    with caplog.at_level(logging.ERROR), httpx.Client(base_url=url, timeout=10) as http:
        response = http.get("/submissions/0d6e6fd4-57d8-4f46-9f9d-5a5b8ab0a1c5")
        assert response.status_code == 503
        assert response.json() == {"error": "the database is unavailable, try again later"}
    logged = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is None and "disk I/O error" in logged[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]


def test_the_path_of_an_unhandled_error_is_logged_on_one_line(serve_app, caplog):
    """The path is the client's, percent-decoded: a %0A in it started a new
    line in the log, and the rest of the path was a log line of its making."""
    def add_routes(app: FastAPI) -> None:
        @app.get("/boom/{anything}")
        async def boom(anything: str) -> None:
            raise RuntimeError("kaboom")

    url = serve_app(add_routes)
    forged = "/boom/x%0A2026-01-01 00:00:00,000 ERROR stockade.service forged%1B[2J"
    with caplog.at_level(logging.ERROR, logger="stockade.service"), httpx.Client(base_url=url, timeout=10) as http:
        assert http.get(forged).status_code == 500
        deadline = time.monotonic() + 10
        while not (logged := [r.getMessage() for r in caplog.records if r.name == "stockade.service" and r.exc_info]):
            assert time.monotonic() < deadline, "nothing logged"  # (it is, just after the answer went out)
            time.sleep(0.02)
    assert len(logged) == 1 and "\n" not in logged[0] and "\x1b" not in logged[0], logged
    assert "/boom/x\\n2026-01-01" in logged[0], logged


def test_statistics_asked_again_and_again_do_not_hold_up_the_store(serve_app):
    """/statistics scans the whole table (a second for 200k submissions) and
    anybody may ask for it again with invalidate_cache=true: each request ran
    its own scan, one after another on the store's only thread, and every
    submission's insert and read waited behind them all."""
    from concurrent.futures import ThreadPoolExecutor

    scans: list[float] = []

    def change(app: FastAPI) -> None:
        store = app.state.service.store
        real = store._statistics

        def slow_scan(*args):
            scans.append(time.monotonic())
            time.sleep(1.5)  # (a large table)
            return real(*args)

        store._statistics = slow_scan

    url = serve_app(change)

    def ask_statistics(_: int) -> int:
        with httpx.Client(base_url=url, timeout=60) as http:
            return http.get("/statistics", params={"invalidate_cache": "true"}).status_code

    with ThreadPoolExecutor(10) as pool, httpx.Client(base_url=url, timeout=60) as http:
        futures = [pool.submit(ask_statistics, i) for i in range(10)]
        time.sleep(0.5)  # (they are being answered)
        started = time.monotonic()
        assert http.get(f"/submissions/{'0' * 36}").status_code == 404
        read_took = time.monotonic() - started
        assert [future.result() for future in futures] == [200] * 10
    assert read_took < 1, read_took
    assert len(scans) == 1, scans


def test_a_waiting_submission_whose_result_the_database_fails_is_answered_with_its_token(serve_app):
    """wait=true, and the result's commit fails (PostgreSQL restarting, a full
    disk): the answer was a 500 without the token, so the client lost a
    submission that was stored and whose result is stored once the database
    recovers. Now: 201, the submission as it stands, with its token."""
    from sqlalchemy.exc import OperationalError

    failures: list[str] = []

    def flaky_store(app: FastAPI) -> None:
        service = app.state.service
        finish = service.store.finish

        async def execute(row):
            return {"status_id": 3, "stdout": b"42\n"}

        async def finish_once_failing(token, values):
            if not failures:
                failures.append(token)
                raise OperationalError("UPDATE ...", {}, Exception("server closed the connection unexpectedly"))
            return await finish(token, values)

        service.dispatcher.execute = execute
        service.store.finish = finish_once_failing

    url = serve_app(flaky_store)
    with httpx.Client(base_url=url, timeout=30) as http:
        response = http.post("/submissions", params={"wait": "true"}, json={"source_code": "print(42)",
                                                                            "language_id": 71})
        assert response.status_code == 201, response.text
        token = response.json()["token"]
        assert failures == [token] and response.json()["status"]["id"] in (1, 2)
        deadline = time.monotonic() + 30
        while http.get(f"/submissions/{token}").json()["status"]["id"] != 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert http.get(f"/submissions/{token}").json()["stdout"] == "42\n"


def test_a_sandbox_failure_is_logged_as_a_warning_with_its_reason(serve_app, caplog):
    """The client gets Internal Error; the log said only verdict=sandbox_error,
    at info like any run, so an operator could neither see nor tell why."""
    from stockade.engine.model import SubmissionResult, Verdict

    def failing_sandbox(app: FastAPI) -> None:
        async def run(submission):
            return SubmissionResult(verdict=Verdict.sandbox_error, message="bwrap: Creating new namespace failed")

        app.state.service.engine.run = run

    url = serve_app(failing_sandbox)
    with caplog.at_level(logging.INFO, logger="stockade.service"), httpx.Client(base_url=url, timeout=30) as http:
        response = http.post("/submissions", params={"wait": "true"}, json={"source_code": "print(1)",
                                                                            "language_id": 71})
        assert response.json()["status"]["id"] == 13, response.text
    runs = [r for r in caplog.records if r.getMessage().startswith("run token=")]
    assert len(runs) == 1 and runs[0].levelname == "WARNING"
    message = runs[0].getMessage()
    assert " verdict=sandbox_error status=13 " in message
    assert message.endswith(" sandbox failure: 'bwrap: Creating new namespace failed'"), message
