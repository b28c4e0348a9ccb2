"""Conformance: every runtime of the catalog, through the real engine and box.

The programs are data (cases/<runtime key>/<case>.<ext>); the expectations are
the same for every language. A runtime whose toolchain is not installed is
skipped with the reason; `make test` installs all of them, so in CI none is
(set STOCKADE_REQUIRE_RUNTIMES=1 to turn such a skip into a failure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade.engine import Submission, TestCase, Verdict
from stockade.sandbox import Limits, MiB
from tests.runtimes import available

CASES = Path(__file__).with_name("cases")
RUNTIMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())
CASE_NAMES = ("hello", "echo", "compile_error", "runtime_error", "loop", "memory", "argv")

# Words that a shell would expand or split: they must reach the program literally.
TRICKY_ARGS = """plain "two words" 'semi;colon' '$(id)' "back\\"slash" '*' ''"""
TRICKY_ARGV = ["plain", "two words", "semi;colon", "$(id)", 'back"slash', "*", ""]

ECHO_INPUT = b"first line\n  indented  \n\nunicode: \xc3\xa9\xe2\x82\xac\nlast\n"


def source(key: str, case: str) -> bytes | None:
    found = sorted((CASES / key).glob(case + ".*"))
    return found[0].read_bytes() if found else None


COMPILED = sorted(key for key in RUNTIMES if source(key, "compile_error") is not None)


@pytest.fixture(params=RUNTIMES)
def runtime(request, catalog):
    return available(catalog, request.param)


@pytest.fixture(params=COMPILED)
def compiled_runtime(request, catalog):
    return available(catalog, request.param)


def submit(engine, runtime, case: str, **kwargs):
    code = source(runtime.key, case)
    if code is None:
        pytest.fail(f"tests/runtimes/cases/{runtime.key} has no {case} program")
    return engine.run_sync(Submission(runtime.key, code, **kwargs))


def test_every_catalog_language_has_cases(catalog):
    pseudo = {"executable", "multifile"}  # tested in tests/engine
    assert {rt.key for rt in catalog} - pseudo == set(RUNTIMES)
    for key in RUNTIMES:
        compiled = catalog.get(key).is_compiled
        for case in CASE_NAMES:
            if case == "compile_error":
                assert (source(key, case) is not None) == compiled, f"{key}: compile_error case"
            else:
                assert source(key, case) is not None, f"{key} lacks {case}"


def test_name_carries_the_probed_version(runtime):
    assert runtime.version and runtime.version in runtime.name
    assert runtime.judge0_ids


def test_hello(engine, runtime):
    result = submit(engine, runtime, "hello", tests=(TestCase(expected_output=b"Hello, World!\n"),))
    assert result.verdict is Verdict.accepted, result
    run = result.tests[0].run
    assert run.stdout == b"Hello, World!\n" and run.exit_code == 0
    assert run.time > 0 and run.wall_time > 0 and run.memory > 0


def test_echo_stdin(engine, runtime):
    result = submit(engine, runtime, "echo", tests=(TestCase(ECHO_INPUT, ECHO_INPUT),), exact=True)
    assert result.verdict is Verdict.accepted, result
    assert result.tests[0].run.stdout == ECHO_INPUT


def test_compile_error_shows_the_compiler_message(engine, compiled_runtime):
    runtime = compiled_runtime
    result = submit(engine, runtime, "compile_error")
    assert result.verdict is Verdict.compile_error
    assert result.tests == ()
    assert runtime.source_file.encode() in result.compile_output  # "main.c:1:...: error"
    assert result.compile_run is not None and result.compile_run.exit_code not in (0, None)


def test_runtime_error_keeps_exit_code(engine, runtime):
    result = submit(engine, runtime, "runtime_error")
    assert result.verdict is Verdict.runtime_error
    run = result.tests[0].run
    assert (run.exit_code, run.signal) == (3, None)
    assert b"failing on purpose" in run.stderr


def test_infinite_loop_is_a_time_limit(engine, runtime):
    result = submit(engine, runtime, "loop", run_limits=Limits(cpu_time=1.0, wall_time=10))
    assert result.verdict is Verdict.time_limit, result
    assert 1.0 <= result.tests[0].run.time < 2.0


def test_memory_hog_is_a_memory_limit(engine, runtime):
    limits = Limits(cpu_time=10, wall_time=20, memory=128 * MiB)
    result = submit(engine, runtime, "memory", run_limits=limits)
    assert result.verdict is Verdict.memory_limit, result
    # It grew up to the limit (a managed heap stops a little below it).
    assert 40 * MiB <= result.tests[0].run.memory <= 128 * MiB + 8 * MiB


def test_reads_arguments_literally(engine, runtime):
    expected = ("|".join(TRICKY_ARGV) + "\n").encode()
    result = submit(engine, runtime, "argv", arguments=TRICKY_ARGS,
                    tests=(TestCase(expected_output=expected),), exact=True)
    assert result.verdict is Verdict.accepted, result.tests[0].run
