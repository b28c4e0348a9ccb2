"""`stockade serve`: the Judge0-compatible HTTP service in the foreground
(API on 127.0.0.1:2358, SQLite in the data directory, two workers per core)."""

from __future__ import annotations

from pathlib import Path

import typer

from stockade.cli import app
from stockade.cli.common import usage_error


@app.command()
def serve(
    host: str = typer.Option(None, "--host", metavar="ADDRESS", help="Address to listen on (default 127.0.0.1, STOCKADE_HOST)."),
    port: int = typer.Option(None, "--port", metavar="PORT", help="Port to listen on (default 2358, STOCKADE_PORT)."),
    config: Path = typer.Option(None, "--config", metavar="FILE", help="A TOML settings file (STOCKADE_CONFIG_FILE)."),
    data_dir: str = typer.Option(None, "--data-dir", metavar="DIR", help="Where the database and server.lock live (default ./.stockade, STOCKADE_DATA_DIR)."),
    workers: int = typer.Option(None, "--workers", metavar="N", help="Submissions run at once (default: two per core, STOCKADE_WORKERS)."),
) -> None:
    """Serve the Judge0 CE 1.13.1 API until interrupted."""
    from pydantic import ValidationError

    from stockade.service.serve import serve as run_service
    from stockade.settings import Settings, settings_error

    overrides = {
        key: value
        for key, value in (("host", host), ("port", port), ("data_dir", data_dir), ("workers", workers))
        if value is not None
    }
    try:
        settings = Settings.load(config, **overrides)
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        usage_error(f"invalid settings: {settings_error(exc, flags=overrides, config_file=config)}")
    run_service(settings)  # (what stops it from starting: one line on stderr, exit status 1)
