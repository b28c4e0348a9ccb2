"""The outermost layer of the app (plain ASGI): an exception that escapes
everything else is logged with its traceback and ends there, as a 500 with
the service's error body if nothing was answered yet.

Why it exists: Starlette's ServerErrorMiddleware answers the 500 and then
re-raises, and uvicorn, seeing an exception after a response, resets the
connection; a keep-alive client (the SDK's pooled session) then fails its next,
unrelated request on that socket."""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("stockade.service")

INTERNAL_ERROR = json.dumps({"error": "internal error"}).encode()


class ErrorGuard:
    """ASGI middleware: no exception reaches the server."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        refused = 0  # the status of an error answer, until its body is logged

        async def watched(message: Message) -> None:
            nonlocal started, refused
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    refused = message["status"]
            elif refused and message["type"] == "http.response.body":
                _log_refusal(scope, refused, message.get("body", b""))
                refused = 0
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            # The path quoted (repr): it is the client's, decoded, and a %0A in it
            # was a line break in the log, a line of the client's making after it.
            log.exception("unhandled error on %s %r", scope.get("method"), scope.get("path"))
            if started:
                # Answered already (the app's own 500), or cut off mid-answer: then
                # the server closes the connection, which is right for a torn body.
                return
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(INTERNAL_ERROR)).encode()),
            ]})
            await send({"type": "http.response.body", "body": INTERNAL_ERROR})


def _log_refusal(scope: Scope, status: int, body: bytes) -> None:
    """One line for each error answer (uvicorn's access log is off): what the
    client was told, and who. Never the query string, where Judge0 clients
    put X-Auth-Token; the path quoted, as above."""
    client = scope.get("client")
    log.log(logging.WARNING if status >= 500 else logging.INFO, "answered %d to %s %r from %s: %s",
            status, scope.get("method"), scope.get("path"), _printable(client[0]) if client else "?",
            _printable(body[:200].decode("utf-8", "replace")) or "(no body)")


def _printable(text: str) -> str:
    """`text` with every character that is not printable escaped (\\x85,
    \\u2028). Both halves of the line are the client's: an error body echoes
    its values as JSON, which escapes only what is below a space, and the
    client's address is X-Forwarded-For's from a loopback proxy (uvicorn's
    default), its bytes read as latin-1; a NEL (U+0085), a U+2028 or an 8-bit
    CSI (U+009B) went into the log as they were: line breaks to a log reader,
    a terminal escape to a terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
