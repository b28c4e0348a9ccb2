"""The Judge0 CE 1.13.1 routes. Every answer, error body and status code here
is Judge0's; query parameters are read raw (`base64_encoded` and `wait` switch
on only for the word `true`), bodies are validated by request.SubmissionParser."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request, Response, responses
from fastapi.responses import PlainTextResponse

from stockade.service.callbacks import RefusedTarget, resolve_target
from stockade.service.dispatch import QueueFull
from stockade.service.judge0 import info
from stockade.service.judge0.format import (
    STATUSES,
    UTF8_ERROR,
    UTF8_ERROR_MANY,
    InvalidFields,
    NotUtf8,
    json_chunks,
    needs_chunks,
    parse_fields,
    serialize,
)
from stockade.service.judge0.params import BadBody, request_params
from stockade.service.judge0.schema import BATCH_BODY, SUBMISSION_BODY
from stockade.service.store import IN_QUEUE, PROCESSING, Row, Unavailable

if TYPE_CHECKING:
    from stockade.service.app import Service


class JSONResponse(responses.JSONResponse):
    """JSON that can carry back what a client sent: a lone surrogate (valid JSON,
    "\\ud800", but not UTF-8) echoed in an error message goes out as the same
    escape instead of failing the response with a 500."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


log = logging.getLogger("stockade.service")


def answer(content: Any, status_code: int = 200) -> Response:
    """A JSON answer; one holding long fields or many submissions goes out
    in chunks, written as it is sent (see format.Pieces)."""
    if needs_chunks(content):
        return responses.StreamingResponse(json_chunks(content), status_code, media_type="application/json")
    return JSONResponse(content, status_code)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def not_stored(exc: Unavailable) -> JSONResponse:
    """The database could not take a submission (a full disk, say): nothing
    was stored, and the client may try again. (It was a 500, and a traceback
    in the log for each request.)"""
    log.error("submission not stored: %s", exc)
    return error(503, "the submission could not be stored, try again later")


def _flag(value: Any) -> bool:
    # (Ruby's `params[:wait] == "true"`: the string only, not JSON's true.)
    return value == "true"


def _param(body: Any, name: str, query: str | None) -> Any:
    """A parameter as Judge0 reads it, from Rails' params: the body's and the
    query string's merged (request_params: the query string's win), so a form
    or JSON body may carry `base64_encoded`, `wait` or `fields` too."""
    return body.get(name, query) if isinstance(body, dict) else query


def _text(value: Any) -> str | None:
    """`fields` given as something else than a string (a JSON list): its JSON
    text, whose names are then refused as Judge0 refuses unknown ones."""
    return value if value is None or isinstance(value, str) else json.dumps(value)


# Past a database's integers (SQLite's and PostgreSQL's bigint): a page or a
# page size this large is only ever asked for to find a crash.
MAX_NUMBER = 2**63 - 1


def _ruby_to_i(value: str | None, default: int) -> int:
    """Rails' String#to_i: leading integer, else 0 (so "abc" is page 0);
    clamped to +-MAX_NUMBER (and never a 5000-digit int() to parse)."""
    if value is None:
        return default
    match = re.match(r"\s*([+-]?)0*([0-9]+)", value)  # (ASCII: Ruby's to_i reads "٣" as 0, not 3)
    if not match:
        return 0
    sign, digits = match.groups()
    number = MAX_NUMBER if len(digits) > 19 else min(int(digits), MAX_NUMBER)
    return -number if sign == "-" else number


def _authorized(request: Request, service: Service) -> bool:
    tokens = service.settings.authz_tokens
    if not tokens:
        return False  # Judge0: no authorization token configured, nobody is authorized
    header = service.settings.authz_header
    given = request.headers.get(header) or request.query_params.get(header)
    return given in tokens


def build_router(service: Service) -> APIRouter:
    """All Judge0 routes, bound to one running service."""
    router = APIRouter()
    settings = service.settings
    store = service.store
    dispatcher = service.dispatcher
    languages = service.languages
    parser = service.parser

    def shown_status(row: Row) -> int:
        # Unfinished: Processing while a worker runs it, In Queue otherwise. (The
        # store's own word lags: a row is In Queue until its start is committed,
        # and one a stop or crash left Processing waits In Queue after the restart.)
        if row["status_id"] in (IN_QUEUE, PROCESSING):
            return PROCESSING if dispatcher.is_processing(row["token"]) else IN_QUEUE
        return row["status_id"]

    def render(row: Row, fields: tuple[str, ...], encoded: bool) -> dict[str, Any]:
        return serialize(row, fields, encoded=encoded, language_name=languages.name, status_id=shown_status(row))

    async def check_callback(row: Row) -> dict[str, list[str]]:
        if not row.get("callback_url"):
            return {}
        try:
            await resolve_target(row["callback_url"], settings.callback_networks)
        except RefusedTarget as exc:
            return {"callback_url": [str(exc)]}
        return {}

    # ------------------------------------------------------------- submissions
    @router.post("/submissions", status_code=201, tags=["submissions"], openapi_extra=SUBMISSION_BODY)
    async def create_submission(
        request: Request,
        base64_encoded: str | None = Query(None),
        wait: str | None = Query(None),
        fields: str | None = Query(None),
    ) -> Response:
        """Create a submission; with wait=true, answer with its result."""
        if settings.maintenance_mode:
            return error(503, settings.maintenance_message)
        # Judge0's order of checks: maintenance, then its params (the body
        # parsed, with the query string's), wait, fields.
        try:
            body = await request_params(request)
        except BadBody as exc:
            return error(400, str(exc))
        encoded = _flag(_param(body, "base64_encoded", base64_encoded))
        waiting = _flag(_param(body, "wait", wait))
        if waiting and not settings.enable_wait_result:
            return error(400, "wait not allowed")
        try:
            requested = parse_fields(_text(_param(body, "fields", fields)))
        except InvalidFields as exc:
            return error(400, str(exc))
        row, errors = parser.parse(body, encoded=encoded)
        if row is not None:
            errors = await check_callback(row)
        if row is None or errors:
            return JSONResponse(errors, status_code=422)
        try:
            futures = await dispatcher.submit([row], wait=waiting)
        except QueueFull:
            return error(503, "queue is full")
        except Unavailable as exc:
            return not_stored(exc)
        if not waiting:
            return JSONResponse({"token": row["token"]}, status_code=201)
        # The run belongs to a worker, not to this request: if the client goes
        # away, only this future is cancelled and the submission still finishes.
        try:
            final = await dispatcher.wait_for(futures[0])
        except asyncio.CancelledError:
            raise
        except Exception:
            # Its result could not be stored (the database failed: PostgreSQL
            # restarting, a full disk); it is kept and stored once the database
            # recovers. The submission is stored: answered as when the server
            # stops. (A 500 without the token lost a stored submission.)
            final = None
        if final is None:  # the submission as it stands, to get later by its token
            try:
                final = await store.get(row["token"])
            except Exception:  # (the database still failing: the token alone)
                final = None
            if final is None:  # (deleted meanwhile)
                return JSONResponse({"token": row["token"]}, status_code=201)
        try:
            return answer(render(final, requested, encoded), 201)
        except NotUtf8:
            return JSONResponse({"token": row["token"], "error": UTF8_ERROR}, status_code=201)

    @router.get("/submissions/batch", tags=["submissions"])
    async def get_batch(
        request: Request,
        tokens: str | None = Query(None),
        base64_encoded: str | None = Query(None),
        fields: str | None = Query(None),
    ) -> Response:
        """Several submissions by token, in the order asked (null for unknown ones)."""
        if not settings.enable_batched_submissions:
            return error(400, "batched submissions are not allowed")
        try:
            requested = parse_fields(fields)
        except InvalidFields as exc:
            return error(400, str(exc))
        # Judge0 reads a `tokens` header first, then the query parameter
        # (`request.headers[:tokens] || params[:tokens]`), and splits with Ruby
        # (`tokens.strip.split(",")`): an empty item keeps its place in the
        # answer (null); only trailing ones are dropped.
        header = request.headers.get("tokens")
        if header is not None:
            tokens = header
        wanted = [token.strip() for token in (tokens or "").strip().split(",")]
        while wanted and not wanted[-1]:
            wanted.pop()
        if not wanted:
            return error(400, "there should be at least one submission in a batch")
        if len(wanted) > settings.max_submission_batch_size:
            return error(400, f"number of submissions in a batch should be less than or equal to {settings.max_submission_batch_size}")
        rows = await store.get_many(wanted)
        try:
            items = [render(rows[t], requested, _flag(base64_encoded)) if t in rows else None for t in wanted]
        except NotUtf8:
            return error(400, UTF8_ERROR_MANY)
        return answer({"submissions": items})

    @router.post("/submissions/batch", status_code=201, tags=["submissions"], openapi_extra=BATCH_BODY)
    async def create_batch(
        request: Request,
        base64_encoded: str | None = Query(None),
        wait: str | None = Query(None),
    ) -> Response:
        """Create up to max_submission_batch_size submissions; per item a token or its errors."""
        # (Maintenance mode does not stop batches: Judge0 guards create and destroy only.)
        if not settings.enable_batched_submissions:
            return error(400, "batched submissions are not allowed")
        # `wait` is not for batches: as Judge0, it is ignored (the tokens come back).
        try:
            body = await request_params(request)
        except BadBody as exc:
            return error(400, str(exc))
        items = body.get("submissions") if isinstance(body, dict) else None
        if items is None or (isinstance(items, str | dict | list) and not items):
            # Judge0 counts `params[:submissions].size`: absent, null or empty is none.
            return error(400, "there should be at least one submission in a batch")
        if not isinstance(items, list):
            return error(400, "submissions must be an array")
        if len(items) > settings.max_submission_batch_size:
            return error(400, f"number of submissions in a batch should be less than or equal to {settings.max_submission_batch_size}")
        answers: list[dict[str, Any]] = []
        rows: list[Row] = []
        encoded = _flag(_param(body, "base64_encoded", base64_encoded))
        for item in items:
            row, errors = parser.parse(item, encoded=encoded)
            if row is not None:
                errors = await check_callback(row)
            if row is None or errors:
                answers.append(errors)
            else:
                rows.append(row)
                answers.append({"token": row["token"]})
        if not rows:
            return JSONResponse(answers, status_code=422)
        try:
            await dispatcher.submit(rows)
        except QueueFull:
            return error(503, "queue is full")
        except Unavailable as exc:
            return not_stored(exc)
        return JSONResponse(answers, status_code=201)

    @router.get("/submissions/{token}", tags=["submissions"])
    async def get_submission(
        token: str,
        base64_encoded: str | None = Query(None),
        fields: str | None = Query(None),
    ) -> Response:
        """One submission."""
        try:
            requested = parse_fields(fields)
        except InvalidFields as exc:
            return error(400, str(exc))
        row = await store.get(token)
        if row is None:
            return error(404, "not found")
        try:
            return answer(render(row, requested, _flag(base64_encoded)))
        except NotUtf8 as exc:
            return error(400, str(exc))

    @router.get("/submissions", tags=["submissions"])
    async def list_submissions(
        request: Request,
        page: str | None = Query(None),
        per_page: str | None = Query(None),
        base64_encoded: str | None = Query(None),
        fields: str | None = Query(None),
    ) -> Response:
        """Every submission, newest first, a page at a time (needs authorization)."""
        if not _authorized(request, service):
            return Response(status_code=403)
        try:
            requested = parse_fields(fields)
        except InvalidFields as exc:
            return error(400, str(exc))
        number = _ruby_to_i(page, 1)
        size = _ruby_to_i(per_page, 20)
        if number <= 0:
            return error(400, f"invalid page: {number}")
        if size < 0:
            return error(400, f"invalid per_page: {size}")
        # As many as asked, as Judge0 (only an authorized client lists); 0, on
        # which Judge0 fails (a division by zero), is the default page size.
        size = size or 20
        rows, total = await store.page(number, size)
        try:
            items = [render(row, requested, _flag(base64_encoded)) for row in rows]
        except NotUtf8:
            return error(400, UTF8_ERROR_MANY)
        # will_paginate's numbers, as Judge0 passes them on: no submission is
        # still one (empty) page, and any page past the first has a previous one.
        pages = max(-(-total // size), 1)
        return answer({
            "submissions": items,
            "meta": {
                "current_page": number,
                "next_page": number + 1 if number < pages else None,
                "prev_page": number - 1 if number > 1 else None,
                "total_pages": pages,
                "total_count": total,
            },
        })

    @router.delete("/submissions/{token}", tags=["submissions"])
    async def delete_submission(request: Request, token: str, fields: str | None = Query(None)) -> Response:
        """Delete a finished submission (needs authorization and deletion enabled);
        answers with what was deleted, always in base64."""
        if not _authorized(request, service):
            return Response(status_code=403)
        if settings.maintenance_mode:
            return error(503, settings.maintenance_message)
        # (Judge0 checks the fields before it looks at whether deleting is allowed.)
        try:
            requested = parse_fields(fields)
        except InvalidFields as exc:
            return error(400, str(exc))
        if not settings.enable_submission_delete:
            return error(400, "delete not allowed")
        row = await store.get(token)
        if row is None:
            return error(404, "not found")
        status = shown_status(row)
        if status in (IN_QUEUE, PROCESSING):
            return error(400, f"submission cannot be deleted because its status is {status} ({STATUSES[status]})")
        await store.delete(token)
        return answer(render(row, requested, True))

    # ------------------------------------------------------------- languages, statuses
    @router.get("/languages", tags=["languages"])
    async def get_languages() -> Response:
        return JSONResponse(languages.active())

    @router.get("/languages/all", tags=["languages"])
    async def get_all_languages() -> Response:
        return JSONResponse(languages.all())

    @router.get("/languages/{language_id}", tags=["languages"])
    async def get_language(language_id: str) -> Response:
        detail = languages.detail(int(language_id)) if re.fullmatch(r"[0-9]{1,9}", language_id) else None
        if detail is None:
            return error(404, "not found")
        return JSONResponse(detail)

    @router.get("/statuses", tags=["statuses"])
    async def get_statuses() -> Response:
        return JSONResponse([{"id": sid, "description": text} for sid, text in STATUSES.items()])

    # ------------------------------------------------------------- information
    @router.get("/about", tags=["information"])
    async def about() -> Response:
        return JSONResponse(info.about())

    @router.get("/config_info", tags=["information"])
    async def config_info() -> Response:
        return JSONResponse(info.config_info(settings))

    @router.get("/system_info", tags=["information"])
    async def system_info() -> Response:
        return JSONResponse(info.system_info())

    @router.get("/workers", tags=["information"])
    async def workers() -> Response:
        busy = dispatcher.busy
        return JSONResponse([{
            "queue": info.JUDGE0_VERSION,
            "size": max(dispatcher.pending - busy, 0),
            "available": dispatcher.workers,
            "idle": dispatcher.workers - busy,
            "working": busy,
            "paused": 0,
            "failed": 0,
        }])

    # Judge0 computes the statistics at most every 10 minutes (cached_until
    # says when next), unless asked with invalidate_cache=true. One computation
    # at a time: the requests that arrive meanwhile share it (each scans the
    # whole table, and a client asking again and again started one each).
    cached: dict[str, Any] = {"until": 0.0, "body": None, "computing": None}

    async def compute_statistics() -> None:
        now = time.monotonic()
        raw = await store.statistics()
        cached["body"] = info.statistics(raw, languages.name, store.database_size())
        cached["until"] = now + info.STATISTICS_CACHE.total_seconds()

    @router.get("/statistics", tags=["information"])
    async def statistics(invalidate_cache: str | None = Query(None)) -> Response:
        if _flag(invalidate_cache) or cached["body"] is None or time.monotonic() >= cached["until"]:
            if cached["computing"] is None:
                computing = asyncio.ensure_future(compute_statistics())
                computing.add_done_callback(lambda _: cached.update(computing=None))
                cached["computing"] = computing
            # (shielded: a client that goes away does not cancel the others' answer)
            await asyncio.shield(cached["computing"])
        return JSONResponse(cached["body"])

    @router.get("/version", tags=["information"], response_class=PlainTextResponse)
    async def version() -> Response:
        return PlainTextResponse(info.JUDGE0_VERSION)

    @router.get("/license", tags=["information"], response_class=PlainTextResponse)
    async def license_text() -> Response:
        return PlainTextResponse(info.LICENSE)

    @router.get("/isolate", tags=["information"], response_class=PlainTextResponse)
    async def isolate() -> Response:
        return PlainTextResponse(info.sandbox_version())

    # ------------------------------------------------------------- authentication
    @router.post("/authenticate", tags=["authentication"])
    async def authenticate() -> Response:
        """200 when X-Auth-Token is right (checked for every route by the gate)."""
        return Response(status_code=200)

    @router.post("/authorize", tags=["authentication"])
    async def authorize(request: Request) -> Response:
        """200 when X-Auth-User is right, else 403."""
        return Response(status_code=200 if _authorized(request, service) else 403)

    return router
