"""Values of the engine layer: a submission (what to compile and run, against
which tests), and what came of it. Seconds as float, sizes as int bytes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from stockade.sandbox.model import Limits, RunResult, Status


class Verdict(enum.StrEnum):
    """The sandbox statuses plus what judging adds."""

    accepted = "accepted"
    wrong_answer = "wrong_answer"
    compile_error = "compile_error"
    ok = Status.ok.value  # ran fine, no expected output to compare with
    runtime_error = Status.runtime_error.value
    time_limit = Status.time_limit.value
    wall_time_limit = Status.wall_time_limit.value
    memory_limit = Status.memory_limit.value
    output_limit = Status.output_limit.value
    sandbox_error = Status.sandbox_error.value

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TestCase:
    """One stdin, and optionally the output the program must print for it."""

    __test__ = False  # not a pytest class
    stdin: bytes = b""
    expected_output: bytes | None = None
    name: str = ""


# A compiler's limits, unless a submission says otherwise.
COMPILE_LIMITS = Limits(cpu_time=10, wall_time=20, memory=512 * 1024 * 1024, processes=64, file_size=64 * 1024 * 1024)


@dataclass(frozen=True)
class Submission:
    """What to compile and run. `runtime` is a catalog key ("python3", "cpp")
    or a Judge0 language id. `source` is written as the runtime's source file."""

    runtime: str | int
    source: bytes = b""
    additional_files: bytes | None = None  # a zip, extracted into the box
    compiler_options: str = ""
    arguments: str = ""
    compile_limits: Limits = COMPILE_LIMITS
    run_limits: Limits = field(default_factory=Limits)
    tests: tuple[TestCase, ...] = (TestCase(),)
    stop_at_first_failure: bool = True
    exact: bool = False  # byte-exact comparison instead of Judge0's rule
    number_of_runs: int = 1
    redirect_stderr_to_stdout: bool = False


# What a limit verdict says, for compile failures and test messages alike.
LIMIT_TEXT = {
    "time_limit": "time limit exceeded",
    "wall_time_limit": "wall time limit exceeded",
    "memory_limit": "memory limit exceeded",
    "output_limit": "output limit exceeded",
}


@dataclass(frozen=True)
class TestResult:
    """One test's verdict and its run (time, wall time and memory averaged over
    number_of_runs; status and output from the first failing run, else the last)."""

    __test__ = False
    verdict: Verdict
    run: RunResult  # time and memory averaged over number_of_runs
    name: str = ""
    runs: int = 1  # how many times it actually ran

    @property
    def message(self) -> str:
        """Why it failed, in a few words ("" when it passed): the sandbox's own
        (a sandbox_error's reason), else what the verdict means for this run."""
        if self.run.message:
            return self.run.message
        if self.verdict is Verdict.runtime_error:
            if self.run.signal is not None:
                return f"killed by signal {self.run.signal}"
            return f"exited with error status {self.run.exit_code}"
        if self.verdict is Verdict.wrong_answer:
            return "wrong answer"
        return LIMIT_TEXT.get(self.verdict.value, "")


@dataclass(frozen=True)
class SubmissionResult:
    """The overall verdict is the first failing test's (or accepted/ok)."""

    verdict: Verdict
    compile_output: bytes = b""
    compile_run: RunResult | None = None  # None when not compiled, or taken from the cache
    tests: tuple[TestResult, ...] = ()
    message: str = ""
    runtime: str = ""  # the catalog key that ran it
    compile_cached: bool = False  # the product came from the compile cache
    tests_total: int = 0  # tests in the submission (more than len(tests) after a stop)

    @property
    def last_run(self) -> RunResult | None:
        """The run a single-stdin caller wants: the failing test's, else the last."""
        for test in self.tests:
            if test.verdict.value not in ("ok", "accepted"):
                return test.run
        return self.tests[-1].run if self.tests else None
