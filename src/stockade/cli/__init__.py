"""The `stockade` command: run, doctor (and the commands other layers add).

Errors become exit codes here and only here: 2 for a usage error (with a
one-line message), 1 when the sandbox itself failed, 0 otherwise."""

from __future__ import annotations

import contextlib
import os
import sys

import typer

from stockade.cli.common import OutputError

try:  # typer vendors click since 0.2x: its exceptions are its own
    from typer._click import exceptions as cli_errors
except ImportError:
    from click import exceptions as cli_errors

app = typer.Typer(
    name="stockade",
    help="Run code nobody trusts, fast, and say exactly what it did.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Each module registers its command on `app`.
from stockade.cli import doctor, judge, languages, run, serve  # noqa: E402,F401


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except cli_errors.NoArgsIsHelpError as exc:  # `stockade` alone: the help
        typer.echo(exc.ctx.get_help(), err=True)
        sys.exit(2)
    except cli_errors.UsageError as exc:
        # One line, as the contract says (click's own is a usage block and a panel).
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        typer.echo(f"stockade: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except typer.Abort:  # Ctrl-C at a prompt
        sys.exit(130)
    except (OutputError, BrokenPipeError) as exc:
        _output_failed(str(exc) if isinstance(exc, OutputError) else "Broken pipe")
    sys.exit(code if isinstance(code, int) else 0)


def _output_failed(reason: str) -> None:
    """Our stdout or stderr could not take the output (closed, a full disk, a
    reader that left): say so on stderr if it still takes anything, exit 1."""
    with contextlib.suppress(OSError):
        os.write(2, f"stockade: cannot write the output: {reason}\n".encode())
    # Nothing left for Python's own flush at exit to fail on.
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
    sys.exit(1)
