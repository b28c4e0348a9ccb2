"""`stockade languages`: every runtime of the catalog, its Judge0 id, its name
with the installed version, and whether it is available (and why not)."""

from __future__ import annotations

import json

import typer

from stockade.cli import app
from stockade.cli.common import print_rich, write_all


@app.command("languages")
def languages_command(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of objects."),
    available_only: bool = typer.Option(False, "--available", help="Only the runtimes installed here."),
) -> None:
    """List the runtimes: id, name with version, available or why not."""
    from stockade.runtimes import Catalog

    runtimes = [rt for rt in Catalog.load() if rt.available or not available_only]
    if as_json:
        write_all(1, (json.dumps([rt.describe() for rt in runtimes], indent=2) + "\n").encode())
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("id", "key", "name", "extensions", "status"):
        table.add_column(column, no_wrap=column in ("id", "key"), overflow="fold",
                         min_width=16 if column == "status" else None)
    for rt in runtimes:
        ids = ",".join(str(i) for i in rt.judge0_ids)
        status = "[green]available[/green]" if rt.available else f"[red]unavailable[/red]: {rt.reason}"
        table.add_row(ids, rt.key, rt.name, " ".join(rt.extensions), status)
    print_rich(table)
