"""Run the service in the foreground with uvicorn (used by `stockade serve`
and `python -m stockade.service`)."""

from __future__ import annotations

import logging

from stockade.settings import Settings


def serve(settings: Settings) -> None:
    """Start uvicorn on settings.host:settings.port until interrupted."""
    import uvicorn

    from stockade.service.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations: only news worth reading
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # one line per run is logged by the service itself
        timeout_graceful_shutdown=5,
    )
