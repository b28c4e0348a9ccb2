"""Judging: compare a program's output with the expected one, and turn a run's
sandbox status into a verdict. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from stockade.engine.model import TestResult, Verdict
from stockade.sandbox.model import RunResult, Status

# What Ruby's String#rstrip removes (Judge0 is Ruby): NUL, tab, VT, FF, CR, space.
_WHITESPACE = b" \t\r\x0b\x0c\x00"


def normalize(output: bytes) -> bytes:
    """Judge0's rule: trailing whitespace of every line and trailing newlines
    go; leading whitespace and blank lines in the middle stay.

    >>> normalize(b"1 2  \\n3\\t\\r\\n\\n\\n")
    b'1 2\\n3'
    """
    lines = output.split(b"\n")
    text = b"\n".join(line.rstrip(_WHITESPACE) for line in lines)
    return text.rstrip(b"\n")


def outputs_match(actual: bytes, expected: bytes, *, exact: bool = False) -> bool:
    """Whether the program's output is right: byte-exact, or by Judge0's rule."""
    if exact:
        return actual == expected
    return normalize(actual) == normalize(expected)


def verdict_of(run: RunResult, expected: bytes | None, *, exact: bool = False) -> Verdict:
    """A test's verdict: the sandbox status when the run failed; otherwise
    ok without expected output, accepted or wrong_answer with it."""
    if run.status is not Status.ok:
        return Verdict(run.status.value)
    if expected is None:
        return Verdict.ok
    return Verdict.accepted if outputs_match(run.stdout, expected, exact=exact) else Verdict.wrong_answer


PASSING = frozenset({Verdict.ok, Verdict.accepted})


def overall_verdict(tests: Sequence[TestResult]) -> Verdict:
    """The first failing test's verdict; else accepted if any test was judged
    against an expected output, else ok."""
    for test in tests:
        if test.verdict not in PASSING:
            return test.verdict
    if any(test.verdict is Verdict.accepted for test in tests):
        return Verdict.accepted
    return Verdict.ok
