"""A request's parameters as Judge0 (Rails) reads them: the body's, which is
JSON or a form (`application/x-www-form-urlencoded`, what `curl -d` and
`requests.post(data=...)` send), its keys nested as Rack nests them
(`submissions[][language_id]=71`), under the query string's."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request

FORM = "application/x-www-form-urlencoded"
MAX_DEPTH = 32  # Rack refuses deeper keys too (its limit is 100); a[b][c]... past this is only an attack
# Rack's own bounds on a form or query (its params_limit, and Rack 2's key
# space): each pair and each byte of a name costs Python work, and parsing runs
# on the event loop. A 32 MiB form of `a[]=&` was 6.7 million pairs: 4.9 s with
# every other request waiting, and 1.6 GB of memory; a 32 MiB name nested 32
# levels deep was sliced at each level, 1 GB. A batch of 20 takes ~300 pairs.
MAX_PAIRS = 4096
MAX_NAME = 1024


class BadBody(ValueError):
    """A body that is neither JSON nor a form; the message says which it claimed to be."""


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_KEY = re.compile(r"\A[\[\]]*([^\[\]]+)\]*")
_ARRAY_OF_HASHES = re.compile(r"\A\[\]\[([^\[\]]+)\]\Z|\A\[\](.+)\Z")


def _normalize(params: dict[str, Any], name: str, value: str, depth: int) -> dict[str, Any]:
    """Rack's normalize_params: `a=1`, `a[]=1`, `a[b]=1`, `a[][b]=1` (a new hash
    in the array when the last one already has `b`)."""
    if depth <= 0:
        raise BadBody(f"a parameter is nested more than {MAX_DEPTH} levels deep")
    match = _KEY.match(name)
    if not match:
        return params
    key, after = match.group(1), name[match.end():]
    if after == "":
        params[key] = value
    elif after == "[":
        params[name] = value
    elif after == "[]":
        items = params.setdefault(key, [])
        if not isinstance(items, list):
            raise _given_both(key, "a list", items)
        items.append(value)
    elif (nested := _ARRAY_OF_HASHES.match(after)) is not None:
        child = nested.group(1) or nested.group(2)
        items = params.setdefault(key, [])
        if not isinstance(items, list):
            raise _given_both(key, "a list", items)
        if items and isinstance(items[-1], dict) and not _has_key(items[-1], child):
            _normalize(items[-1], child, value, depth - 1)
        else:
            items.append(_normalize({}, child, value, depth - 1))
    else:
        inner = params.setdefault(key, {})
        if not isinstance(inner, dict):
            raise _given_both(key, "a hash", inner)
        _normalize(inner, after, value, depth - 1)
    return params


def _given_both(key: str, now: str, before: Any) -> BadBody:
    """(`a[b]=1&a[]=2`: a hash, then a list; not 'one value', which it never was.)"""
    was = "a list" if isinstance(before, list) else "a hash" if isinstance(before, dict) else "one value"
    return BadBody(f"the parameter {key} is given both as {now} and as {was}")


def _has_key(params: dict[str, Any], name: str) -> bool:
    """Rack's params_hash_has_key?: whether `name` (`b`, `b[c]`) is set in
    `params` already; a name with `[]` never is (it appends)."""
    if "[]" in name:
        return False
    node: Any = params
    for part in re.split(r"[\[\]]+", name):
        if not part:
            continue
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _unescape(data: bytes, what: str) -> str:
    """Rack's unescape of a form's name or value: `+` is a space, `%XX` a byte,
    then UTF-8. A `%` without two hex digits after it is refused, as Rack
    refuses it ("invalid %-encoding", a 400 in Rails). At C speed: urllib's
    unquote decodes each escape in Python, 5.8 s for a 32 MiB value of `%41`
    (11 million escapes), on the event loop. (Every backslash doubled, every `%`
    a backslash-x, unicode_escape reads the bytes back; latin-1 maps them 1:1.)"""
    if _BAD_ESCAPE.search(data):
        raise BadBody(f"{what} holds a % not followed by two hexadecimal digits")
    data = data.replace(b"+", b" ")  # (before the escapes: %2B is a plus)
    if b"%" in data:
        data = data.replace(b"\\", b"\\\\").replace(b"%", b"\\x").decode("unicode_escape").encode("latin-1")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody(f"{what} is not valid UTF-8") from None


def form_params(data: bytes, what: str) -> dict[str, Any]:
    """A query string or form body as Rails' params; BadBody, naming `what`,
    if it is not UTF-8 (Rails answers 400 too), or past Rack's bounds."""
    if data.count(b"&") >= MAX_PAIRS:
        raise BadBody(f"{what} holds more than {MAX_PAIRS} parameters")
    params: dict[str, Any] = {}
    for pair in data.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        if len(name) > MAX_NAME:
            raise BadBody(f"{what} holds a parameter name longer than {MAX_NAME} bytes")
        _normalize(params, _unescape(name, what), _unescape(value, what), MAX_DEPTH)
    return params


async def request_params(request: Request) -> Any:
    """The submission's parameters: the body's, and over them the query
    string's, as Rails merges them (`request_parameters.merge(query_parameters)`:
    the query string's win). A body that is not an object (a JSON list) is
    returned as it is, for the parser to refuse."""
    raw = await request.body()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == FORM:
        body: Any = form_params(raw, "the request's form")
    elif media_type.startswith("multipart/"):
        # (Rails reads it too, but no Judge0 client sends one, and its parser is one
        # more dependency to trust with untrusted bodies: say what to send instead.)
        raise BadBody(f"a {media_type} body is not read: send JSON or {FORM}")
    elif not raw.strip():
        body = {}
    else:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadBody("request body is not valid JSON") from None
    query = request.scope.get("query_string", b"")
    if not query or not isinstance(body, dict):
        return body
    return {**body, **form_params(query, "the query string")}
