"""`stockade run FILE`: run one program in a box and report what it did.

Contract (other tools drive it): without --json the compiler's messages (if
any) go to stderr, then the program's stdout and stderr pass through, then one
summary line on stderr; with --json exactly one JSON object on stdout. Exit 0
whatever the verdict, 2 for a usage error, 1 when the sandbox itself failed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import typer

from stockade.cli import app
from stockade.cli.common import (
    limits_from_options,
    read_all,
    read_source,
    run_cancellable,
    sandbox_failure,
    usage_error,
    write_all,
)
from stockade.errors import InvalidSubmission, SandboxError, UnknownRuntime
from stockade.sandbox import RunResult, Status


def resolve_runtime(catalog, path: Path, name: str | None):
    """The runtime from --language (key, alias or Judge0 id), else from FILE's
    extension; a usage error (exit 2) when unknown or not installed."""
    try:
        runtime = catalog.get(name) if name is not None else catalog.for_file(path.name)
    except UnknownRuntime as exc:
        usage_error(str(exc) if name is not None else
                    f"cannot tell the language of {path.name!r} from its extension: use --language")
    if not runtime.available:
        usage_error(f"{runtime.name} is not available here: {runtime.reason}")
    return runtime


def make_engine(sandbox, catalog):
    """The CLI's engine, with the compile cache of the settings
    (STOCKADE_CACHE_DIR, STOCKADE_CACHE_SIZE; default /var/cache/stockade/compile as root)."""
    from stockade.engine import Engine, default_cache_dir
    from stockade.settings import Settings, settings_error

    try:
        settings = Settings.load()
    except (ValueError, FileNotFoundError) as exc:  # (pydantic's ValidationError is a ValueError)
        usage_error(f"invalid settings: {settings_error(exc)}")
    try:
        return Engine(sandbox, catalog, cache_dir=settings.cache_dir or default_cache_dir(),
                      cache_size=settings.cache_size)
    except SandboxError as exc:  # the cache directory: a setting to change, not a failed box
        usage_error(f"{exc} (set STOCKADE_CACHE_DIR)")


def _read_stdin(spec: str | None) -> bytes:
    if spec is None:
        return b""
    if spec == "":
        usage_error("--stdin needs a file name, or - for our own stdin")
    if spec == "-":
        try:
            return read_all(0)
        except OSError as exc:  # (no stdin at all: closed by the caller)
            usage_error(f"cannot read stdin: {exc.strerror}")
    try:
        return Path(spec).read_bytes()
    except OSError as exc:
        usage_error(f"cannot read stdin file {spec!r}: {exc.strerror}")


def summary_line(result) -> str:
    memory_mib = result.memory / (1024 * 1024)
    return (f"[stockade] status={result.status} time={result.time:.3f}s "
            f"wall={result.wall_time:.3f}s memory={memory_mib:.1f}MiB")


@app.command("run")
def run_command(
    file: Path = typer.Argument(..., metavar="FILE", help="The program's source file."),
    language: str = typer.Option(None, "--language", "-l", metavar="NAME", help="Runtime key, alias or Judge0 id (default: from the extension)."),
    stdin: str = typer.Option(None, "--stdin", metavar="FILE", help="File to feed on stdin, or - for our own stdin."),
    cpu_time: float = typer.Option(None, "--cpu-time", metavar="S", help="CPU seconds (default 2)."),
    wall_time: float = typer.Option(None, "--wall-time", metavar="S", help="Wall-clock seconds (default 10)."),
    memory: str = typer.Option(None, "--memory", metavar="SIZE", help="Memory: bytes or a number with K, M, G (default 256M)."),
    processes: int = typer.Option(None, "--processes", metavar="N", help="Processes and threads at once (default 64)."),
    output: str = typer.Option(None, "--output", metavar="SIZE", help="Bytes of stdout and of stderr each (default 1M, at most 1G)."),
    compiler_options: str = typer.Option(None, "--compiler-options", metavar="OPTIONS", help="Extra compiler options, split into words like a shell would (never run by one)."),
    args: str = typer.Option(None, "--args", metavar="ARGS", help="Program arguments, split into words like a shell would (never run by one)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of passing output through."),
) -> None:
    """Run FILE in a sandbox and report what it did.

    FILE is compiled first if its language compiles; its content becomes the
    runtime's source file whatever FILE is called. Without --json, the
    compiler's messages and then the program's stdout and stderr pass through,
    followed by one summary line on stderr (status, time, wall time, memory).
    A compile error has status compile_error, the compiler's exit code, time
    and memory, and its messages in compile_output.

    Exit status: 0 whatever the program did, 2 for a usage error, 1 when the
    sandbox itself failed."""
    from stockade.engine import Submission, TestCase
    from stockade.runtimes import Catalog
    from stockade.sandbox import Sandbox

    source = read_source(file)
    catalog = Catalog.load()
    runtime = resolve_runtime(catalog, file, language)
    limits = limits_from_options(cpu_time=cpu_time, wall_time=wall_time, memory=memory,
                                 processes=processes, output=output)
    data = _read_stdin(stdin)
    submission = Submission(runtime.key, source, compiler_options=compiler_options or "",
                            arguments=args or "", run_limits=limits, tests=(TestCase(stdin=data),))
    try:
        engine = make_engine(Sandbox(), catalog)
        outcome = run_cancellable(engine.run(submission))
    except (InvalidSubmission, UnknownRuntime) as exc:
        usage_error(str(exc))
    except SandboxError as exc:
        sandbox_failure(str(exc))
    if outcome.verdict.value == "compile_error":
        compile_run = outcome.compile_run or RunResult(Status.runtime_error)
        result = RunResult(Status.runtime_error, exit_code=compile_run.exit_code, signal=compile_run.signal,
                           time=compile_run.time, wall_time=compile_run.wall_time,
                           memory=compile_run.memory, message=outcome.message)
        emit(result, as_json, compile_output=outcome.compile_output, status="compile_error")
        return
    if outcome.verdict.value == "sandbox_error" and outcome.last_run is None:
        # The compile box failed: its run, or only why when Sandbox.run raised (no run at all).
        # (The compiler's text is compile_output: stdout and stderr are the program's, which never ran.)
        failed = outcome.compile_run or RunResult(Status.sandbox_error, message=outcome.message)
        emit(replace(failed, stdout=b"", stderr=b""), as_json, compile_output=outcome.compile_output)
        return
    emit(outcome.last_run, as_json, compile_output=outcome.compile_output)


def emit(result, as_json: bool, *, compile_output: bytes = b"", status: str | None = None) -> None:
    """Print a result per the CLI contract, then exit with its code. `status`
    overrides the run's (compile_error); compile_output is the compiler's text."""
    if as_json:
        obj = result.to_json()
        if status is not None:
            obj["status"] = status
        obj["compile_output"] = compile_output.decode("utf-8", "replace")
        write_all(1, (json.dumps(obj) + "\n").encode())
    else:
        # The compiler's messages first, as it wrote them: a compile error's, or a
        # successful compile's warnings (a compile error has no program output).
        write_all(2, compile_output)
        if status is None:
            write_all(1, result.stdout)
            write_all(2, result.stderr)
        line = summary_line(result)
        if status is not None:
            line = line.replace(f"status={result.status}", f"status={status}")
        typer.echo(line + (f" ({result.message})" if result.message else ""), err=True)
    if result.status is Status.sandbox_error:
        if not as_json:
            typer.echo(f"stockade: sandbox failure: {result.message}", err=True)
        raise typer.Exit(1)
