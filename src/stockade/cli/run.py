"""`stockade run FILE`: run one program in a box and report what it did.

Contract (other tools drive it): without --json the program's stdout and
stderr pass through, then one summary line on stderr; with --json exactly one
JSON object on stdout. Exit 0 whatever the verdict, 2 for a usage error, 1 when
the sandbox itself failed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from stockade.cli import app
from stockade.cli.common import run_cancellable, sandbox_failure, usage_error
from stockade.errors import LimitError, SandboxError
from stockade.sandbox import Limits, Sandbox, Status, parse_size

# Until the runtime catalog exists: the two interpreters of the sandbox issue.
LANGUAGES = {
    "python": (".py", "main.py", ["/usr/bin/python3", "main.py"]),
    "bash": (".sh", "main.sh", ["/bin/bash", "main.sh"]),
}


def _language_for(path: Path, name: str | None) -> tuple[str, list[str]]:
    if name is not None:
        if name.lower() not in LANGUAGES:
            usage_error(f"unknown language {name!r} (known: {', '.join(sorted(LANGUAGES))})")
        _, source, argv = LANGUAGES[name.lower()]
        return source, argv
    for _, (ext, source, argv) in LANGUAGES.items():
        if path.suffix.lower() == ext:
            return source, argv
    usage_error(f"cannot tell the language of {path.name!r} from its extension: use --language")


def _read_stdin(spec: str | None) -> bytes:
    if spec is None:
        return b""
    if spec == "-":
        return sys.stdin.buffer.read()
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
    file: Path = typer.Argument(..., help="The program's source file."),
    language: str = typer.Option(None, "--language", "-l", help="Language name (default: from the extension)."),
    stdin: str = typer.Option(None, "--stdin", help="File to feed on stdin, or - for our own stdin."),
    cpu_time: float = typer.Option(None, "--cpu-time", help="CPU seconds (default 2)."),
    wall_time: float = typer.Option(None, "--wall-time", help="Wall-clock seconds (default 10)."),
    memory: str = typer.Option(None, "--memory", help="Memory: bytes or a number with K, M, G (default 256M)."),
    processes: int = typer.Option(None, "--processes", help="Processes and threads at once (default 64)."),
    output: str = typer.Option(None, "--output", help="Bytes of stdout and of stderr each (default 1M)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of passing output through."),
) -> None:
    """Run FILE in a sandbox and report status, time, wall time and memory."""
    try:
        source = file.read_bytes()
    except OSError as exc:
        usage_error(f"cannot read {str(file)!r}: {exc.strerror}")
    source_name, argv = _language_for(file, language)
    try:
        overrides = {
            "cpu_time": cpu_time,
            "wall_time": wall_time,
            "memory": parse_size(memory) if memory is not None else None,
            "processes": processes,
            "output": parse_size(output) if output is not None else None,
        }
        limits = Limits(**{k: v for k, v in overrides.items() if v is not None})
    except LimitError as exc:
        usage_error(str(exc))
    data = _read_stdin(stdin)
    try:
        sandbox = Sandbox()
        result = run_cancellable(sandbox.run(argv, {source_name: source}, data, limits))
    except SandboxError as exc:
        sandbox_failure(str(exc))
    emit(result, as_json)


def emit(result, as_json: bool) -> None:
    """Print a result per the CLI contract, then exit with its code."""
    if as_json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        sys.stdout.flush()
    else:
        sys.stdout.flush()
        os.write(sys.stdout.fileno(), result.stdout)
        os.write(sys.stderr.fileno(), result.stderr)
        typer.echo(summary_line(result) + (f" ({result.message})" if result.message else ""), err=True)
    if result.status is Status.sandbox_error:
        if not as_json:
            typer.echo(f"stockade: sandbox failure: {result.message}", err=True)
        raise typer.Exit(1)
