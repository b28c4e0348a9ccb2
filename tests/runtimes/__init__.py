import os

import pytest


def available(catalog, key):
    """The runtime `key`, or a skip saying why it cannot run here; a failure
    instead with STOCKADE_REQUIRE_RUNTIMES=1 (as `make test` runs the suite,
    after installing every runtime: none may be skipped there)."""
    rt = catalog.get(key)
    if not rt.available:
        if os.environ.get("STOCKADE_REQUIRE_RUNTIMES") == "1":
            pytest.fail(f"{rt.key} must be installed here: {rt.reason}")
        pytest.skip(f"{rt.key} not installed: {rt.reason}")
    return rt
