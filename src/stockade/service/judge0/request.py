"""A Judge0 submission request -> the row to store, or Judge0's field-error hash.

Judge0 (Rails) casts loosely: "5" is a number, "true" a boolean, null means the
default. We cast the same way but never guess: anything else is a 422 naming the
field, in Rails' words ("must be less than or equal to 20.0")."""

from __future__ import annotations

import io
import json
import math
import unicodedata
import uuid
import zipfile
from typing import Any
from urllib.parse import urlsplit

from stockade.engine import ArchiveLimits
from stockade.errors import InvalidSubmission
from stockade.runtimes import split_words
from stockade.service.judge0.format import decode_base64
from stockade.service.judge0.languages import Languages
from stockade.service.store import IN_QUEUE, Row, utcnow
from stockade.settings import Settings

MULTI_FILE = 89
MAX_ARGUMENTS_LENGTH = 512
MAX_URL_LENGTH = 2048

Errors = dict[str, list[str]]


def _as_text(value: Any) -> str:
    """A client's value in a message: as it sent it (JSON), never a Python repr."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _blank(data: bytes | None) -> bool:
    """Rails' blank?: nothing, or only whitespace."""
    return not data or not data.decode("utf-8", "replace").strip()


class _Invalid:
    """A value that could not be cast; the message says why."""

    def __init__(self, message: str):
        self.message = message


def _ruby_number(value: float | int) -> str:
    """How Ruby prints a limit in a message: floats keep ".0", integers do not."""
    return repr(float(value)) if isinstance(value, float) else str(value)


def _cast_number(value: Any, integer: bool) -> float | int | None | _Invalid:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return _Invalid("is not a number")
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii():  # (int() reads "٧١" as 71: Ruby's Float() refuses it)
            return _Invalid("is not a number")
        try:
            number: float | int = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return _Invalid("is not a number")
    else:
        number = value
    if isinstance(number, float) and not math.isfinite(number):
        return _Invalid("is not a number")
    if integer and isinstance(number, float):
        number = int(number)  # Rails truncates a float given to an integer column
    if integer:
        return number
    try:
        return float(number)
    except OverflowError:
        # An integer past every float (10**400 in JSON, or 400 digits): past
        # the field's maximum too, and said so; float() raising was a 500.
        return number


_FALSE = {"false", "f", "0", "off", "no", "n"}
_TRUE = {"true", "t", "1", "on", "yes", "y"}


def _cast_bool(value: Any) -> bool | None | _Invalid:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return _Invalid("is not included in the list")


def _cast_string(value: Any) -> str | None | _Invalid:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _Invalid("is invalid")


class SubmissionParser:
    """Validates submission requests against the operator's settings."""

    def __init__(self, settings: Settings, languages: Languages):
        self.settings = settings
        self.languages = languages
        s = settings
        # name -> (integer?, minimum, maximum, default)
        self.numbers: dict[str, tuple[bool, float | int, float | int, float | int]] = {
            "cpu_time_limit": (False, 0, float(s.max_cpu_time_limit), s.cpu_time_limit),
            "cpu_extra_time": (False, 0, float(s.max_cpu_extra_time), s.cpu_extra_time),
            "wall_time_limit": (False, 1, float(s.max_wall_time_limit), s.wall_time_limit),
            "memory_limit": (True, 2048, s.max_memory_limit, s.memory_limit),
            "stack_limit": (True, 0, s.max_stack_limit, s.stack_limit),
            "max_processes_and_or_threads": (True, 1, s.max_max_processes_and_or_threads, s.max_processes_and_or_threads),
            "max_file_size": (True, 0, s.max_max_file_size, s.max_file_size),
            "number_of_runs": (True, 1, s.max_number_of_runs, s.number_of_runs),
        }
        # Judge0 bounds these with `greater_than: 0`, and says so.
        self.positive = frozenset({"max_processes_and_or_threads", "number_of_runs"})

    def parse(self, body: Any, *, encoded: bool) -> tuple[Row | None, Errors]:
        """The row for a valid request, else (None, errors)."""
        errors: Errors = {}

        def add(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        if not isinstance(body, dict):
            return None, {"submission": ["must be a JSON object"]}
        s = self.settings
        row: Row = {}

        # --- language
        runtime = None
        language_id = body.get("language_id")
        cast = _cast_number(language_id, integer=True)
        if cast is None:
            add("language_id", "can't be blank")
        elif isinstance(cast, _Invalid) or (isinstance(language_id, float) and not language_id.is_integer()):
            add("language_id", f"language with id {_as_text(language_id)} doesn't exist")
        else:
            runtime = self.languages.get(int(cast))
            if runtime is None:
                add("language_id", f"language with id {cast} doesn't exist")
            elif not runtime.available:
                add("language_id", f"language with id {cast} is archived and cannot be used anymore")
                runtime = None
            row["language_id"] = int(cast)
        is_multi_file = row.get("language_id") == MULTI_FILE

        # --- texts (base64 when asked)
        for name in ("source_code", "stdin", "expected_output"):
            value = _cast_string(body.get(name))
            if isinstance(value, _Invalid):
                add(name, value.message)
                continue
            if value is None:
                row[name] = None
                continue
            if encoded:
                try:
                    row[name] = decode_base64(value)
                except ValueError as exc:
                    add(name, str(exc))
            else:
                row[name] = value.encode("utf-8", "surrogatepass")
        if "source_code" not in errors:
            if is_multi_file and not _blank(row.get("source_code")):
                add("source_code", "must be blank")  # its program is the zip's run script
            elif is_multi_file:
                # ("" is kept, and shown back, as Judge0 does; blanks are not run)
                row["source_code"] = b"" if row.get("source_code") == b"" else None
            elif _blank(row.get("source_code")):
                add("source_code", "can't be blank")

        # --- additional files: base64 of a zip, always
        files = _cast_string(body.get("additional_files"))
        # (Judge0 keeps "" as "": shown back as "", not null, with no files.)
        row["additional_files"] = b"" if files == "" else None
        if isinstance(files, _Invalid):
            add("additional_files", files.message)
        elif files:
            if not s.enable_additional_files:
                add("additional_files", "setting additional files is not allowed")
            else:
                try:
                    data = decode_base64(files)
                except ValueError as exc:
                    add("additional_files", str(exc))
                else:
                    problem = self._check_zip(data)
                    if problem:
                        add("additional_files", problem)
                    row["additional_files"] = data
        if is_multi_file and not row["additional_files"] and "additional_files" not in errors:
            add("additional_files", "can't be blank")

        # --- compiler options and program arguments (argv words, never a shell)
        options = _cast_string(body.get("compiler_options"))
        if isinstance(options, _Invalid):
            add("compiler_options", options.message)
            options = None
        if options:
            if not s.enable_compiler_options:
                add("compiler_options", "setting compiler options is not allowed")
            elif runtime is not None and not runtime.is_compiled:
                add("compiler_options", "setting compiler options is only allowed for compiled languages")
            elif runtime is not None and s.allowed_languages_for_compile_options and not runtime.name.startswith(
                tuple(f"{prefix} " for prefix in s.allowed_languages_for_compile_options)
            ):
                # A name followed by a space, as Judge0 matches: "C" is "C (GCC 12.2.0)", not "C++ ...".
                *rest, last = s.allowed_languages_for_compile_options
                allowed = f"{', '.join(rest)} and {last}" if rest else last
                add("compiler_options", f"setting compiler options is only allowed for {allowed}")
            self._check_words("compiler_options", options, add)
        row["compiler_options"] = options  # ("" stays "", as Judge0 shows it back)

        arguments = _cast_string(body.get("command_line_arguments"))
        if isinstance(arguments, _Invalid):
            add("command_line_arguments", arguments.message)
            arguments = None
        if arguments:
            if not s.enable_command_line_arguments:
                add("command_line_arguments", "setting command line arguments is not allowed")
            self._check_words("command_line_arguments", arguments, add)
        row["command_line_arguments"] = arguments

        # --- limits
        for name, (integer, minimum, maximum, default) in self.numbers.items():
            value = _cast_number(body.get(name), integer)
            if isinstance(value, _Invalid):
                add(name, value.message)
                continue
            if value is None:
                value = default
            elif value < minimum:
                add(name, "must be greater than 0" if name in self.positive
                    else f"must be greater than or equal to {_ruby_number(minimum)}")
            elif value > maximum:
                add(name, f"must be less than or equal to {_ruby_number(maximum)}")
            row[name] = value

        # --- switches
        switches = {
            "enable_per_process_and_thread_time_limit": (
                s.enable_per_process_and_thread_time_limit, s.allow_enable_per_process_and_thread_time_limit),
            "enable_per_process_and_thread_memory_limit": (
                s.enable_per_process_and_thread_memory_limit, s.allow_enable_per_process_and_thread_memory_limit),
            "redirect_stderr_to_stdout": (s.redirect_stderr_to_stdout, True),
            "enable_network": (s.enable_network, s.allow_enable_network),
        }
        for name, (default, allowed) in switches.items():
            value = _cast_bool(body.get(name))
            if isinstance(value, _Invalid):
                add(name, value.message)
                continue
            if value is None:
                value = default
            if value and not allowed and value != default:
                add(name, "enabling network is not allowed" if name == "enable_network"
                    else "this option cannot be enabled")
            row[name] = value

        # --- callback (the address check needs DNS and happens in the route)
        url = _cast_string(body.get("callback_url"))
        if isinstance(url, _Invalid):
            add("callback_url", url.message)
            url = None
        if url:
            if not s.enable_callbacks:
                add("callback_url", "setting callback is not allowed")
            elif len(url) > MAX_URL_LENGTH:
                add("callback_url", f"is too long (maximum is {MAX_URL_LENGTH} characters)")
            elif not _is_http_url(url):
                add("callback_url", "is not a valid URL")
        row["callback_url"] = url

        if errors:
            return None, errors
        row.update(
            token=str(uuid.uuid4()),
            status_id=IN_QUEUE,
            created_at=utcnow(),
            callback_pending=False,
        )
        return row, {}

    def _check_words(self, field: str, text: str, add: Any) -> None:
        if len(text) > MAX_ARGUMENTS_LENGTH:
            add(field, f"is too long (maximum is {MAX_ARGUMENTS_LENGTH} characters)")
            return
        # An argv item cannot hold a NUL byte; a newline is harmless in argv but is
        # exactly how Judge0 got shell-injected (CVE-2024-28185), so refuse both.
        if "\x00" in text or "\n" in text or "\r" in text:
            add(field, "must not contain line breaks or null bytes")
            return
        try:  # JSON may carry a lone surrogate ("\ud800"): no program argument can
            text.encode()
        except UnicodeEncodeError:
            add(field, "must be valid Unicode text (it holds a lone surrogate)")
            return
        try:
            split_words(text, field.replace("_", " "))
        except InvalidSubmission as exc:
            add(field, str(exc))

    def _check_zip(self, data: bytes) -> str | None:
        # A first look at what the zip declares, to answer 422 now; the engine
        # enforces the same caps again while it really extracts (sizes can lie).
        limit = self.settings.max_extract_size * 1024
        caps = ArchiveLimits()
        if len(data) > caps.max_zip:
            return f"the zip must be at most {caps.max_zip} bytes"
        if _central_headers(data) > caps.max_entries:
            return f"the zip must hold at most {caps.max_entries} entries"
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
            return "is not a valid zip archive"
        if len(infos) > caps.max_entries:
            return f"the zip must hold at most {caps.max_entries} entries"
        total = sum(info.file_size for info in infos)
        if total > limit:
            return f"unpacked size must be less than or equal to {self.settings.max_extract_size} KB"
        return None


def _central_headers(data: bytes) -> int:
    """How many entries a zip's central directory can hold at most, counted
    at C speed before zipfile reads them one by one in Python, on the event
    loop: ~0.9 s for 200k entries, every time such a body came. (The count is
    of the header's signature in the directory's bytes: an entry's name could
    hold it too, and only make the count higher.)"""
    end = zipfile._EndRecData(io.BytesIO(data))  # (the zipfile module's own reader)
    if not end:
        return 0  # not a zip: zipfile says so
    location, size = end[zipfile._ECD_LOCATION], end[zipfile._ECD_SIZE]
    # (Zip64: the directory ends before its own end record and locator, 76 bytes.)
    return data.count(b"PK\x01\x02", max(0, location - size - 76), location)


def _is_http_url(url: str) -> bool:
    # No URL holds a space or a control character (RFC 3986). urlsplit drops
    # tabs and line breaks without a word, so the URL called was not the one
    # stored, and the one stored, line breaks and terminal escapes included,
    # went as it was into the log of a callback that failed. Nor a lone
    # surrogate ("\ud800" in JSON): no database takes it (a 500).
    if any(char.isspace() or unicodedata.category(char) in ("Cc", "Cs") for char in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
