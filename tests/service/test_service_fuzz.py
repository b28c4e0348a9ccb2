"""Property-based fuzz of the OpenAPI schema (schemathesis): whatever the
generated request, the server never answers 5xx. A server of its own, with
wait disabled (so fuzzed wait=true requests do not block on runs) and a queue
large enough that "queue is full" (a legitimate 503) cannot happen."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from stockade_server import ADMIN, Server


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("stockade-fuzz"), {
        "STOCKADE_ENABLE_WAIT_RESULT": "false",
        "STOCKADE_MAX_QUEUE_SIZE": "100000",
        "STOCKADE_AUTHZ_TOKEN": ADMIN,
        "STOCKADE_ENABLE_SUBMISSION_DELETE": "true",
        "STOCKADE_WORKERS": "1",
    }).start()
    yield srv
    srv.stop()


# Hypothesis drives schemathesis' strategies directly (its pytest plugin does not
# work with this pytest); every operation of the schema gets its own examples.
def test_no_server_errors(fuzz_server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    # Positive (schema-valid) and negative (schema-violating) requests alike.
    for operation, mode in itertools.product(operations, list(schemathesis.GenerationMode)):
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def no_server_error(case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        try:
            no_server_error()
        except Unsatisfiable:
            # Nothing to violate (an operation without parameters has no
            # negative cases): nothing to test in that mode.
            assert mode is schemathesis.GenerationMode.NEGATIVE
