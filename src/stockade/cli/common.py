"""What the CLI commands share: usage errors and running a coroutine so that
SIGTERM or Ctrl-C cancels it (and the sandbox cleans up) instead of killing us."""

from __future__ import annotations

import asyncio
import io
import os
import select
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn

import typer

from stockade.errors import LimitError
from stockade.sandbox import Limits, parse_size


def usage_error(message: str) -> NoReturn:
    typer.echo(f"stockade: {message}", err=True)
    raise typer.Exit(2)


def sandbox_failure(message: str) -> NoReturn:
    typer.echo(f"stockade: sandbox failure: {message}", err=True)
    raise typer.Exit(1)


class OutputError(Exception):
    """Our own stdout or stderr cannot be written (closed, a full disk, a reader gone)."""


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to our stdout or stderr, also when the caller gave us a
    non-blocking pipe (a node parent does): a lone os.write would keep only
    what fits, 64 KiB, and drop the rest without a word."""
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                select.select([], [fd], [])
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc)) from None


def print_rich(*renderables: Any) -> None:
    """rich renderables (tables, markup lines) on our stdout, one after the
    other. Piped, at full width: rich would fit them to 80 columns and cut what
    does not fit (a long test name, the status saying what is missing); on a
    terminal they wrap. Written with write_all, so a full disk or a reader gone
    is an OutputError (one line, exit 1), and a file name's undecodable bytes go
    out as they came."""
    from rich.console import Console

    # (Rendered into a buffer: rich's own writes to stdout, even a capture's, raise on failure.)
    terminal = sys.stdout.isatty()
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=terminal, width=None if terminal else 1 << 16)
    for renderable in renderables:
        console.print(renderable)
    write_all(1, buffer.getvalue().encode("utf-8", "surrogateescape"))


def read_all(fd: int) -> bytes:
    """Everything on `fd` (our stdin) until EOF, blocking or not."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            select.select([fd], [], [])
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def run_cancellable(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run, with SIGTERM/SIGINT turned into cancellation so every
    `finally` in the supervisor runs; exits 143/130 like a killed shell job."""

    async def main() -> Any:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        received: list[int] = []

        def on_signal(signum: int) -> None:
            received.append(signum)
            task.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            return await coro
        except asyncio.CancelledError:
            if received:
                sys.exit(128 + received[0])
            raise

    return asyncio.run(main())


def read_source(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        usage_error(f"cannot read {str(file)!r}: {exc.strerror}")


def limits_from_options(*, memory: str | None = None, output: str | None = None, **numbers: Any) -> Limits:
    """Limits from CLI options: unset ones keep their defaults, SIZE strings
    are parsed; anything malformed is a usage error (exit 2)."""
    try:
        given = {key: value for key, value in numbers.items() if value is not None}
        for key, size in (("memory", memory), ("output", output)):
            if size is not None:
                given[key] = parse_size(size)
        return Limits(**given)
    except LimitError as exc:
        message = str(exc)
        field = message.split(" ", 1)[0]
        if field in given:  # named as the option that set it: cpu_time -> --cpu-time
            message = "--" + field.replace("_", "-") + message[len(field):]
        usage_error(message)
