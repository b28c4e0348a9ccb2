"""Pure pieces of the service: formats, settings, the callback address check,
the Judge0 <-> engine mapping. No server, no sandbox."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import re
import signal
import time
from typing import Any

import pytest

from stockade.engine.model import SubmissionResult, TestResult, Verdict
from stockade.sandbox.model import MiB, RunResult, Status
from stockade.service.callbacks import RefusedTarget, _pinned, is_internal, resolve_target
from stockade.service.judge0 import adapter
from stockade.service.judge0.format import (
    ALL_FIELDS,
    InvalidFields,
    NotUtf8,
    Pieces,
    decimal,
    decode_base64,
    json_chunks,
    needs_chunks,
    parse_fields,
    ruby_base64,
    serialize,
    timestamp,
)
from stockade.settings import Settings


def test_ruby_base64_matches_ruby_encode64():
    assert ruby_base64(b"") == ""
    assert ruby_base64(b"hi") == "aGk=\n"
    data = bytes(range(256)) * 3
    encoded = ruby_base64(data)
    lines = encoded.split("\n")
    assert encoded.endswith("\n") and all(len(line) == 60 for line in lines[:-2]) and 0 < len(lines[-2]) <= 60
    assert base64.b64decode(encoded.replace("\n", "")) == data


def _chunks(content) -> list[bytes]:
    async def collect():
        return [chunk async for chunk in json_chunks(content)]

    return asyncio.run(collect())


def test_a_long_field_is_written_a_piece_at_a_time_and_reads_back_whole():
    # NULs and quotes grow in JSON, "é" and "😀" are several bytes: 7 MB each field.
    text = "\0\"\\é\n😀" * 700_000
    raw = text.encode()
    row = dict.fromkeys(ALL_FIELDS) | {"token": "t", "stdout": raw, "stdin": raw, "status_id": 3}
    for encoded in (False, True):
        content = serialize(row, ("token", "stdout", "stdin", "status"), encoded=encoded, language_name=str)
        assert isinstance(content["stdout"], Pieces) and needs_chunks(content)
        chunks = _chunks(content)
        # 25 MB (or 19 MB of base64) of JSON, never more than a few hundred KB at a time.
        assert len(chunks) > 20 and max(map(len, chunks)) < 2 << 20
        want = ruby_base64(raw) if encoded else text
        assert json.loads(b"".join(chunks)) == {
            "token": "t", "stdout": want, "stdin": want, "status": {"id": 3, "description": "Accepted"}}
    # Not UTF-8 is known before a byte goes out, however long.
    row["stdout"] = raw + b"\xff"
    with pytest.raises(NotUtf8):
        serialize(row, ("stdout",), encoded=False, language_name=str)


def test_a_long_list_is_written_an_item_at_a_time():
    items = [{"token": str(n), "stdout": "é\0" * n, "time": None} for n in range(300)]
    content = {"submissions": items, "meta": {"total_count": 300}}
    assert needs_chunks(content) and not needs_chunks({"submissions": items[:100]})
    chunks = _chunks(content)
    assert len(chunks) > 1 and json.loads(b"".join(chunks)) == content
    assert b"".join(_chunks({"submissions": []})) == b'{"submissions":[]}'


def test_decode_base64_tolerates_line_breaks_and_padding_only():
    assert decode_base64("aGVs\nbG8=\n") == b"hello"
    assert decode_base64("aGVsbG8") == b"hello"
    with pytest.raises(ValueError):
        decode_base64("a$b")


def test_decimals_and_timestamps():
    assert decimal(5) == "5.0" and decimal(0.001) == "0.001" and decimal(0.0123456) == "0.012"
    assert decimal(0) == "0.0" and decimal(None) is None
    # A limit is written as it was given (Judge0 stores a decimal): not rounded, never 1e-05.
    assert decimal(2.12345, None) == "2.12345" and decimal(5, None) == "5.0" and decimal(0.00001, None) == "0.00001"
    assert timestamp(dt.datetime(2024, 4, 8, 11, 42, 51, 856123)) == "2024-04-08T11:42:51.856Z"


def test_fields():
    assert parse_fields(None)[0] == "token" and parse_fields("*") == ALL_FIELDS and len(ALL_FIELDS) == 35
    assert parse_fields(" stdout , token,stdout") == ("stdout", "token")
    with pytest.raises(InvalidFields, match=r"invalid fields: \[a, b\]"):
        parse_fields("a,stdout,b")
    assert parse_fields(",") == parse_fields("") == parse_fields(None)
    with pytest.raises(InvalidFields, match=r"invalid fields: \[bogus\]"):
        parse_fields("*,bogus")


def test_settings_environment_and_toml(tmp_path, monkeypatch):
    monkeypatch.setenv("STOCKADE_AUTHN_TOKEN", "one two")
    monkeypatch.setenv("STOCKADE_CALLBACK_ALLOWED_NETWORKS", "127.0.0.1/32, 10.0.0.0/8")
    config = tmp_path / "stockade.toml"
    config.write_text('port = 9000\nmax_cpu_time_limit = 30.0\nauthz_token = ["x"]\n')
    settings = Settings.load(config)
    assert settings.port == 9000 and settings.max_cpu_time_limit == 30.0
    assert settings.authn_tokens == ["one", "two"] and settings.authz_tokens == ["x"]
    assert ipaddress.ip_address("10.1.1.1") in settings.callback_networks[1]
    assert Settings.load().port == 2358
    with pytest.raises(ValueError):
        Settings.load(cpu_time_limit=20)  # above its maximum
    with pytest.raises(FileNotFoundError):
        Settings.load(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="cannot be turned on yet"):
        Settings.load(allow_enable_network=True)


def test_a_blank_token_in_the_toml_file_stops_the_start(tmp_path):
    """authn_token = [""] (a template's unset variable) made an empty
    X-Auth-Token header a valid token, and authz_token = [""] let anyone list
    and delete submissions with ?X-Auth-User= ."""
    config = tmp_path / "stockade.toml"
    for line in ('authn_token = [""]', 'authz_token = ["admin", " "]'):
        config.write_text(line + "\n")
        with pytest.raises(ValueError, match="a token cannot be blank"):
            Settings.load(config)
    config.write_text('authn_token = " "\n')  # (a string: words, here none, so no authentication, as documented)
    assert Settings.load(config).authn_tokens == []


def test_an_empty_token_variable_does_not_drop_the_files_tokens(tmp_path, monkeypatch):
    """STOCKADE_AUTHN_TOKEN= (a unit's unset variable) beside a file that sets
    tokens overrode them with none: authentication off, without a word."""
    config = tmp_path / "stockade.toml"
    config.write_text('authn_token = ["secret-1"]\nauthz_token = "admin-1"\n')
    for variable in ("STOCKADE_AUTHN_TOKEN", "STOCKADE_AUTHZ_TOKEN"):
        field = variable.removeprefix("STOCKADE_").lower()
        with monkeypatch.context() as env:
            env.setenv(variable, " ")
            with pytest.raises(ValueError) as raised:
                Settings.load(config)
            assert str(raised.value) == (f"{field} ({variable}): empty, which would drop the tokens that {field}"
                                         f" in {config} sets: unset the variable, or give the tokens in it")
            env.setenv(variable, "other")  # a variable that gives tokens still overrides the file's
            assert getattr(Settings.load(config), field) == ["other"]
    monkeypatch.setenv("STOCKADE_AUTHN_TOKEN", "")
    config.write_text("port = 9000\n")  # no tokens in the file: empty is none, as documented
    assert Settings.load(config).authn_tokens == []


def test_listening_beyond_loopback_without_authentication_is_warned_of():
    """STOCKADE_HOST=0.0.0.0 and no token: an open code runner, and the log
    said nothing (operations.md asks for STOCKADE_AUTHN_TOKEN first)."""
    from stockade.service.serve import open_without_authentication

    for host in ("0.0.0.0", "::", "192.0.2.7", "judge.example.org"):
        assert open_without_authentication(Settings.load(host=host)) == (
            f"authentication is off (no STOCKADE_AUTHN_TOKEN) and the API listens on {host}, not only on"
            " loopback: anyone who reaches the port may run code here")
        assert open_without_authentication(Settings.load(host=host, authn_token="secret")) is None
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert open_without_authentication(Settings.load(host=host)) is None


def test_settings_workers_and_warm_boxes(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert Settings.load().workers == 6  # two per core: a box is partly I/O-bound setup
    assert Settings.load(workers=5).warm_box_count == 5  # one warm box per worker...
    assert Settings.load(workers=40, box_slots=32).warm_box_count == 16  # ...at most half the slots
    assert Settings.load(warm_boxes=0).warm_box_count == 0
    with pytest.raises(ValueError, match="exceeds half of box_slots"):
        Settings.load(warm_boxes=5, box_slots=8)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.100.100.200",
    "192.0.0.192", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::",
])
def test_internal_addresses(address):
    assert is_internal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses(address):
    assert not is_internal(ipaddress.ip_address(address))


def test_resolve_target_checks_every_address():
    # IP literals only: no name is ever looked up in this test.
    with pytest.raises(RefusedTarget, match="internal address"):
        asyncio.run(resolve_target("http://127.0.0.1:8080/x", []))
    allowed = [ipaddress.ip_network("127.0.0.0/8")]
    assert asyncio.run(resolve_target("http://127.0.0.1:8080/x", allowed)) == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(RefusedTarget, match="not a valid URL"):
        asyncio.run(resolve_target("gopher://127.0.0.1/", allowed))


def test_a_refused_callback_name_does_not_say_its_internal_address():
    """The 422 named the address a refused host name resolved to: with the
    server's resolver, a client learnt the internal address of every internal
    name it tried (db.internal: 10.0.3.7). An address given as such is shown."""
    # localhost: from /etc/hosts, no name server asked.
    with pytest.raises(RefusedTarget) as refused:
        asyncio.run(resolve_target("http://localhost:8080/x", []))
    assert str(refused.value) == "points to an internal address, which is not allowed"
    with pytest.raises(RefusedTarget, match=r"^points to an internal address \(10\.0\.3\.7\), which"):
        asyncio.run(resolve_target("http://10.0.3.7/x", []))


class _Delivered:
    """The store's side of callbacks: the tokens marked delivered."""

    def __init__(self) -> None:
        self.done: list[str] = []

    async def callback_done(self, token: str) -> None:
        self.done.append(token)


def _callbacks(store: _Delivered, tries: int, timeout: float):
    from stockade.service.callbacks import Callbacks

    async def render(row):
        return json.dumps({"token": row["token"]}).encode()

    return Callbacks(store, render, tries=tries, timeout=timeout,
                     allowed=[ipaddress.ip_network("127.0.0.1/32")])


class _Pending(_Delivered):
    """A store holding `tokens` with their callback still to deliver to `url`."""

    def __init__(self, tokens: list[str], url: str) -> None:
        super().__init__()
        self.tokens, self.url = tokens, url

    async def pending_callbacks(self) -> list[str]:
        return list(self.tokens)

    async def get(self, token: str) -> dict:
        return {"token": token, "callback_url": self.url, "callback_pending": token not in self.done}


def test_callbacks_left_pending_are_resumed_a_few_at_a_time():
    # After a crash with thousands pending, every row was read and every
    # delivery started at once: all their outputs in memory, a connection each.
    from stockade.service.callbacks import RESUMED_AT_ONCE

    count = RESUMED_AT_ONCE * 2 + 5

    async def main():
        active = most = 0
        received: list[str] = []
        release = asyncio.Event()

        async def target(reader, writer):
            nonlocal active, most
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            received.append(json.loads(await reader.readexactly(length))["token"])
            active += 1
            most = max(most, active)
            if active == RESUMED_AT_ONCE and not release.is_set():
                await asyncio.sleep(0.3)  # (room for more to arrive, were they not held back)
                release.set()
            await release.wait()
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            writer.close()
            active -= 1

        server = await asyncio.start_server(target, "127.0.0.1", 0)
        store = _Pending([f"t-{i}" for i in range(count)], f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
        callbacks = _callbacks(store, tries=1, timeout=10)
        try:
            await callbacks.resume()  # (returns at once: the deliveries go on in the background)
            await asyncio.wait_for(asyncio.gather(*list(callbacks._tasks)), 30)
        finally:
            await callbacks.close()
            server.close()
        return most, received, store.done

    most, received, done = asyncio.run(main())
    assert most == RESUMED_AT_ONCE
    assert sorted(received) == sorted(done) == sorted(f"t-{i}" for i in range(count))


async def _deliver_one(url: str, tries: int, timeout: float) -> list[str]:
    """One callback (token t-1) to `url`, to its end; the tokens marked delivered."""
    store = _Delivered()
    callbacks = _callbacks(store, tries, timeout)
    callbacks.schedule({"token": "t-1", "callback_url": url})
    try:
        await asyncio.wait_for(asyncio.gather(*callbacks._tasks), 30)  # (a bound, not to hang)
    finally:
        await callbacks.close()
    return store.done


@contextlib.contextmanager
def _endless_target(head: bytes, chunk: bytes, pause: float = 0.0):
    """A callback target on loopback that answers `head` to each connection,
    then sends `chunk` again and again (every `pause` s) until the test is
    done with it. Yields (url, tries: one item per connection)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    tries: list[int] = []

    def answer(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            with contextlib.suppress(OSError):  # (the client gave up)
                connection.sendall(head)
                while not stop.is_set():
                    connection.sendall(chunk)
                    stop.wait(pause)

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            tries.append(1)
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook", tries
    finally:
        stop.set()
        listener.close()


class _FullDelivered(_Delivered):
    """A store that cannot record a delivery (its disk is full)."""

    async def callback_done(self, token: str) -> None:
        raise OSError("database or disk is full")


class _WordlessDelivered(_Delivered):
    """A store that fails to record a delivery with an error that has no text."""

    async def callback_done(self, token: str) -> None:
        raise TimeoutError()


@pytest.mark.parametrize(("store", "said"), [
    (_FullDelivered, "database or disk is full"),
    # (Its first line was taken with splitlines()[0]: an IndexError out of the task.)
    (_WordlessDelivered, "TimeoutError"),
])
def test_a_delivery_the_store_cannot_record_is_logged_not_raised(caplog, store, said):
    """The callback is sent; recording that fails (a full disk). The task ended
    with the exception, logged at the end of the process as "Task exception was
    never retrieved" with a traceback; now one line says what happens next."""

    async def scenario() -> None:
        callbacks = _callbacks(store(), tries=1, timeout=5)
        callbacks.schedule({"token": "t-1", "callback_url": "http://10.0.3.7/x"})  # refused: then recorded
        [task] = list(callbacks._tasks)
        await asyncio.wait_for(task, 30)
        assert task.exception() is None
        await callbacks.close()

    asyncio.run(scenario())
    assert f"callback for t-1 ended, but could not be recorded (sent again at the next start): {said}" in caplog.text


def test_slow_callback_lookups_leave_the_loops_own_threads_free(monkeypatch):
    """A callback URL's host is looked up with getaddrinfo, which holds a thread
    as long as that name's DNS servers (the client's to choose) take. On the
    loop's default executor, a few dozen such URLs left no thread for the
    compile cache (asyncio.to_thread): every compiled run waited on them."""
    import socket
    import threading
    import time

    real = socket.getaddrinfo
    answer = threading.Event()

    def getaddrinfo(host, *args, **kwargs):
        if host == "slow.invalid":  # (no name is ever looked up in this test)
            answer.wait(10)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    async def main() -> float:
        lookups = [asyncio.ensure_future(resolve_target("http://slow.invalid/", [])) for _ in range(64)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.to_thread(time.sleep, 0), 2)
            waited = time.monotonic() - started
        except TimeoutError:
            waited = float("inf")
        finally:
            answer.set()
        for outcome in await asyncio.gather(*lookups, return_exceptions=True):
            assert isinstance(outcome, RefusedTarget) and "cannot be resolved" in str(outcome)
        return waited

    assert asyncio.run(main()) < 1


def test_pinned_request_keeps_host_and_tls_name():
    url, headers, extensions = _pinned("https://hooks.example.com:8443/a?b=1", ipaddress.ip_address("93.184.216.34"))
    assert url == "https://93.184.216.34:8443/a?b=1"
    assert headers == {"Host": "hooks.example.com:8443"} and extensions == {"sni_hostname": "hooks.example.com"}


def test_a_callback_to_an_international_name_is_delivered(monkeypatch):
    """A host name that is not ASCII resolved and was accepted, but went as
    it was into the Host header, which httpx refuses (UnicodeEncodeError): the
    delivery task died before callback_done, so the callback was never made,
    stayed pending, and was tried, and failed, at every start."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    heads: list[bytes] = []

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            heads.append(connection.recv(65536))
            connection.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "bücher.test":  # (no name server is asked)
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        assert asyncio.run(_deliver_one(f"http://bücher.test:{port}/cb", tries=1, timeout=5)) == ["t-1"]
    finally:
        listener.close()
    assert f"host: xn--bcher-kva.test:{port}".encode() in heads[0].lower(), heads


def _row(**changes):
    row = {"token": "t", "cpu_time_limit": 2.0, "cpu_extra_time": 0.5, "wall_time_limit": 5.0,
           "memory_limit": 128000, "stack_limit": 64000, "max_processes_and_or_threads": 60,
           "max_file_size": 1024, "callback_url": None,
           "enable_per_process_and_thread_time_limit": False, "enable_per_process_and_thread_memory_limit": False}
    row.update(changes)
    return row


def test_limits_map_judge0_units_to_the_box():
    limits = adapter.limits_of(_row(), Settings.load())
    assert limits.cpu_time == 2.5 and limits.wall_time == 5.0
    assert limits.memory == 128000 * 1024 and limits.stack == 64000 * 1024
    assert limits.processes == 60 and limits.file_size == limits.output == 1024 * 1024
    assert not limits.per_process_time and not limits.per_process_memory
    each = adapter.limits_of(_row(enable_per_process_and_thread_time_limit=True,
                                  enable_per_process_and_thread_memory_limit=True), Settings.load())
    assert each.per_process_time and each.per_process_memory
    zero = adapter.limits_of(_row(cpu_time_limit=0, stack_limit=0, max_file_size=0, memory_limit=2048), Settings.load())
    assert zero.cpu_time == 20.0 and zero.memory == 4 * MiB and zero.stack == zero.memory and zero.file_size == 4096 * 1024
    # 0 is the server's maximum, never more: with a large memory limit, the stack is max_stack_limit.
    roomy = adapter.limits_of(_row(stack_limit=0, memory_limit=512000), Settings.load())
    assert roomy.stack == Settings.load().max_stack_limit * 1024
    # An operator's file size past what the supervisor holds of each output: the
    # files may be that large, the output is held to 1 GiB.
    huge = adapter.limits_of(_row(max_file_size=3 * 1024 * 1024), Settings.load(max_max_file_size=4 * 1024 * 1024))
    assert huge.file_size == 3 * 1024 * MiB and huge.output == 1024 * MiB


def _result(verdict, **run):
    return SubmissionResult(verdict=verdict, tests=(TestResult(verdict, RunResult(Status.ok, **run)),))


@pytest.mark.parametrize(("verdict", "run", "status", "message"), [
    (Verdict.accepted, {"exit_code": 0, "time": 0.1}, 3, None),
    (Verdict.ok, {"exit_code": 0}, 3, None),
    (Verdict.wrong_answer, {"exit_code": 0}, 4, None),
    (Verdict.time_limit, {"signal": 9, "time": 2.5}, 5, b"Time limit exceeded"),
    (Verdict.wall_time_limit, {"signal": 9}, 5, b"Time limit exceeded (wall clock)"),
    (Verdict.accepted, {"exit_code": 0, "time": 2.2}, 5, b"Time limit exceeded"),  # in the extra time
    (Verdict.runtime_error, {"signal": signal.SIGSEGV}, 7, b"Caught fatal signal 11"),  # isolate's words
    (Verdict.runtime_error, {"signal": signal.SIGXFSZ}, 8, b"Caught fatal signal 25"),
    (Verdict.runtime_error, {"signal": signal.SIGFPE}, 9, b"Caught fatal signal 8"),
    (Verdict.runtime_error, {"signal": signal.SIGABRT}, 10, b"Caught fatal signal 6"),
    (Verdict.runtime_error, {"signal": signal.SIGKILL}, 12, b"Caught fatal signal 9"),
    (Verdict.runtime_error, {"exit_code": 1}, 11, b"Exited with error status 1"),
    (Verdict.memory_limit, {"signal": signal.SIGKILL}, 12, b"Memory limit exceeded"),
    (Verdict.memory_limit, {"exit_code": 1}, 11, b"Memory limit exceeded"),
    (Verdict.output_limit, {"signal": signal.SIGKILL}, 8, b"Output limit exceeded"),
    (Verdict.sandbox_error, {}, 13, b"Internal Error"),
])
def test_status_mapping(verdict, run, status, message):
    values = adapter.result_columns(_row(), _result(verdict, **run))
    assert values["status_id"] == status
    assert values["message"] == message  # None where Judge0 leaves it null (a run that ended normally)


@pytest.mark.parametrize("run", [{"signal": signal.SIGKILL}, {"exit_code": 0}, {"exit_code": 3}],
                         ids=["killed", "ended", "failed"])
def test_an_output_limit_is_sigxfsz_in_exit_signal_too(run):
    """Judge0's program past max_file_size dies of SIGXFSZ: status 8 came with
    exit_signal 9 (the box killed) or null (the program had ended)."""
    values = adapter.result_columns(_row(), _result(Verdict.output_limit, **run))
    assert (values["status_id"], values["exit_signal"], values["exit_code"]) == (8, signal.SIGXFSZ, 0)


@pytest.mark.parametrize(("compile_run", "message", "expected"), [
    # Warnings, then a limit: the reason follows the compiler's words (out of
    # time, Judge0's words in their place).
    (RunResult(Status.time_limit, signal=9), "compilation time limit exceeded",
     b"Compilation time limit exceeded."),
    (RunResult(Status.memory_limit, signal=9), "compilation memory limit exceeded",
     b"main.cpp:1: warning: unused\ncompilation memory limit exceeded\n"),
    (RunResult(Status.ok, exit_code=0), "the compiler produced no program",
     b"main.cpp:1: warning: unused\nthe compiler produced no program\n"),
    # The compiler's own failure: its output is the reason, as in Judge0.
    (RunResult(Status.runtime_error, exit_code=1), "compilation failed (exit code 1)",
     b"main.cpp:1: warning: unused\n"),
])
def test_a_compile_stopped_by_a_limit_says_so_after_the_compilers_output(compile_run, message, expected):
    values = adapter.result_columns(_row(), SubmissionResult(
        verdict=Verdict.compile_error, compile_output=b"main.cpp:1: warning: unused\n",
        compile_run=compile_run, message=message))
    assert values["status_id"] == 6 and values["message"] is None
    assert values["compile_output"] == expected


def test_compile_error_and_engine_failure_columns():
    values = adapter.result_columns(_row(callback_url="http://x/"), SubmissionResult(
        verdict=Verdict.compile_error, compile_output=b"main.c: error"))
    assert values["status_id"] == 6 and values["compile_output"] == b"main.c: error" and values["message"] is None
    silent = adapter.result_columns(_row(), SubmissionResult(
        verdict=Verdict.compile_error, compile_output=b"", message="compilation timed out"))
    assert silent["compile_output"] == b"compilation timed out" and silent["message"] is None
    # A compiler out of time: Judge0's words, in place of whatever it printed.
    for status in (Status.time_limit, Status.wall_time_limit):
        slow = adapter.result_columns(_row(), SubmissionResult(
            verdict=Verdict.compile_error, compile_output=b"partial", compile_run=RunResult(status, signal=9)))
        assert slow["compile_output"] == b"Compilation time limit exceeded." and slow["status_id"] == 6
    assert values["stdout"] is None and values["time"] is None and values["callback_pending"] is True
    failed = adapter.error_columns(_row(), RuntimeError("boom"))
    assert failed["status_id"] == 13 and b"boom" in failed["message"]


def test_serve_command_refuses_bad_settings_cleanly():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "stockade.cli", "serve", "--port", "99999"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    # Named as the user gave it: the flag, not a variable that was never set.
    assert result.stderr == ("stockade: invalid settings: port (--port): Input should be less than or equal to"
                             " 65535, got 99999\n")
    # An empty --data-dir was the current directory: the database landed wherever serve was started.
    result = subprocess.run([sys.executable, "-m", "stockade.cli", "serve", "--data-dir", ""],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr == ("stockade: invalid settings: data_dir (--data-dir): cannot be"
                                                        " empty (give . for the current directory), got ''\n")


def _stored_row(token: str) -> dict:
    from stockade.service.store import IN_QUEUE, utcnow

    return {"token": token, "language_id": 71, "source_code": b"x", "stdin": None, "expected_output": None,
            "status_id": IN_QUEUE, "created_at": utcnow(), "number_of_runs": 1, "cpu_time_limit": 5.0,
            "cpu_extra_time": 1.0, "wall_time_limit": 10.0, "memory_limit": 128000, "stack_limit": 64000,
            "max_processes_and_or_threads": 60, "enable_per_process_and_thread_time_limit": False,
            "enable_per_process_and_thread_memory_limit": False, "max_file_size": 1024,
            "compiler_options": None, "command_line_arguments": None, "redirect_stderr_to_stdout": False,
            "callback_url": None, "additional_files": None, "enable_network": False, "callback_pending": False}


def test_dispatcher_waits_without_polling_and_outlives_a_cancelled_waiter(tmp_path):
    from stockade.service.dispatch import Dispatcher, QueueFull
    from stockade.service.store import Store

    async def scenario() -> None:
        store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.migrate()
        release = asyncio.Event()
        finished: list[str] = []

        async def execute(row):
            await release.wait()
            return {"status_id": 3, "stdout": row["token"].encode()}

        dispatcher = Dispatcher(store, execute, adapter.error_columns, workers=1, max_queue_size=2,
                                on_finished=lambda row: finished.append(row["token"]))
        await dispatcher.start()
        [first] = await dispatcher.submit([_stored_row("a")], wait=True)
        while not dispatcher.is_processing("a"):
            await asyncio.sleep(0.01)
        # The queue holds what waits for a worker: "a" runs, "b" and "c" wait.
        [second] = await dispatcher.submit([_stored_row("b")], wait=True)
        await dispatcher.submit([_stored_row("c")])
        with pytest.raises(QueueFull):
            await dispatcher.submit([_stored_row("d")])
        second.cancel()  # a client went away: its run must still complete
        release.set()
        assert (await first)["stdout"] == b"a"
        while len(finished) < 3:
            await asyncio.sleep(0.01)
        assert (await store.get("b"))["status_id"] == 3 and dispatcher.pending == 0
        # A result is written once: a second finish of the same row is refused.
        assert not await store.finish("a", {"status_id": 4})
        await dispatcher.stop()
        store.close()

    asyncio.run(scenario())


def test_dispatcher_recovers_unfinished_rows_on_start(tmp_path):
    from stockade.service.dispatch import Dispatcher
    from stockade.service.store import Store

    async def scenario() -> None:
        store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.migrate()
        await store.insert([_stored_row("left-behind"), {**_stored_row("done"), "status_id": 3}])
        ran: list[str] = []

        async def execute(row):
            ran.append(row["token"])
            return {"status_id": 3}

        dispatcher = Dispatcher(store, execute, adapter.error_columns, workers=2, max_queue_size=10)
        assert await dispatcher.start() == 1
        while not ran or dispatcher.pending:
            await asyncio.sleep(0.01)
        assert ran == ["left-behind"]
        await dispatcher.stop()
        store.close()

    asyncio.run(scenario())


class _SlowStore:
    """A store whose inserts wait for `commit` (or fail), recording the order of writes."""

    def __init__(self, fail: bool = False):
        self.commit = asyncio.Event()
        self.fail = fail
        self.writes: list[tuple[str, str]] = []

    async def insert(self, rows):
        await self.commit.wait()
        if self.fail:
            raise OSError("disk full")
        self.writes += [("insert", row["token"]) for row in rows]

    async def finish(self, token, values):
        self.writes.append(("finish", token))
        return True

    async def started(self, token):
        pass

    async def unfinished(self, max_attempts):
        return []

    async def interrupted(self, max_attempts):
        return []


def test_dispatcher_stores_a_result_only_after_its_row_is_committed():
    from stockade.service.dispatch import Dispatcher

    async def scenario() -> None:
        store = _SlowStore()
        started = asyncio.Event()

        async def execute(row):
            started.set()
            return {"status_id": 3}

        dispatcher = Dispatcher(store, execute, adapter.error_columns, workers=1, max_queue_size=5)
        await dispatcher.start()
        submitting = asyncio.ensure_future(dispatcher.submit([_stored_row("a")], wait=True))
        await started.wait()  # the run does not wait for the commit...
        await asyncio.sleep(0.01)
        assert not submitting.done() and store.writes == []  # ...but the answer and the result do
        store.commit.set()
        [result] = await submitting
        assert (await result)["status_id"] == 3
        assert store.writes == [("insert", "a"), ("finish", "a")]
        await dispatcher.stop()

    asyncio.run(scenario())



class _SlowFinishStore(_SlowStore):
    """Inserts at once; each result's commit waits for `finish_gate` (a slow fsync)."""

    def __init__(self):
        super().__init__()
        self.commit.set()
        self.finish_gate = asyncio.Event()

    async def finish(self, token, values):
        await self.finish_gate.wait()
        return await super().finish(token, values)


def test_dispatcher_runs_on_while_a_result_waits_for_its_commit():
    from stockade.service.dispatch import Dispatcher

    async def scenario() -> None:
        store = _SlowFinishStore()
        ran: list[str] = []

        async def execute(row):
            ran.append(row["token"])
            return {"status_id": 3}

        dispatcher = Dispatcher(store, execute, adapter.error_columns, workers=1, max_queue_size=5)
        await dispatcher.start()
        futures = await dispatcher.submit([_stored_row("a"), _stored_row("b")], wait=True)
        await asyncio.sleep(0.05)
        # One worker, and "a"'s result is not committed yet: "b" has run all the same...
        assert ran == ["a", "b"] and dispatcher.busy == 0
        # ...but nothing is answered before its own commit, and both still count as processing.
        assert not any(f.done() for f in futures) and store.writes == [("insert", "a"), ("insert", "b")]
        assert dispatcher.is_processing("a") and dispatcher.is_processing("b") and dispatcher.pending == 2
        store.finish_gate.set()
        results = await asyncio.gather(*futures)
        assert [r["token"] for r in results] == ["a", "b"] and [r["status_id"] for r in results] == [3, 3]
        assert store.writes[2:] == [("finish", "a"), ("finish", "b")] and dispatcher.pending == 0
        assert not dispatcher.is_processing("a") and not dispatcher.is_processing("b")
        await dispatcher.stop()

    asyncio.run(scenario())

def test_dispatcher_forgets_a_submission_whose_insert_failed():
    from stockade.service.dispatch import Dispatcher

    async def scenario() -> None:
        store = _SlowStore(fail=True)
        ran: list[str] = []
        finished: list[str] = []

        async def execute(row):
            ran.append(row["token"])
            return {"status_id": 3}

        dispatcher = Dispatcher(store, execute, adapter.error_columns, workers=1, max_queue_size=5,
                                on_finished=lambda row: finished.append(row["token"]))
        await dispatcher.start()
        submitting = asyncio.ensure_future(dispatcher.submit([_stored_row("a"), _stored_row("b")], wait=True))
        await asyncio.sleep(0.01)
        store.commit.set()
        with pytest.raises(OSError, match="disk full"):
            await submitting
        await asyncio.sleep(0.01)
        assert store.writes == [] and finished == [] and dispatcher.pending == 0
        # Both started before the failure (a worker goes on while a result waits
        # for its commit); neither result was stored or answered.
        assert ran == ["a", "b"]
        await dispatcher.stop()

    asyncio.run(scenario())


def _accepting() -> tuple[list[str], Any]:
    """An engine for the dispatcher that accepts every submission; the tokens it ran."""
    ran: list[str] = []

    async def execute(row):
        ran.append(row["token"])
        return {"status_id": 3}

    return ran, execute


async def _drained(dispatcher) -> None:
    """Until nothing is left to run or store (10 s at most: a bound, not to hang)."""
    deadline = time.monotonic() + 10
    while dispatcher.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def _recovered(store) -> tuple[list[str], Any]:
    """A one-worker dispatcher started on `store`, which holds one submission
    to run again, until nothing is left: the tokens it ran, and the dispatcher."""
    from stockade.service.dispatch import Dispatcher

    ran, execute = _accepting()
    dispatcher = Dispatcher(store, execute, adapter.error_columns, workers=1, max_queue_size=5)
    assert await dispatcher.start() == 1
    await _drained(dispatcher)
    return ran, dispatcher


class _FullDiskStore(_SlowStore):
    """Inserts at once; the first `failures` results fail to commit (a full disk)."""

    def __init__(self, failures: int):
        super().__init__()
        self.commit.set()
        self.failures = failures

    async def finish(self, token, values):
        if self.failures:
            self.failures -= 1
            raise OSError("database or disk is full")
        return await super().finish(token, values)


def test_dispatcher_stores_a_result_whose_commit_failed_once_the_store_recovers(monkeypatch):
    """A result that could not be committed (the disk was full) is committed
    when space comes back, once: it was dropped, and its row stayed In Queue,
    counted against the queue's size, until a restart ran it again."""
    from stockade.service import dispatch
    from stockade.service.dispatch import Dispatcher

    monkeypatch.setattr(dispatch, "_RETRY_FIRST", 0.01)
    monkeypatch.setattr(dispatch, "_RETRY_LAST", 0.02)

    async def scenario() -> None:
        store = _FullDiskStore(failures=3)
        ran, execute = _accepting()
        finished: list[str] = []
        dispatcher = Dispatcher(store, execute, adapter.error_columns, workers=1, max_queue_size=5,
                                on_finished=lambda row: finished.append(row["token"]))
        await dispatcher.start()
        [waiting] = await dispatcher.submit([_stored_row("a")], wait=True)
        with pytest.raises(OSError, match="disk is full"):  # the waiting request is told at once
            await waiting
        await _drained(dispatcher)
        assert dispatcher.pending == 0 and not dispatcher.is_processing("a")
        assert ran == ["a"] and finished == ["a"] and store.writes == [("insert", "a"), ("finish", "a")]
        await dispatcher.stop()

    asyncio.run(scenario())


class _UnreadableStore(_FullDiskStore):
    """One submission left unfinished by a previous run, whose row cannot be read at first."""

    def __init__(self):
        super().__init__(failures=0)
        self.unreadable = 2

    async def unfinished(self, max_attempts):
        return ["left-behind"]

    async def get(self, token):
        if self.unreadable:
            self.unreadable -= 1
            raise OSError("unable to open database file")
        return _stored_row(token)


def test_dispatcher_reads_a_recovered_row_again_when_the_store_failed_to(monkeypatch):
    """A recovered submission whose row could not be read is queued again: it
    stayed unfinished, counted against the queue's size, until a restart."""
    from stockade.service import dispatch

    monkeypatch.setattr(dispatch, "_RETRY_LAST", 0.01)

    async def scenario() -> None:
        store = _UnreadableStore()
        ran, dispatcher = await _recovered(store)
        assert ran == ["left-behind"] and store.writes == [("finish", "left-behind")] and dispatcher.pending == 0
        await dispatcher.stop()

    asyncio.run(scenario())


class _InterruptedOnAFullDisk(_UnreadableStore):
    """At start: one submission whose runs were all cut short, which cannot be
    finished (the disk is full), and one to run again."""

    def __init__(self):
        super().__init__()
        self.unreadable = 0
        self.failures = 1

    async def interrupted(self, max_attempts):
        return [{**_stored_row("doomed"), "attempts": max_attempts}]


def test_dispatcher_starts_when_it_cannot_finish_an_interrupted_submission(caplog):
    """Finishing a submission whose runs were all cut short is a write at
    start: on a full disk it ended the start (the lifespan's exception, a
    traceback and no server). It is left for the next start instead, and not run."""

    async def scenario() -> None:
        store = _InterruptedOnAFullDisk()
        ran, dispatcher = await _recovered(store)
        assert ran == ["left-behind"] and store.writes == [("finish", "left-behind")]
        await dispatcher.stop()

    asyncio.run(scenario())
    assert "submission doomed not run again, but not finished either (tried again at the next start):" \
        " database or disk is full" in caplog.text


def test_dispatcher_stopping_gives_up_a_result_it_cannot_store(monkeypatch):
    """Stopping does not wait for a store that keeps failing (not even the
    grace it gives results being committed): the row stays unfinished, and
    runs again at the next start."""
    from stockade.service import dispatch
    from stockade.service.dispatch import Dispatcher

    monkeypatch.setattr(dispatch, "_STORE_GRACE", 3600.0)

    async def scenario() -> None:
        store = _FullDiskStore(failures=10**6)

        async def execute(row):
            return {"status_id": 3}

        dispatcher = Dispatcher(store, execute, adapter.error_columns, workers=1, max_queue_size=5)
        await dispatcher.start()
        await dispatcher.submit([_stored_row("a")])
        while store.failures == 10**6:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(dispatcher.stop(), 60)
        assert store.writes == [("insert", "a")]

    asyncio.run(scenario())


def test_store_group_commits_concurrent_writes_and_fails_only_the_bad_one(tmp_path):
    import threading

    from sqlalchemy import event
    from sqlalchemy.exc import IntegrityError

    from stockade.service.store import Store

    async def scenario() -> None:
        store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.migrate()
        await store.insert([_stored_row("taken")])
        commits: list[int] = []
        event.listen(store.engine, "commit", lambda _connection: commits.append(1))
        # Hold the store's one thread, so that every write below is waiting at once.
        gate = threading.Event()
        blocked = asyncio.get_running_loop().run_in_executor(store._executor, gate.wait)
        writes = [asyncio.ensure_future(store.insert([_stored_row(f"t{i}")])) for i in range(10)]
        writes.append(asyncio.ensure_future(store.insert([_stored_row("taken")])))  # a duplicate token
        writes.append(asyncio.ensure_future(store.finish("taken", {"status_id": 3})))
        await asyncio.sleep(0.01)
        gate.set()
        await blocked
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert isinstance(outcomes[10], IntegrityError)
        assert outcomes[:10] == [None] * 10 and outcomes[11] is True
        assert len(await store.get_many([f"t{i}" for i in range(10)])) == 10
        assert (await store.get("taken"))["status_id"] == 3
        # One shared transaction failed on the duplicate; then one each.
        assert len(commits) == 11

        commits.clear()
        gate.clear()
        blocked = asyncio.get_running_loop().run_in_executor(store._executor, gate.wait)
        writes = [asyncio.ensure_future(store.finish(f"t{i}", {"status_id": 3})) for i in range(10)]
        await asyncio.sleep(0.01)
        gate.set()
        await blocked
        assert await asyncio.gather(*writes) == [True] * 10
        assert len(commits) == 1  # ten results, one commit
        store.close()

    asyncio.run(scenario())


def test_a_commit_that_fails_fails_its_writes_and_only_theirs(tmp_path):
    """A disk that fills up fails the commit, not the statements before it: each
    write that shared that commit must fail, and be told so. A failed commit was
    recorded as a success and then as a failure, so every later write of the
    batch got its neighbour's outcome: a 201 for a row that was never stored."""
    import threading

    from sqlalchemy import event

    from stockade.service.store import Store

    async def scenario() -> None:
        store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.migrate()
        # The shared commit fails, then, of the five commits of one write each
        # that follow it, those of t1 and t3 (the disk is full).
        commits: list[int] = []

        def commit(_connection) -> None:
            commits.append(1)
            if len(commits) in (1, 3, 5):
                raise OSError("database or disk is full")

        event.listen(store.engine, "commit", commit)
        gate = threading.Event()
        blocked = asyncio.get_running_loop().run_in_executor(store._executor, gate.wait)
        writes = [asyncio.ensure_future(store.insert([_stored_row(f"t{i}")])) for i in range(5)]
        await asyncio.sleep(0.01)
        gate.set()
        await blocked
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        failed = {f"t{i}" for i, outcome in enumerate(outcomes) if isinstance(outcome, Exception)}
        assert failed == {"t1", "t3"} and [outcomes[i] for i in (0, 2, 4)] == [None] * 3
        assert set(await store.get_many([f"t{i}" for i in range(5)])) == {"t0", "t2", "t4"}
        store.close()

    asyncio.run(scenario())


def test_cors_origins_as_judge0_reads_allow_and_disallow_origin(monkeypatch):
    import re

    from stockade.service.gate import cors_origins

    assert cors_origins([], []) == (["*"], None)
    assert cors_origins(["https://a.example", "https://b.example"], []) == (["https://a.example", "https://b.example"], None)
    origins, regex = cors_origins([], ["evil.example", "bad.example"])
    assert origins == []
    assert re.fullmatch(regex, "https://ok.example") and re.fullmatch(regex, "https://evilXexample")
    assert not re.fullmatch(regex, "https://evil.example") and not re.fullmatch(regex, "http://bad.example:8080")
    # Both set: the listed origins, or any without a refused string; a string
    # in both lists is not refused.
    origins, regex = cors_origins(["https://a.evil.example"], ["https://a.evil.example", "evil.example"])
    assert origins == ["https://a.evil.example"] and regex == "^(?:(?!evil\\.example).)*$"
    monkeypatch.setenv("STOCKADE_ALLOW_ORIGIN", "https://a.example https://b.example")
    monkeypatch.setenv("STOCKADE_DISALLOW_ORIGIN", "evil.example")
    settings = Settings.load()
    assert settings.allow_origin == ["https://a.example", "https://b.example"] and settings.disallow_origin == ["evil.example"]


def _parse(body, **settings):
    from stockade.runtimes import Catalog
    from stockade.service.judge0.languages import Languages
    from stockade.service.judge0.request import SubmissionParser

    parser = SubmissionParser(Settings.load(**settings), Languages(Catalog.load()))
    return parser.parse({"source_code": "x", "language_id": 71, **body}, encoded=False)[1]


def test_judge0_messages_for_what_the_operator_turned_off():
    assert _parse({"callback_url": "https://example.com/cb"}, enable_callbacks=False) == {
        "callback_url": ["setting callback is not allowed"]}
    assert _parse({"additional_files": base64.b64encode(b"PK").decode()}, enable_additional_files=False) == {
        "additional_files": ["setting additional files is not allowed"]}


def _zip(names, compression=None, nested: bytes | None = None) -> str:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression or zipfile.ZIP_STORED) as archive:
        for name in names:
            archive.writestr(name, b"x")
        if nested is not None:
            archive.writestr("lib.jar", nested)  # stored: its own headers are in the outer zip's bytes
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_zip_with_too_many_entries_is_refused_before_zipfile_reads_them(monkeypatch):
    """zipfile reads a central directory entry by entry, in Python, on the
    event loop (0.9 s for 200k entries, at every such body): the count is
    taken from the directory's bytes first."""
    from stockade.service.judge0 import request

    crowded = _zip(f"f{i}" for i in range(1001))
    jar = base64.b64decode(_zip(f"c{i}.class" for i in range(1500)))
    with_a_jar = _zip(["Main.java"], nested=jar)
    assert _parse({"additional_files": with_a_jar}) == {}  # the jar's 1500 are not the zip's
    monkeypatch.setattr(request.zipfile, "ZipFile", lambda *a, **k: pytest.fail("zipfile read the entries"))
    assert _parse({"additional_files": crowded}) == {"additional_files": ["the zip must hold at most 1000 entries"]}


def test_a_callback_url_with_a_space_or_a_control_character_is_not_a_url():
    """urlsplit drops tabs and line breaks without a word: such a URL was
    taken, called without them, and logged with them when its callback failed
    (a forged log line, or a terminal's escapes)."""
    for url in ("https://example.com/cb\n2026-01-01 00:00:00 ERROR forged", "https://exam\tple.com/",
                "https://example.com/\x1b[2J", "https://example.com/\x9b31m", "https://example.com/a b",
                "https://example.com/\u2028"):
        assert _parse({"callback_url": url}) == {"callback_url": ["is not a valid URL"]}, url
    assert _parse({"callback_url": "https://example.com/cb?x=%0A"}) == {}  # (escaped, it is fine)
    assert _parse({"callback_url": "https://bücher.example/ü"}) == {}


def test_a_callback_url_with_a_lone_surrogate_is_not_a_url():
    """JSON can carry "\\ud800", which no database stores as text: the insert
    failed and POST /submissions answered 500 (a traceback in the log)."""
    assert _parse({"callback_url": "https://example.com/\ud800"}) == {"callback_url": ["is not a valid URL"]}


def test_compile_options_only_for_the_listed_languages_as_judge0_matches_and_says_it():
    # Judge0 matches "C" followed by a space: C++ is not C.
    allowed = {"allowed_languages_for_compile_options": ["C", "Java"]}
    assert _parse({"language_id": 50, "compiler_options": "-O2"}, **allowed) == {}
    assert _parse({"language_id": 52, "compiler_options": "-O2"}, **allowed) == {
        "compiler_options": ["setting compiler options is only allowed for C and Java"]}
    three = {"allowed_languages_for_compile_options": ["C", "C++", "Java"]}
    assert _parse({"language_id": 73, "compiler_options": "-O"}, **three) == {
        "compiler_options": ["setting compiler options is only allowed for C, C++ and Java"]}
    one = {"allowed_languages_for_compile_options": ["Rust"]}
    assert _parse({"language_id": 50, "compiler_options": "-O2"}, **one) == {
        "compiler_options": ["setting compiler options is only allowed for Rust"]}


def test_statistics_as_judge0_shapes_them():
    from stockade.service.judge0 import info

    now = dt.datetime(2024, 4, 8, 11, 42, 51, 856000)
    raw = {"total": 9, "today": 4,
           "days": {"2024-04-08": 4, "2024-04-07": 2, "2024-03-20": 1, "2024-03-09": 1, "2024-03-08": 1},
           "languages": {71: 2, 50: 7}, "statuses": {3: 2, 4: 1, 6: 6}}
    stats = info.statistics(raw, {71: "Python", 50: "C"}.get, 4096, now=now)
    assert stats["created_at"] == "2024-04-08T11:42:51.856Z" and stats["cached_until"] == "2024-04-08T11:52:51.856Z"
    days = stats["submissions"]["last_30_days"]
    # The 30 days before today, newest first, zero-filled; today and day 31 are not in it.
    assert list(days) == [str(dt.date(2024, 4, 7) - dt.timedelta(days=n)) for n in range(30)]
    assert days["2024-04-07"] == 2 and days["2024-03-20"] == 1 and days["2024-03-09"] == 1 and days["2024-04-06"] == 0
    assert stats["submissions"]["total"] == 9 and stats["submissions"]["today"] == 4
    assert [item["status"]["id"] for item in stats["statuses"]] == [6, 3, 4]
    assert stats["statuses"][0] == {"status": {"id": 6, "name": "Compilation Error"}, "count": 6}
    assert [item["language"] for item in stats["languages"]] == [{"id": 50, "name": "C"}, {"id": 71, "name": "Python"}]


def test_log_level_is_one_that_logging_knows(monkeypatch):
    monkeypatch.setenv("STOCKADE_LOG_LEVEL", "DEBUG")
    assert Settings.load().log_level == "debug"
    monkeypatch.setenv("STOCKADE_LOG_LEVEL", "trace")  # (uvicorn's, not logging's: serve crashed on it)
    with pytest.raises(ValueError, match="log_level"):
        Settings.load()


def test_a_callback_target_that_answers_forever_is_given_up_after_each_try(caplog):
    """callbacks_timeout is per try: a target that sends its answer's head a
    line at a time never ends (httpx's timeout is per read), and each such
    target held a task and one of the client's 100 pooled connections for
    good; enough of them and every callback waits for the pool."""
    import logging

    with _endless_target(b"HTTP/1.1 200 OK\r\n", b"X-Drip: x\r\n", pause=0.05) as (url, tries), \
            caplog.at_level(logging.INFO, logger="stockade.callbacks"):
        # Ends: two tries of 0.3 s and a pause.
        assert asyncio.run(_deliver_one(url, tries=2, timeout=0.3)) == ["t-1"]
    assert len(tries) == 2
    origin = url.removesuffix("/hook")  # (the path, and any query, are the client's: not logged)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "callback for t-1 failed (try 1): no answer within 0.3 s"),
        # The last try is a warning: the client will never hear of it.
        ("WARNING", f"callback for t-1 to {origin} given up after 2 tries: no answer within 0.3 s"),
    ]


def test_callback_targets_that_never_answer_do_not_hold_up_the_others():
    """httpx's pool of 100 connections was shared by every callback: 120
    deliveries to a target that accepts and never answers left another
    target's callback waiting for a connection until theirs timed out."""
    import socket
    import threading

    silent = socket.create_server(("127.0.0.1", 0), backlog=512)  # never accepts: connects, never answers
    good = socket.create_server(("127.0.0.1", 0))
    answered = threading.Event()

    def answer() -> None:
        with contextlib.suppress(OSError):
            connection, _ = good.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                answered.set()

    threading.Thread(target=answer, daemon=True).start()

    store = _Delivered()

    async def deliver() -> float:
        callbacks = _callbacks(store, tries=1, timeout=5)
        try:
            for i in range(120):
                callbacks.schedule({"token": f"stuck-{i}", "callback_url": f"http://127.0.0.1:{silent.getsockname()[1]}/"})
            await asyncio.sleep(0.5)  # (all of them connected and waiting)
            started = time.monotonic()
            callbacks.schedule({"token": "good", "callback_url": f"http://127.0.0.1:{good.getsockname()[1]}/"})
            while "good" not in store.done and time.monotonic() - started < 30:
                await asyncio.sleep(0.01)
            return time.monotonic() - started
        finally:
            for task in callbacks._tasks:
                task.cancel()
            await callbacks.close()

    try:
        waited = asyncio.run(deliver())
    finally:
        silent.close()
        good.close()
    assert answered.is_set() and "good" in store.done
    assert waited < 2, f"the good target's callback waited {waited:.1f} s for the stuck ones"


def test_a_callback_target_that_answers_a_huge_body_is_not_read(caplog):
    """Only the answer's status counts. The whole body was read: a target that
    answered 200 and then sent bytes as fast as loopback goes had the server
    hold about 1.5 GB per try (a few such callbacks at once, and the service
    is out of memory), and the try then timed out and was made again."""
    import logging

    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (1 << 40)
    with _endless_target(head, b"x" * (1 << 20)) as (url, tries), \
            caplog.at_level(logging.INFO, logger="stockade.callbacks"):
        assert asyncio.run(_deliver_one(url, tries=2, timeout=2)) == ["t-1"]
    assert len(tries) == 1
    assert [r.getMessage() for r in caplog.records if r.name == "stockade.callbacks"] == []


def test_an_error_answer_is_logged_with_the_clients_characters_escaped(caplog):
    """The line's body echoes the client's values (JSON escapes only what is
    below a space) and its address may be X-Forwarded-For's, read as latin-1:
    a NEL, a U+2028 or an 8-bit CSI went into the log as they were."""
    from stockade.service.guard import ErrorGuard

    body = json.dumps({"language_id": ["language with id x\u2028y\u0085z\u009b31m\x1b[1m doesn't exist"]},
                      ensure_ascii=False).encode()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 422, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def send(message):
        pass

    scope = {"type": "http", "method": "POST", "path": "/submissions", "client": ("1.2.3.4\x85FAKE \x9b31m", 0)}
    with caplog.at_level("INFO", logger="stockade.service"):
        asyncio.run(ErrorGuard(app)(scope, None, send))
    assert caplog.messages == [
        "answered 422 to POST '/submissions' from 1.2.3.4\\x85FAKE \\x9b31m:"
        ' {"language_id": ["language with id x\\u2028y\\x85z\\x9b31m\\u001b[1m doesn\'t exist"]}']
