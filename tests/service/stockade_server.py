"""A real Stockade server for tests: `python -m stockade.service` on a free
port with its own data directory, started and stopped (or killed) by the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ADMIN = "admin-secret"  # the X-Auth-User token of test servers that have one
MAX_BODY = 2 * 1024 * 1024  # the session server's request size limit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One service process. `env` adds STOCKADE_* settings."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "STOCKADE_DATA_DIR": str(self.data_dir),
            "STOCKADE_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir / "server.log"

    def start(self, timeout: float = 60) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stockade.service", "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        headers = {}
        tokens = self.env.get("STOCKADE_AUTHN_TOKEN", "").split()
        if tokens:
            headers[self.env.get("STOCKADE_AUTHN_HEADER", "X-Auth-Token")] = tokens[0]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/version", headers=headers, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


def alembic(url: str, action: str, revision: str) -> None:
    """An Alembic command on the database at `url` ("upgrade", "0001"): a
    database as an older version of Stockade made it."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from stockade.service.store import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)
    engine.dispose()


def wait_done(client: httpx.Client, token: str, timeout: float = 60, **params) -> dict:
    """Poll one submission until it leaves In Queue / Processing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/submissions/{token}", params={"fields": "*", **params})
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"]["id"] not in (1, 2):
            return body
        time.sleep(0.05)
    raise AssertionError(f"submission {token} did not finish in {timeout} s")


def kill_during_each_run(make_server, env: dict, data_dir, attempts, runs: int = 3) -> tuple[Server, str]:
    """Submit a slow program and kill -9 the server during each of its `runs`
    runs (attempts(token): the runs the database counted); the server started
    after the last kill, and the token."""
    server = make_server(env, data_dir=data_dir)
    with server.client() as client:
        token = client.post("/submissions", json={"source_code": "import time\ntime.sleep(60)",
                                                  "language_id": 71}).json()["token"]
    for run in range(1, runs + 1):
        deadline = time.monotonic() + 60
        while attempts(token) < run and time.monotonic() < deadline:
            time.sleep(0.05)
        assert attempts(token) == run
        server.kill()
        server = make_server(env, data_dir=data_dir, port=server.port)
    return server, token
