"""Judging rules (Judge0's by default, exact on request) and verdicts. Pure."""

from __future__ import annotations

import pytest

from stockade.engine import Verdict, normalize, outputs_match
from stockade.engine.judging import overall_verdict, verdict_of
from stockade.engine.model import TestResult
from stockade.sandbox import RunResult, Status


@pytest.mark.parametrize("actual, expected", [
    (b"3\n", b"3"),
    (b"3   \n\n\n", b"3\n"),
    (b"1 2 \t\n3\r\n", b"1 2\n3\n"),
    (b"a\n\nb\n", b"a\n\nb"),          # blank lines in the middle are kept, and match
    (b"", b"\n\n"),
    (b"x\x00\n", b"x"),                # Ruby's rstrip (Judge0) drops NUL too
])
def test_judge0_rule_ignores_trailing_whitespace_and_newlines(actual, expected):
    assert outputs_match(actual, expected)
    assert outputs_match(expected, actual)


@pytest.mark.parametrize("actual, expected", [
    (b" 3\n", b"3\n"),                 # leading whitespace counts
    (b"a\nb\n", b"a\n\nb\n"),          # a missing blank line in the middle counts
    (b"1 2\n", b"1  2\n"),             # inner spaces count
    (b"3\n", b"4\n"),
    (b"abc", b"ABC"),
])
def test_judge0_rule_still_sees_real_differences(actual, expected):
    assert not outputs_match(actual, expected)


def test_exact_mode_compares_bytes():
    assert outputs_match(b"3\n", b"3\n", exact=True)
    assert not outputs_match(b"3\n", b"3", exact=True)
    assert not outputs_match(b"3 \n", b"3\n", exact=True)


def test_normalize():
    assert normalize(b"x  \r\ny\t\n\n") == b"x\ny"
    assert normalize(b"") == b""


def run(status=Status.ok, stdout=b"", **kw):
    return RunResult(status, exit_code=0 if status is Status.ok else 1, stdout=stdout, **kw)


def test_verdict_of_a_run():
    assert verdict_of(run(stdout=b"3\n"), b"3") is Verdict.accepted
    assert verdict_of(run(stdout=b"4\n"), b"3") is Verdict.wrong_answer
    assert verdict_of(run(stdout=b"4\n"), None) is Verdict.ok
    # A failed run keeps its sandbox status, even with the right output.
    for status in (Status.runtime_error, Status.time_limit, Status.memory_limit, Status.output_limit,
                   Status.wall_time_limit, Status.sandbox_error):
        assert verdict_of(run(status, stdout=b"3\n"), b"3").value == status.value


def test_overall_verdict_is_the_first_failure():
    ok, acc, wa, tle = (TestResult(v, run()) for v in (Verdict.ok, Verdict.accepted, Verdict.wrong_answer,
                                                         Verdict.time_limit))
    assert overall_verdict([acc, wa, tle]) is Verdict.wrong_answer
    assert overall_verdict([acc, tle, wa]) is Verdict.time_limit
    assert overall_verdict([acc, acc]) is Verdict.accepted
    assert overall_verdict([ok, acc]) is Verdict.accepted
    assert overall_verdict([ok]) is Verdict.ok
