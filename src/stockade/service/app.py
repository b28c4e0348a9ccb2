"""The HTTP service: `create_app(settings)` wires store, dispatcher, engine and
the Judge0 routes into one FastAPI app; uvicorn serves it (see cli/serve.py).

    >>> from stockade.settings import Settings
    >>> app = create_app(Settings.load(data_dir="/tmp/stockade"))
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from stockade.engine.model import Verdict
from stockade.runtimes import Catalog
from stockade.service.callbacks import Callbacks
from stockade.service.dispatch import Dispatcher
from stockade.service.gate import Gate, cors_origins
from stockade.service.guard import ErrorGuard
from stockade.service.judge0 import adapter
from stockade.service.judge0.format import DEFAULT_FIELDS, json_chunks, serialize
from stockade.service.judge0.info import JUDGE0_VERSION
from stockade.service.judge0.languages import Languages
from stockade.service.judge0.request import SubmissionParser
from stockade.service.judge0.routes import build_router
from stockade.service.store import Row, Store, Unavailable, first_line
from stockade.settings import Settings

log = logging.getLogger("stockade.service")


@dataclass
class Service:
    """Everything one running service owns."""

    settings: Settings
    store: Store
    dispatcher: Dispatcher
    languages: Languages
    parser: SubmissionParser
    callbacks: Callbacks
    engine: Any


class _App(FastAPI):
    """FastAPI, with ErrorGuard around everything (ServerErrorMiddleware included)."""

    def build_middleware_stack(self) -> ASGIApp:
        return ErrorGuard(super().build_middleware_stack())


def _default_engine(settings: Settings, catalog: Catalog) -> Any:
    from stockade.engine import ArchiveLimits, Engine, standing_mounts
    from stockade.sandbox import Sandbox

    # Every runtime's own read-only paths are bound in each warm box, so a run in
    # any language can take one.
    sandbox = Sandbox(slots=settings.box_slots, warm=settings.warm_box_count,
                      warm_mounts=standing_mounts(catalog))
    return Engine(
        sandbox,
        catalog,
        cache_dir=settings.cache_dir,
        cache_size=settings.cache_size,
        # Judge0's max_extract_size (KB) bounds what additional_files may unpack to.
        archive_limits=ArchiveLimits(max_unpacked=settings.max_extract_size * 1024),
    )


def create_app(settings: Settings, *, engine: Any = None, catalog: Catalog | None = None,
               migrated: bool = False) -> FastAPI:
    """The FastAPI app for these settings. `engine` and `catalog` default to the
    real ones (a sandbox with settings.box_slots boxes, settings.warm_box_count of
    them built ahead of time, and the installed runtimes). Its startup brings
    the database's schema up to date, unless the caller has (`migrated`: serve.py
    does, before anything starts, to report a database it cannot use in one line)."""
    if catalog is None:
        catalog = Catalog.load()
    sandbox = None  # ours to warm up and close, when the engine is ours
    if engine is None:
        engine = _default_engine(settings, catalog)
        sandbox = engine.sandbox
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    languages = Languages(catalog, adapter.default_limits(settings))
    store = Store(settings.sqlalchemy_url)

    async def render_callback(row: Row) -> bytes:
        # Judge0 PUTs the default fields, base64-encoded (so any bytes go through);
        # written a chunk at a time, since outputs of a few MB would hold the loop.
        content = serialize(row, DEFAULT_FIELDS, encoded=True, language_name=languages.name)
        return b"".join([chunk async for chunk in json_chunks(content)])

    callbacks = Callbacks(
        store,
        render_callback,
        tries=settings.callbacks_max_tries,
        timeout=settings.callbacks_timeout,
        allowed=settings.callback_networks,
    )

    async def execute(row: Row) -> Row:
        refused = adapter.exec_format_error(row)
        if refused is not None:
            return refused
        started = time.perf_counter()
        submission = adapter.to_engine(row, languages, settings)
        result = await engine.run(submission)
        values = adapter.result_columns(row, result)
        # A sandbox failure is the operator's business (the client sees only
        # Internal Error): a warning, with the sandbox's reason. It was an info
        # line like any run's, verdict=sandbox_error and no reason.
        failed = result.verdict is Verdict.sandbox_error
        log.log(
            logging.WARNING if failed else logging.INFO,
            "run token=%s language=%s verdict=%s status=%s time=%s wall=%s memory_kb=%s engine_ms=%.1f%s",
            row["token"], row["language_id"], result.verdict, values["status_id"],
            values.get("time"), values.get("wall_time"), values.get("memory"),
            (time.perf_counter() - started) * 1000,
            f" sandbox failure: {(values['message'] or b'').decode('utf-8', 'replace')!r}" if failed else "",
        )
        return values

    dispatcher = Dispatcher(
        store,
        execute,
        adapter.error_columns,
        workers=settings.workers,
        max_queue_size=settings.max_queue_size,
        on_finished=callbacks.schedule,
    )
    service = Service(
        settings=settings,
        store=store,
        dispatcher=dispatcher,
        languages=languages,
        parser=SubmissionParser(settings, languages),
        callbacks=callbacks,
        engine=engine,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not migrated:
            await store.migrate()
        warm = await sandbox.prewarm() if sandbox is not None else 0
        recovered = await dispatcher.start()
        await callbacks.resume()
        log.info("stockade service ready on http://%s:%d: %d workers, %d warm boxes, %d recovered submissions",
                 settings.host, settings.port, settings.workers, warm, recovered)
        try:
            yield
        finally:
            await dispatcher.stop()
            await callbacks.close()
            if sandbox is not None:
                await sandbox.settle()  # the boxes of the last runs, on their way out
                sandbox.close()  # the warm boxes nobody took
            closer = getattr(engine, "aclose", None) or getattr(engine, "close", None)
            if closer is not None:
                result = closer()
                if hasattr(result, "__await__"):
                    await result
            store.close()

    app = _App(
        title="Stockade (Judge0 CE compatible)",
        version=JUDGE0_VERSION,
        description="Runs untrusted code. Speaks the Judge0 CE 1.13.1 API.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.include_router(build_router(service))

    @app.get("/", include_in_schema=False)
    async def home() -> Any:
        if settings.use_docs_as_homepage:
            return RedirectResponse("/docs")
        return JSONResponse({"name": "Stockade", "api": "Judge0 CE", "version": JUDGE0_VERSION})

    # Errors outside the routes' own answers keep Judge0's {"error": "..."} shape.
    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail).lower()}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request"}, status_code=422)

    # The database down or refusing (PostgreSQL restarting, a disk that failed):
    # a 503 the client may try again, and one line in the log, not a traceback
    # for each request.
    @app.exception_handler(OperationalError)
    @app.exception_handler(Unavailable)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable on %s %r: %s", request.method, request.url.path, first_line(exc))
        return JSONResponse({"error": "the database is unavailable, try again later"}, status_code=503)

    # The answer to an unexpected exception; ErrorGuard, outside, logs it and
    # keeps it from reaching uvicorn (which would reset the connection).
    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "internal error"}, status_code=500)

    app.add_middleware(
        Gate,
        max_body=settings.max_request_size,
        body_timeout=settings.request_timeout,
        authn_header=settings.authn_header,
        authn_tokens=settings.authn_tokens,
    )
    # Outside the gate, as Judge0 puts Rack::Cors first: a browser's preflight
    # carries no token, and a 401 or 413 still needs the headers to be readable.
    origins, origin_regex = cors_origins(settings.allow_origin, settings.disallow_origin)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_origin_regex=origin_regex,
        allow_methods=["*"],
        allow_headers=["*"],
        max_age=7200,  # Rack::Cors' default
    )
    return app
