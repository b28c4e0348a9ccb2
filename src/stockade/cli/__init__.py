"""The `stockade` command: run, doctor (and the commands other layers add).

Errors become exit codes here and only here: 2 for a usage error (with a
one-line message), 1 when the sandbox itself failed, 0 otherwise."""

from __future__ import annotations

import typer

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
    app()
