"""Fixtures: one real server for the whole session (authorization configured,
deletion enabled, a small body limit so 413 is cheap to provoke), and a factory
for servers with other settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from stockade_server import ADMIN, MAX_BODY, Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("stockade-data"), {
        "STOCKADE_AUTHZ_TOKEN": f"{ADMIN} other-admin",
        "STOCKADE_ENABLE_SUBMISSION_DELETE": "true",
        "STOCKADE_MAX_REQUEST_SIZE": str(MAX_BODY),
    }).start()
    yield srv
    srv.stop()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(env: dict[str, str], data_dir=None, port=None) -> Server:
        srv = Server(data_dir or tmp_path_factory.mktemp("stockade-extra"), env, port=port).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()

