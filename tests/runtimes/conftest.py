from __future__ import annotations

import pytest

from tests.engine import support


@pytest.fixture(scope="session")
def catalog():
    return support.catalog()


@pytest.fixture(scope="session")
def engine(sandbox):
    engine, path = support.make_engine(sandbox)
    yield engine
    support.remove(path)
