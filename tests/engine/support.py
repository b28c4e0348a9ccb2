"""Fixture helpers shared by tests/engine and tests/runtimes: one catalog and
one engine (with its own compile cache) per test session, so compiled products
are shared between tests that submit the same program."""

from __future__ import annotations

import os
import shutil
import tempfile

from stockade.engine import Engine
from stockade.runtimes import Catalog

_catalog: Catalog | None = None


def catalog() -> Catalog:
    global _catalog
    if _catalog is None:
        _catalog = Catalog.load()
    return _catalog


def cache_dir(prefix: str) -> str:
    """A fresh cache directory the slot uids can traverse (pytest's tmp_path
    lives under a 0700 directory, which bwrap could not bind from)."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


def make_engine(sandbox, prefix: str = "stockade-test-cache-", **kwargs) -> tuple[Engine, str]:
    path = cache_dir(prefix)
    return Engine(sandbox, catalog(), cache_dir=path, **kwargs), path


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
