"""Judge0 <-> engine: a stored Judge0 submission becomes an engine Submission
(KB -> bytes, cpu_time_limit + cpu_extra_time -> the CPU limit the box
enforces), and the engine's SubmissionResult becomes Judge0's result columns
(status id, message, time as seconds, memory in KB)."""

from __future__ import annotations

import signal as signals
from typing import Any

from stockade.engine.model import Submission, SubmissionResult, TestCase, Verdict
from stockade.errors import StockadeError
from stockade.sandbox.model import MAX_OUTPUT, KiB, Limits, RunResult, Status
from stockade.service.judge0.languages import Languages
from stockade.service.store import Row, utcnow
from stockade.settings import Settings

ACCEPTED, WRONG_ANSWER, TIME_LIMIT, COMPILATION_ERROR = 3, 4, 5, 6
SIGSEGV_, SIGXFSZ_, SIGFPE_, SIGABRT_, NZEC, OTHER = 7, 8, 9, 10, 11, 12
INTERNAL_ERROR, EXEC_FORMAT_ERROR = 13, 14

_BY_SIGNAL = {
    signals.SIGSEGV: SIGSEGV_,
    signals.SIGXFSZ: SIGXFSZ_,
    signals.SIGFPE: SIGFPE_,
    signals.SIGABRT: SIGABRT_,
}


def limits_of(row: Row, settings: Settings) -> Limits:
    """Judge0's limits (seconds, KB) as the box's Limits (seconds, bytes).
    In isolate, Judge0's sandbox, 0 means "no limit" for CPU time, stack and file
    size; here it means the server's maximum, since a box always has limits."""
    cpu = row["cpu_time_limit"] + row["cpu_extra_time"]
    if row["cpu_time_limit"] <= 0:
        cpu = settings.max_cpu_time_limit + settings.max_cpu_extra_time
    memory = max(row["memory_limit"] * KiB, 4 * 1024 * KiB)  # the box's floor is 4 MiB
    stack = (row["stack_limit"] if row["stack_limit"] > 0 else settings.max_stack_limit) * KiB
    file_size = (row["max_file_size"] or settings.max_max_file_size) * KiB
    return Limits(
        cpu_time=cpu,
        wall_time=row["wall_time_limit"],
        memory=memory,
        processes=row["max_processes_and_or_threads"],
        stack=min(stack, memory),
        file_size=file_size,
        # Judge0 writes stdout and stderr to files under its file size limit
        # (held in memory here: at most the box's maximum).
        output=min(file_size, MAX_OUTPUT),
        # Judge0's per-process-and-thread switches: each process gets the limit.
        per_process_time=bool(row["enable_per_process_and_thread_time_limit"]),
        per_process_memory=bool(row["enable_per_process_and_thread_memory_limit"]),
    )


def default_limits(settings: Settings) -> Limits:
    """The box's limits for a submission that sets none (Judge0's defaults)."""
    s = settings
    return limits_of({
        "cpu_time_limit": s.cpu_time_limit, "cpu_extra_time": s.cpu_extra_time,
        "wall_time_limit": s.wall_time_limit, "memory_limit": s.memory_limit, "stack_limit": s.stack_limit,
        "max_processes_and_or_threads": s.max_processes_and_or_threads, "max_file_size": s.max_file_size,
        "enable_per_process_and_thread_time_limit": s.enable_per_process_and_thread_time_limit,
        "enable_per_process_and_thread_memory_limit": s.enable_per_process_and_thread_memory_limit,
    }, s)


def to_engine(row: Row, languages: Languages, settings: Settings) -> Submission:
    """The engine's view of a stored Judge0 submission."""
    runtime = languages.get(row["language_id"])
    if runtime is None:
        raise LookupError(f"language with id {row['language_id']} doesn't exist")
    return Submission(
        runtime=runtime.key,
        source=row["source_code"] or b"",
        additional_files=row["additional_files"],
        compiler_options=row["compiler_options"] or "",
        arguments=row["command_line_arguments"] or "",
        run_limits=limits_of(row, settings),
        tests=(TestCase(stdin=row["stdin"] or b"", expected_output=row["expected_output"]),),
        number_of_runs=row["number_of_runs"],
        redirect_stderr_to_stdout=row["redirect_stderr_to_stdout"],
    )


def _compiler_said_why(result: SubmissionResult) -> bool:
    """A compile that failed by the compiler's own exit status: its output is the reason."""
    run = result.compile_run
    return run is not None and run.status is Status.runtime_error and run.signal is None


def _status_of_run(run: RunResult) -> tuple[int, str]:
    """Status id and Judge0-style message of a run that failed at run time."""
    if run.signal is not None:
        return _BY_SIGNAL.get(run.signal, OTHER), f"Caught fatal signal {run.signal}"  # isolate's words
    if run.exit_code:
        return NZEC, f"Exited with error status {run.exit_code}"
    return OTHER, run.message or "Runtime error"


# Every result column, for a submission that never ran (compile or engine error).
_NO_RUN: dict[str, Any] = dict.fromkeys(
    ("stdout", "stderr", "compile_output", "message", "time", "wall_time", "memory", "exit_code", "exit_signal")
)


def _none_if_empty(data: bytes | None) -> bytes | None:
    return data if data else None


def result_columns(row: Row, result: SubmissionResult) -> Row:
    """The columns to store for an engine result (Judge0's verdict rules)."""
    values: dict[str, Any] = {
        **_NO_RUN,
        "compile_output": _none_if_empty(result.compile_output),
        "finished_at": utcnow(),
        "callback_pending": bool(row.get("callback_url")),
    }
    verdict = result.verdict
    run = result.tests[0].run if result.tests else None
    if run is not None:
        values.update(
            stdout=_none_if_empty(run.stdout),
            stderr=_none_if_empty(run.stderr),
            time=round(run.time, 3),
            wall_time=round(run.wall_time, 3),
            memory=run.memory // KiB,
            # Judge0 stores isolate's exit code "or 0": a run killed by a signal
            # (a runtime error, a time limit) has exit_code 0 beside its exit_signal.
            exit_code=run.exit_code if run.exit_code is not None else 0,
            exit_signal=run.signal,
        )
    message = result.message or (run.message if run else "")

    if verdict is Verdict.compile_error:
        # Judge0 leaves message null: compile_output says it all (and says why
        # when the compiler itself printed nothing, e.g. a compile time limit).
        if not values["compile_output"] and message:
            values["compile_output"] = message.encode("utf-8")
        elif message and not _compiler_said_why(result):
            # A compiler that printed warnings and was then stopped by a limit
            # (or left no program): its words alone would hide why.
            values["compile_output"] = (values["compile_output"].rstrip(b"\n") + b"\n"
                                        + message.encode("utf-8") + b"\n")
        compile_run = result.compile_run
        if compile_run is not None and compile_run.status in (Status.time_limit, Status.wall_time_limit):
            # Judge0's words for a compiler out of time, in place of what it printed.
            values["compile_output"] = b"Compilation time limit exceeded."
        status, message = COMPILATION_ERROR, None
    elif verdict is Verdict.sandbox_error:
        text = (message or "").lower()
        status = EXEC_FORMAT_ERROR if "exec format" in text else INTERNAL_ERROR
        message = message or "Internal Error"
    elif verdict in (Verdict.time_limit, Verdict.wall_time_limit):
        status = TIME_LIMIT
        message = "Time limit exceeded" if verdict is Verdict.time_limit else "Time limit exceeded (wall clock)"
    elif (run is not None and row["cpu_time_limit"] > 0 and run.time > row["cpu_time_limit"]
          and not row["enable_per_process_and_thread_time_limit"]):
        # The box allows cpu_time_limit + cpu_extra_time; a run that finished in the
        # extra time is still over the limit the client asked for (isolate's rule).
        # With per-process limits `time` is the sum of all processes': no verdict.
        status, message = TIME_LIMIT, "Time limit exceeded"
    elif verdict is Verdict.memory_limit:
        # Judge0 has no memory verdict: an OOM kill is a runtime error. Say why.
        status = NZEC if run is not None and run.exit_code else (
            _BY_SIGNAL.get(run.signal, OTHER) if run is not None and run.signal else OTHER)
        message = "Memory limit exceeded"
    elif verdict is Verdict.output_limit:
        # Judge0's output is a file under max_file_size: too much is SIGXFSZ, and
        # its exit_signal says so (here the box was killed, or the program had
        # already ended: exit_signal 9 or null beside status 8).
        status, message = SIGXFSZ_, "Output limit exceeded"
        values.update(exit_code=0, exit_signal=signals.SIGXFSZ.value)
    elif verdict is Verdict.runtime_error:
        status, message = _status_of_run(run) if run is not None else (OTHER, message)
    elif verdict is Verdict.wrong_answer:
        # Judge0's message is isolate's, and a run that ended normally has none.
        status, message = WRONG_ANSWER, None
    else:  # ok, accepted
        status, message = ACCEPTED, None
    values["status_id"] = status
    values["message"] = message.encode("utf-8") if message else None
    return values


EXECUTABLE = 44
_EXECUTABLE_MAGIC = (b"\x7fELF", b"#!")


def exec_format_error(row: Row) -> Row | None:
    """Judge0's status 14 for an "Executable" (44) that the kernel cannot exec.
    Checked before running: inside the box, a failed exec would fall back to
    running the file as a shell script, which is not what Judge0 does."""
    if row["language_id"] != EXECUTABLE or (row["source_code"] or b"").startswith(_EXECUTABLE_MAGIC):
        return None
    return {
        **_NO_RUN,
        "status_id": EXEC_FORMAT_ERROR,
        "message": b"Exec format error",
        "finished_at": utcnow(),
        "callback_pending": bool(row.get("callback_url")),
    }


def error_columns(row: Row, exc: BaseException) -> Row:
    """Internal Error, when the engine itself failed."""
    return {
        **_NO_RUN,
        "status_id": INTERNAL_ERROR,
        # Our own errors explain themselves; anything else names its type.
        "message": (str(exc) if isinstance(exc, StockadeError) else f"{type(exc).__name__}: {exc}").encode()[:4096],
        "finished_at": utcnow(),
        "callback_pending": bool(row.get("callback_url")),
    }
