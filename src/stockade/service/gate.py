"""The gate every request passes first (plain ASGI, no per-request tasks):
body size (413 past the limit, counted as it arrives, so a missing or lying
Content-Length does not help), the time to send it (408 past the timeout: a
client that sends half a body and waits does not hold its connection for
good), Judge0 authentication (401, empty body),
paths with a trailing slash served as the same path without it, and HEAD
answered as GET without the body.
Before it, CORS (`cors_origins`: which origins Judge0's Rack::Cors allows)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The API description stays readable without a token; it holds no data.
OPEN_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def cors_origins(allow: Sequence[str], disallow: Sequence[str]) -> tuple[list[str], str | None]:
    """(origins, origin regex) for CORSMiddleware, as Judge0 configures Rack::Cors
    from ALLOW_ORIGIN and DISALLOW_ORIGIN: any origin ("*") unless one is set;
    the listed origins; and, for DISALLOW_ORIGIN, any origin containing none of
    its strings (those also in ALLOW_ORIGIN excepted)."""
    refused = [item for item in disallow if item not in allow]
    regex = None
    if refused:
        regex = "^(?:(?!" + "|".join(re.escape(item) for item in refused) + ").)*$"
    origins = list(allow) or ([] if refused else ["*"])
    return origins, regex


async def _respond(send: Send, status: int, body: bytes = b"", content_type: bytes = b"application/json") -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", content_type))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _headers_only(send: Send) -> Send:
    async def send_headers(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_headers


class Gate:
    """ASGI middleware: authentication and the request size limit."""

    def __init__(self, app: ASGIApp, *, max_body: int, authn_header: str, authn_tokens: Sequence[str],
                 body_timeout: float = 30.0):
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.authn_header = authn_header.lower().encode("latin-1")
        self.authn_query = authn_header
        self.authn_tokens = frozenset(authn_tokens)

    def _authenticated(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == self.authn_header:
                return value.decode("latin-1") in self.authn_tokens
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return any(value in self.authn_tokens for value in query.get(self.authn_query, []))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # Rails routes /submissions/ as /submissions; Starlette would answer
            # a 307 that clients which do not follow redirects take as the answer.
            raw = scope.get("raw_path")
            scope = {**scope, "path": path.rstrip("/") or "/"}
            if raw is not None:
                scope["raw_path"] = raw.rstrip(b"/") or b"/"
        if scope["method"] == "HEAD":
            # Rails answers HEAD for every GET route (uptime checks use it): the
            # GET's status and headers, no body.
            scope = {**scope, "method": "GET"}
            send = _headers_only(send)
        if self.authn_tokens and scope["path"] not in OPEN_PATHS and not self._authenticated(scope):
            await _respond(send, 401)
            return
        too_large = json.dumps({"error": f"request body is larger than {self.max_body} bytes"}).encode()
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _respond(send, 400, b'{"error": "invalid Content-Length"}')
                    return
                if declared > self.max_body:
                    await _respond(send, 413, too_large)
                    return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # Read the whole body here, bounded, then hand it to the app in one piece:
        # the routes read it whole anyway, and a limit hit mid-route would have
        # no clean way to answer.
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        await _respond(send, 413, too_large)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            # (serve.py's protocol then closes the connection: the rest of the body never came.)
            await _respond(send, 408, json.dumps(
                {"error": f"request body not received within {self.body_timeout:g} s"}).encode())
            return
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
