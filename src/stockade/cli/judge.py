"""`stockade judge FILE --tests DIR`: compile once, run every NAME.in of DIR
and compare with NAME.out, print a table; exit 0 only if all are accepted."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from stockade.cli import app
from stockade.cli.common import (
    limits_from_options,
    print_rich,
    read_source,
    run_cancellable,
    sandbox_failure,
    usage_error,
    write_all,
)
from stockade.cli.run import make_engine, resolve_runtime
from stockade.errors import InvalidSubmission, SandboxError, UnknownRuntime


def load_tests(directory: Path):
    """NAME.in / NAME.out pairs of DIR, in natural name order (2 before 10)."""
    from stockade.engine import TestCase

    if not directory.is_dir():
        usage_error(f"{str(directory)!r} is not a directory")
    # (A test's name is what comes before .in: Path.stem would keep ".in" of a file named just that.)
    inputs = {p.name.removesuffix(".in"): p for p in directory.glob("*.in")}
    nameless = [f for f in (".in", ".out") if (directory / f).exists() or (directory / f).is_symlink()]
    if nameless:
        usage_error(f"{' and '.join(nameless)} in {str(directory)!r}: a test file needs a name "
                    "before its extension (NAME.in, NAME.out)")
    if not inputs:
        usage_error(f"no NAME.in files in {str(directory)!r}")
    # Nothing skipped without a word: a test that cannot be run as written is an error.
    unreadable = sorted(p.name for p in (*inputs.values(), *directory.glob("*.out")) if not p.is_file())
    if unreadable:
        usage_error(f"not a regular file (a directory, or a link to nothing?): {', '.join(unreadable)}")
    missing = sorted(name for name in inputs if not (directory / f"{name}.out").is_file())
    if missing:
        usage_error(f"no expected output for {', '.join(m + '.in' for m in missing)} (need NAME.out)")
    orphans = sorted(p.name for p in directory.glob("*.out") if p.name.removesuffix(".out") not in inputs)
    if orphans:
        usage_error(f"no input for {', '.join(orphans)} (need NAME.in)")

    def natural(name: str):
        import re
        # The split's odd items are the runs of digits (isdigit would also take "²", which int() refuses).
        return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name))]

    try:
        return tuple(
            TestCase(stdin=inputs[name].read_bytes(), expected_output=(directory / f"{name}.out").read_bytes(),
                     name=name)
            for name in sorted(inputs, key=natural)
        )
    except OSError as exc:
        usage_error(f"cannot read {exc.filename}: {exc.strerror}")


@app.command("judge")
def judge_command(
    file: Path = typer.Argument(..., metavar="FILE", help="The program's source file."),
    tests: Path = typer.Option(..., "--tests", "-t", metavar="DIR", help="Directory of NAME.in / NAME.out pairs."),
    language: str = typer.Option(None, "--language", "-l", metavar="NAME", help="Runtime key, alias or Judge0 id (default: from the extension)."),
    cpu_time: float = typer.Option(None, "--cpu-time", metavar="S", help="CPU seconds per test (default 2)."),
    wall_time: float = typer.Option(None, "--wall-time", metavar="S", help="Wall-clock seconds per test (default 10)."),
    memory: str = typer.Option(None, "--memory", metavar="SIZE", help="Memory per test: bytes or a number with K, M, G (default 256M)."),
    processes: int = typer.Option(None, "--processes", metavar="N", help="Processes and threads at once, per test (default 64)."),
    output: str = typer.Option(None, "--output", metavar="SIZE", help="Bytes of stdout and of stderr each, per test (default 1M, at most 1G)."),
    compiler_options: str = typer.Option(None, "--compiler-options", metavar="OPTIONS", help="Extra compiler options (split like shell words)."),
    args: str = typer.Option(None, "--args", metavar="ARGS", help="Program arguments (split like shell words)."),
    exact: bool = typer.Option(False, "--exact", help="Compare byte for byte instead of Judge0's rule."),
    stop: bool = typer.Option(False, "--stop", help="Stop at the first failing test."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
) -> None:
    """Compile FILE once, run it on every test of --tests DIR and judge each.

    Exit status: 0 if every test is accepted, 3 if any is not (or it does not
    compile), 2 for a usage error, 1 when the sandbox itself failed."""
    from stockade.engine import Submission, standing_mounts
    from stockade.runtimes import Catalog
    from stockade.sandbox import Sandbox

    source = read_source(file)
    catalog = Catalog.load()
    runtime = resolve_runtime(catalog, file, language)
    cases = load_tests(tests)
    limits = limits_from_options(cpu_time=cpu_time, wall_time=wall_time, memory=memory,
                                 processes=processes, output=output)
    submission = Submission(runtime.key, source, compiler_options=compiler_options or "",
                            arguments=args or "", run_limits=limits, tests=cases,
                            stop_at_first_failure=stop, exact=exact)
    try:
        # Many tests, one event loop: warm boxes make each test cost only its own
        # program (a box is built for the next one while this one runs).
        sandbox = Sandbox(warm=2 if len(cases) > 1 else 0, warm_mounts=standing_mounts(catalog))
        try:
            engine = make_engine(sandbox, catalog)
            result = _run_with_progress(engine, submission, quiet=as_json or not sys.stderr.isatty())
        finally:
            sandbox.close()  # the warm boxes left over
    except (InvalidSubmission, UnknownRuntime) as exc:
        usage_error(str(exc))
    except SandboxError as exc:
        sandbox_failure(str(exc))
    if as_json:
        write_all(1, (json.dumps(_as_json(result, cases)) + "\n").encode())
    else:
        _print_table(result, cases, runtime.name)
    if result.verdict.value == "sandbox_error":
        raise typer.Exit(1)
    all_accepted = len(result.tests) == len(cases) and all(t.verdict.value == "accepted" for t in result.tests)
    raise typer.Exit(0 if all_accepted else 3)


def _run_with_progress(engine, submission, quiet: bool):
    if quiet:
        return run_cancellable(engine.run(submission))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("judging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, console=_stderr_console()) as bar:
        task = bar.add_task("tests", total=len(submission.tests))

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return run_cancellable(engine.run(submission, progress=progress))


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _as_json(result, cases) -> dict:
    ran = {t.name: t for t in result.tests}
    return {
        "verdict": result.verdict.value,
        "message": result.message,
        "compile_output": result.compile_output.decode("utf-8", "replace"),
        "compile_cached": result.compile_cached,
        "tests": [
            # (A file name's undecodable bytes replaced, as in stdout: a lone surrogate is no UTF-8.)
            {"name": os.fsencode(case.name).decode("utf-8", "replace"),
             "verdict": ran[case.name].verdict.value if case.name in ran else "skipped",
             **({"time": round(ran[case.name].run.time, 6), "wall_time": round(ran[case.name].run.wall_time, 6),
                 "memory": ran[case.name].run.memory, "exit_code": ran[case.name].run.exit_code,
                 "message": ran[case.name].message}
                if case.name in ran else {})}
            for case in cases
        ],
    }


def _print_table(result, cases, name: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    if result.compile_output:
        write_all(2, result.compile_output)  # the compiler's own lines, as it wrote them
    if result.verdict.value == "compile_error":
        print_rich(f"{escape(name)}: [red]compile_error[/red] {escape(result.message)}")
        return
    colours = {"accepted": "green", "ok": "green", "wrong_answer": "red"}
    table = Table(title=f"{escape(name)}: {result.verdict.value}", box=None, pad_edge=False)
    for column, justify in (("test", "left"), ("verdict", "left"), ("time", "right"),
                            ("wall", "right"), ("memory", "right")):
        table.add_column(column, justify=justify)
    ran = {t.name: t for t in result.tests}
    for case in cases:
        test = ran.get(case.name)
        if test is None:
            table.add_row(escape(case.name), "[dim]skipped[/dim]", "", "", "")
            continue
        colour = colours.get(test.verdict.value, "yellow")
        table.add_row(escape(case.name), f"[{colour}]{test.verdict.value}[/{colour}]", f"{test.run.time:.3f}s",
                      f"{test.run.wall_time:.3f}s", f"{test.run.memory / (1024 * 1024):.1f}MiB")
    passed = sum(1 for t in result.tests if t.verdict.value == "accepted")
    print_rich(table, f"{passed}/{len(cases)} accepted")
    # Why the box failed, on stderr as `stockade run` says it: the table has no room for it.
    if result.verdict.value == "sandbox_error" and not result.tests:
        typer.echo(f"stockade: sandbox failure while compiling: {result.message}", err=True)
    for test in result.tests:
        if test.verdict.value == "sandbox_error":
            typer.echo(f"stockade: sandbox failure in test {test.name}: {test.message}", err=True)
