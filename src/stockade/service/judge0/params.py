"""A request's parameters as Judge0 (Rails) reads them: the body's, which is
JSON or a form (`application/x-www-form-urlencoded`, what `curl -d` and
`requests.post(data=...)` send), its keys nested as Rack nests them
(`submissions[][language_id]=71`), under the query string's."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request

FORM = "application/x-www-form-urlencoded"
MAX_DEPTH = 32  # Rack refuses deeper keys too (its limit is 100); a[b][c]... past this is only an attack
# Each pair costs some 50 times its bytes in objects (a 32 MiB body of `a[]=&`
# took 1.4 GiB and 5 s of the event loop), and each level of a name a copy of
# what is left of it (`a[][b][][b]...`, 32 MiB: 2.7 s): Rack's limits, the
# number of pairs (its params_limit, CVE-2025-46727) and the length of all the
# names (Rack 2's key_space_limit). Values are not limited: a source may be long.
MAX_PARAMS = 4096
MAX_NAME_LENGTH = 65536


class BadBody(ValueError):
    """A body that is neither JSON nor a form; the message says which it claimed to be."""


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


def form_params(data: bytes, what: str) -> dict[str, Any]:
    """A query string or form body as Rails' params; BadBody, naming `what`,
    if it is not UTF-8 (Rails answers 400 too) or is past MAX_PARAMS or
    MAX_NAME_LENGTH."""
    params: dict[str, Any] = {}
    if data.count(b"&") >= MAX_PARAMS:  # (counted before anything is split)
        raise BadBody(f"{what} has more than {MAX_PARAMS} parameters")
    try:
        pairs = parse_qsl(data.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadBody(f"{what} is not valid UTF-8") from None
    if sum(len(name) for name, _ in pairs) > MAX_NAME_LENGTH:
        raise BadBody(f"the names in {what} are longer than {MAX_NAME_LENGTH} characters in all")
    for name, value in pairs:
        _normalize(params, name, value, MAX_DEPTH)
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
