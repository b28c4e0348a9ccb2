"""Fixtures for the official Judge0 SDK (PyPI judge0==0.0.8) against a real
Stockade server (the same harness as tests/service)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))

from stockade_server import Server  # noqa: E402

AUTH_TOKEN = "sdk-secret"


# These servers live for the whole session, also while tests/sandbox runs its
# own Sandbox(slots=4): box slots are host-wide, and a server's idle warm boxes
# would hold the very slots those tests need. (tests/service's servers keep the
# default: they start after the sandbox tests.)
NO_WARM_BOXES = {"STOCKADE_WARM_BOXES": "0"}


@pytest.fixture(scope="session")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("stockade-sdk"), NO_WARM_BOXES).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def sdk_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("stockade-sdk-auth"),
                 {**NO_WARM_BOXES, "STOCKADE_AUTHN_TOKEN": AUTH_TOKEN}).start()
    yield srv
    srv.stop()
