"""How Judge0 writes a submission: which fields exist, Ruby-style base64,
decimals as strings, memory in KB, timestamps with milliseconds and `Z`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

# `fields=*` gives exactly these, in Judge0's order; the SDK rejects any other.
ALL_FIELDS: tuple[str, ...] = (
    "source_code", "language_id", "stdin", "expected_output", "stdout", "status_id",
    "created_at", "finished_at", "time", "memory", "stderr", "token", "number_of_runs",
    "cpu_time_limit", "cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit",
    "max_processes_and_or_threads", "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit", "max_file_size", "compile_output",
    "exit_code", "exit_signal", "message", "wall_time", "compiler_options",
    "command_line_arguments", "redirect_stderr_to_stdout", "callback_url",
    "additional_files", "enable_network", "status", "language",
)
DEFAULT_FIELDS: tuple[str, ...] = (
    "token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status",
)
# Text fields that follow `base64_encoded` on the way out.
TEXT_FIELDS = frozenset({"source_code", "stdin", "expected_output", "stdout", "stderr", "compile_output", "message"})
DECIMAL_FIELDS = frozenset({"time", "wall_time", "cpu_time_limit", "cpu_extra_time", "wall_time_limit"})
LIMIT_DECIMALS = frozenset({"cpu_time_limit", "cpu_extra_time", "wall_time_limit"})  # as given, not rounded
TIME_FIELDS = frozenset({"created_at", "finished_at"})

STATUSES: dict[int, str] = {
    1: "In Queue",
    2: "Processing",
    3: "Accepted",
    4: "Wrong Answer",
    5: "Time Limit Exceeded",
    6: "Compilation Error",
    7: "Runtime Error (SIGSEGV)",
    8: "Runtime Error (SIGXFSZ)",
    9: "Runtime Error (SIGFPE)",
    10: "Runtime Error (SIGABRT)",
    11: "Runtime Error (NZEC)",
    12: "Runtime Error (Other)",
    13: "Internal Error",
    14: "Exec Format Error",
}

UTF8_ERROR = (
    "some attributes for this submission cannot be converted to UTF-8, "
    "use base64_encoded=true query parameter"
)
# Judge0's words for the list and batch reads (the spec quotes only the one above).
UTF8_ERROR_MANY = (
    "some attributes for one or more submissions cannot be converted to UTF-8, "
    "use base64_encoded=true query parameter"
)


class InvalidFields(ValueError):
    """`fields` named something that is not a submission field."""

    def __init__(self, names: list[str]):
        super().__init__(f"invalid fields: [{', '.join(names)}]")


class NotUtf8(ValueError):
    """An output is not valid UTF-8 and base64 was not asked for."""

    def __init__(self) -> None:
        super().__init__(UTF8_ERROR)


def parse_fields(text: str | None) -> tuple[str, ...]:
    """The `fields` query parameter: a comma list, `*`, or absent (the default set).
    As Judge0: an unknown name is an error even beside `*`, and a list that
    names nothing (`fields=,`) is the default set."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    invalid = [name for name in names if name != "*" and name not in ALL_FIELDS]
    if invalid:
        raise InvalidFields(invalid)
    if "*" in names:
        return ALL_FIELDS
    if not names:
        return DEFAULT_FIELDS
    return tuple(dict.fromkeys(names))  # keep the order asked, drop repeats


def ruby_base64(data: bytes) -> str:
    """Ruby's Base64.encode64: a newline after every 60 characters and at the end."""
    if not data:
        return ""
    # binascii.b2a_base64 on 45-byte chunks gives exactly 60 characters + "\n".
    return "".join(binascii.b2a_base64(data[i:i + 45]).decode("ascii") for i in range(0, len(data), 45))


def decode_base64(text: str) -> bytes:
    """Judge0's input base64: line breaks and missing padding are tolerated, any
    other stray character is an error (ValueError)."""
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None


def decimal(value: float | None, places: int | None = 3) -> str | None:
    """A decimal as Judge0 (Ruby BigDecimal) writes it: "0.001", "5.0".
    Measured times have milliseconds (isolate's); a limit (places=None) is
    written as it was given, "2.12345" (Judge0 stores it as a decimal)."""
    if value is None:
        return None
    if places is None:
        text = format(Decimal(repr(float(value))), "f")  # (shortest digits, never 1e-05)
        return text if "." in text else text + ".0"
    text = f"{round(float(value), places):.{places}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def timestamp(value: dt.datetime | None) -> str | None:
    """2024-04-08T11:42:51.856Z (stored naive, in UTC)."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# A field longer than this (bytes, or characters once decoded) is written out a
# piece at a time as the answer goes (see Pieces): 1456 whole base64 lines.
PIECE = 45 * 1456


class Pieces:
    """A long text field, turned into its JSON string a piece at a time by
    json_chunks: a 14 MB stdin of NULs is 84 MB of JSON, ~0.5 s of encoding,
    which in one go would hold the event loop, and every other request, for it."""

    __slots__ = ("value", "encoded")

    def __init__(self, value: bytes | str, *, encoded: bool):
        self.value, self.encoded = value, encoded  # bytes to base64, or text already decoded

    def __iter__(self) -> Iterator[str]:
        value = self.value
        for start in range(0, len(value), PIECE):
            piece = value[start:start + PIECE]
            yield ruby_base64(piece) if self.encoded else piece  # type: ignore[arg-type]


def _text(value: bytes | None, encoded: bool) -> str | Pieces | None:
    if value is None:
        return None
    if encoded:
        return Pieces(value, encoded=True) if len(value) > PIECE else ruby_base64(value)
    try:
        text = value.decode("utf-8")  # (checked whole, before any byte of the answer goes)
    except UnicodeDecodeError:
        raise NotUtf8() from None
    return Pieces(text, encoded=False) if len(text) > PIECE else text


def serialize(
    row: Mapping[str, Any],
    fields: tuple[str, ...],
    *,
    encoded: bool,
    language_name: Callable[[int], str | None],
    status_id: int | None = None,
) -> dict[str, Any]:
    """One submission as Judge0 shows it. `status_id` overrides the stored one
    (a queued row that a worker is running shows as Processing)."""
    status = status_id if status_id is not None else row["status_id"]
    out: dict[str, Any] = {}
    for name in fields:
        if name in TEXT_FIELDS:
            out[name] = _text(row[name], encoded)
        elif name == "additional_files":
            out[name] = _text(row[name], True)
        elif name in DECIMAL_FIELDS:
            out[name] = decimal(row[name], None if name in LIMIT_DECIMALS else 3)
        elif name in TIME_FIELDS:
            out[name] = timestamp(row[name])
        elif name == "status":
            out[name] = {"id": status, "description": STATUSES.get(status, "Unknown")}
        elif name == "status_id":
            out[name] = status
        elif name == "language":
            out[name] = {"id": row["language_id"], "name": language_name(row["language_id"])}
        else:
            out[name] = row[name]
    return out


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _has_pieces(value: Any) -> bool:
    if isinstance(value, Pieces):
        return True
    if isinstance(value, dict):
        return any(isinstance(item, Pieces | dict | list) and _has_pieces(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_pieces(item) for item in value)
    return False


def _parts(value: Any) -> Iterator[str]:
    """`value` as JSON text, in parts: a Pieces field a piece at a time, a
    list an item at a time, anything else whole."""
    if isinstance(value, Pieces):
        yield '"'
        for piece in value:
            yield _json(piece)[1:-1]
        yield '"'
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield "[" if index == 0 else ","
            yield from _parts(item)
        yield "]"
    elif isinstance(value, dict) and any(isinstance(item, list) and item for item in value.values()) \
            or isinstance(value, dict) and _has_pieces(value):
        for index, (key, item) in enumerate(value.items()):
            yield ("{" if index == 0 else ",") + _json(key) + ":"
            yield from _parts(item)
        yield "}"
    else:
        yield _json(value)


def needs_chunks(content: Any) -> bool:
    """Whether `content` is better written by json_chunks than in one go: it
    holds a long field, or is a list (a page or a batch) of many items."""
    if isinstance(content, dict) and isinstance(content.get("submissions"), list):
        return len(content["submissions"]) > 100 or _has_pieces(content)
    return _has_pieces(content)


async def json_chunks(content: Any, size: int = 4 * PIECE) -> AsyncIterator[bytes]:
    """`content` as UTF-8 JSON (a lone surrogate as its escape), in chunks of
    about `size` bytes, letting the event loop run between them."""
    buffer: list[str] = []
    held = 0
    for part in _parts(content):
        buffer.append(part)
        held += len(part)
        if held >= size:
            yield "".join(buffer).encode("utf-8", "backslashreplace")
            buffer.clear()
            held = 0
            await asyncio.sleep(0)
    if buffer:
        yield "".join(buffer).encode("utf-8", "backslashreplace")
