"""Settings an operator turns on: authentication, a small queue, wait off,
callbacks to allowed networks. Each test starts its own server."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from stockade_server import alembic, free_port, wait_done

PY = 71


def test_authentication_header_or_query(make_server):
    srv = make_server({"STOCKADE_AUTHN_TOKEN": "tok-a tok-b", "STOCKADE_ENABLE_WAIT_RESULT": "false"})
    with httpx.Client(base_url=srv.url) as http:
        for path in ("/languages", "/config_info", "/about", f"/submissions/{'0' * 8}", "/statuses"):
            response = http.get(path)
            assert response.status_code == 401 and response.content == b"", path
        assert http.get("/languages", headers={"X-Auth-Token": "wrong"}).status_code == 401
        assert http.post("/authenticate").status_code == 401
        assert http.post("/authenticate", headers={"X-Auth-Token": "tok-a"}).status_code == 200
        assert http.get("/languages", headers={"X-Auth-Token": "tok-b"}).status_code == 200
        assert http.get("/languages", params={"X-Auth-Token": "tok-a"}).status_code == 200
        # No authorization token configured: listing, deleting, /authorize are 403.
        headers = {"X-Auth-Token": "tok-a", "X-Auth-User": "anything"}
        assert http.get("/submissions", headers=headers).status_code == 403
        assert http.post("/authorize", headers=headers).status_code == 403
        assert http.delete("/submissions/x", headers=headers).status_code == 403
        # wait disabled by the operator.
        response = http.post("/submissions", params={"wait": "true", "X-Auth-Token": "tok-a"},
                             json={"source_code": "print(1)", "language_id": PY})
        assert response.status_code == 400 and response.json() == {"error": "wait not allowed"}
        # Checked before the fields, as Judge0 does.
        response = http.post("/submissions", params={"wait": "true", "fields": "bogus", "X-Auth-Token": "tok-a"},
                             json={"source_code": "print(1)", "language_id": PY})
        assert response.status_code == 400 and response.json() == {"error": "wait not allowed"}
        assert http.get("/config_info", headers=headers).json()["enable_wait_result"] is False


def test_delete_not_allowed_unless_enabled(make_server):
    srv = make_server({"STOCKADE_AUTHZ_TOKEN": "boss"})
    with httpx.Client(base_url=srv.url) as http:
        token = http.post("/submissions", json={"source_code": "print(1)", "language_id": PY}).json()["token"]
        response = http.delete(f"/submissions/{token}", headers={"X-Auth-User": "boss"})
        assert response.status_code == 400 and response.json() == {"error": "delete not allowed"}
        # Judge0 checks the fields first.
        response = http.delete(f"/submissions/{token}", params={"fields": "bogus"}, headers={"X-Auth-User": "boss"})
        assert response.status_code == 400 and response.json() == {"error": "invalid fields: [bogus]"}
        wait_done(http, token)


def test_full_queue_is_503(make_server):
    srv = make_server({"STOCKADE_MAX_QUEUE_SIZE": "2", "STOCKADE_WORKERS": "1"})
    slow = {"source_code": "import time; time.sleep(1)", "language_id": PY}
    with httpx.Client(base_url=srv.url) as http:
        # The queue holds what waits for a worker (Judge0 counts its Resque queue), not what runs.
        running = http.post("/submissions", json=slow).json()["token"]
        deadline = time.monotonic() + 30
        while http.get(f"/submissions/{running}").json()["status"]["id"] == 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        tokens = [running] + [http.post("/submissions", json=slow).json()["token"] for _ in range(2)]
        response = http.post("/submissions", json=slow)
        assert response.status_code == 503 and response.json() == {"error": "queue is full"}
        response = http.post("/submissions/batch", json={"submissions": [slow]})
        assert response.status_code == 503 and response.json() == {"error": "queue is full"}
        workers = http.get("/workers").json()[0]
        assert workers["available"] == 1 and workers["working"] + workers["size"] == 3
        for token in tokens:
            assert wait_done(http, token)["status"]["id"] == 3
        # Room again once they finished.
        assert http.post("/submissions", json={"source_code": "print(1)", "language_id": PY}).status_code == 201


class _Recorder(BaseHTTPRequestHandler):
    calls: list[tuple[str, dict]] = []
    fail_first = False

    def do_PUT(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append((self.path, body))
        if type(self).fail_first and len(type(self).calls) == 1:
            self.send_response(500)
        else:
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_callbacks_to_an_allowed_local_target(make_server):
    _Recorder.calls = []
    _Recorder.fail_first = True  # the first PUT fails: the callback is tried again
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        srv = make_server({"STOCKADE_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32"})
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook?x=1"
        with httpx.Client(base_url=srv.url) as http:
            token = http.post("/submissions", json={"source_code": "print('called back')", "language_id": PY,
                                                    "callback_url": url}).json()["token"]
            wait_done(http, token)
            deadline = time.monotonic() + 15
            while len(_Recorder.calls) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(_Recorder.calls) == 2
            path, body = _Recorder.calls[-1]
            assert path == "/hook?x=1"
            assert set(body) == {"token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status"}
            assert body["token"] == token and body["stdout"] == "Y2FsbGVkIGJhY2sK\n"  # base64, Ruby style
            assert body["status"]["id"] == 3
            # Other internal networks stay refused on this server.
            response = http.post("/submissions", json={"source_code": "1", "language_id": PY,
                                                       "callback_url": "http://10.0.0.1/"})
            assert response.status_code == 422
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_a_failed_callback_is_logged_without_its_url_and_its_giving_up_is_a_warning(make_server):
    """httpx logged each PUT at INFO with the URL whole (a webhook's key in its
    path or query), and the last try looked like any other: nothing at
    warning level said the client would never hear of its submission."""
    _Recorder.calls = []
    _Recorder.fail_first = False
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), type("Failing", (_Recorder,), {
        "do_PUT": lambda self: (self.rfile.read(int(self.headers["Content-Length"])), self.send_response(503),
                                self.end_headers())}))
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        srv = make_server({"STOCKADE_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32", "STOCKADE_LOG_LEVEL": "info",
                           "STOCKADE_CALLBACKS_MAX_TRIES": "2"})
        origin = f"http://127.0.0.1:{receiver.server_address[1]}"
        with srv.client() as http:
            token = http.post("/submissions", json={"source_code": "print(1)", "language_id": PY,
                                                    "callback_url": f"{origin}/hook/key-in-path?sig=key-in-query"}
                              ).json()["token"]
            wait_done(http, token)
        given_up = f"WARNING stockade.callbacks callback for {token} to {origin} given up after 2 tries: HTTP 503"
        deadline = time.monotonic() + 15
        while given_up not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = srv.log()
        assert given_up in log, log
        assert f"INFO stockade.callbacks callback for {token} failed (try 1): HTTP 503" in log
        assert "key-in" not in log
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_refused_requests_are_logged_without_their_query(make_server):
    """uvicorn's access log is off: a 401, a 422 or a full queue's 503 left
    no line, and an operator could not see clients failing. Each error answer
    is one line, without the query string, where clients put X-Auth-Token."""
    srv = make_server({"STOCKADE_AUTHN_TOKEN": "tok-a", "STOCKADE_LOG_LEVEL": "info"})
    with httpx.Client(base_url=srv.url) as http:
        assert http.get("/languages", params={"X-Auth-Token": "secret-guess"}).status_code == 401
        response = http.post("/submissions", params={"X-Auth-Token": "tok-a"},
                             json={"source_code": "print(1)", "language_id": 9999})
        assert response.status_code == 422
    deadline = time.monotonic() + 5
    while "answered 422" not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = srv.log()
    assert "INFO stockade.service answered 401 to GET '/languages' from 127.0.0.1: (no body)\n" in log, log
    reason = response.content.decode()
    assert f"INFO stockade.service answered 422 to POST '/submissions' from 127.0.0.1: {reason}\n" in log, log
    assert "secret-guess" not in log and "tok-a" not in log


def test_one_server_per_data_directory(make_server):
    first = make_server({})
    second = subprocess.run([sys.executable, "-m", "stockade.service", "--port", str(free_port())],
                            env={**os.environ, "STOCKADE_DATA_DIR": str(first.data_dir)},
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert second.stderr == (f"stockade: cannot serve: another Stockade server (pid {first.process.pid}) uses the"
                             f" data directory {first.data_dir}: one server per data directory (STOCKADE_DATA_DIR)\n")
    assert first.client().get("/version").status_code == 200  # the first one serves on
    first.stop()
    again = make_server({}, data_dir=first.data_dir)  # once it is gone, the directory is free
    assert again.client().get("/version").status_code == 200


def test_a_new_data_directory_and_database_are_private(make_server, tmp_path):
    """They were 0755 and 0644 (-wal and -shm alike): every local user could
    read every submission's source, stdin and expected output."""
    data_dir = tmp_path / "new" / "data"
    srv = make_server({"STOCKADE_DATA_DIR": str(data_dir)})
    with srv.client() as http:
        wait_done(http, http.post("/submissions", json={"source_code": "print(1)", "language_id": PY}).json()["token"])
    assert data_dir.stat().st_mode & 0o777 == 0o700
    for name in ("stockade.db", "stockade.db-wal", "stockade.db-shm", "server.lock"):
        assert (data_dir / name).stat().st_mode & 0o777 == 0o600, name
    # A database given elsewhere by its URL: the same, its directory included.
    database = tmp_path / "elsewhere" / "jobs.db"
    make_server({"STOCKADE_DATABASE_URL": f"sqlite:///{database}"})
    assert database.stat().st_mode & 0o777 == 0o600 and database.parent.stat().st_mode & 0o777 == 0o700


def test_an_upgrades_schema_migration_is_logged(make_server, tmp_path):
    """operations.md's upgrade: the server migrates the database at start, and
    the log said nothing of it (Alembic's own lines are off)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    alembic(f"sqlite:///{data_dir / 'stockade.db'}", "upgrade", "0001")  # as the version before 0002 left it
    srv = make_server({"STOCKADE_DATA_DIR": str(data_dir), "STOCKADE_LOG_LEVEL": "info"})
    assert "INFO stockade.service the database's schema was migrated from revision 0001 to 0002" in srv.log()
    srv.stop()
    again = make_server({"STOCKADE_DATA_DIR": str(data_dir), "STOCKADE_LOG_LEVEL": "info"})
    assert "ready on" in again.log() and "schema was migrated" not in again.log()  # (nothing to migrate)


def test_a_port_in_use_stops_the_start_in_one_line(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "stockade.service", "--port", str(port)],
                              env={**os.environ, "STOCKADE_DATA_DIR": str(tmp_path)},
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    # Before anything started: no warm box built, no submission recovered.
    assert done.stderr == f"stockade: cannot serve: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_answers_are_not_held_back_for_the_clients_ack():
    """The listening socket's connections get TCP_NODELAY from the event loop:
    without it, the body uvicorn sends after the headers waited for the
    client's delayed ACK, 40 ms per request (a socket made with proto 0 is
    left as it is by asyncio)."""
    from stockade.service.serve import listen

    async def accepted_nodelay() -> int:
        listener = listen("127.0.0.1", 0)
        got = asyncio.get_running_loop().create_future()

        async def on_connection(_reader, writer):
            got.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=listener)  # as uvicorn serves a socket given
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            try:
                return await asyncio.wait_for(got, 10)
            finally:
                writer.close()

    assert asyncio.run(accepted_nodelay()) == 1


def test_cors_disallowed_origins_and_a_preflight_without_the_token(make_server):
    srv = make_server({"STOCKADE_DISALLOW_ORIGIN": "evil.example bad.example",
                       "STOCKADE_AUTHN_TOKEN": "tok"})
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-auth-token"}
    with httpx.Client(base_url=srv.url) as http:
        good = http.options("/submissions", headers={"Origin": "https://ok.example", **preflight})
        assert good.status_code == 200 and good.headers["access-control-allow-origin"] == "https://ok.example"
        bad = http.options("/submissions", headers={"Origin": "https://www.evil.example", **preflight})
        assert "access-control-allow-origin" not in bad.headers
        # A 401 (no token) still carries the header for an allowed origin.
        response = http.get("/languages", headers={"Origin": "https://ok.example"})
        assert response.status_code == 401 and response.headers["access-control-allow-origin"] == "https://ok.example"
        response = http.get("/languages", headers={"Origin": "https://bad.example", "X-Auth-Token": "tok"})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_batches_turned_off_refuse_both_batch_endpoints(make_server):
    srv = make_server({"STOCKADE_ENABLE_BATCHED_SUBMISSIONS": "false"})
    refused = {"error": "batched submissions are not allowed"}
    with httpx.Client(base_url=srv.url) as http:
        response = http.get("/submissions/batch", params={"tokens": "a,b", "fields": "token"})
        assert response.status_code == 400 and response.json() == refused
        response = http.post("/submissions/batch", json={"submissions": [{"source_code": "print(1)", "language_id": PY}]})
        assert response.status_code == 400 and response.json() == refused


def test_maintenance_mode_guards_create_and_delete_as_judge0(make_server):
    srv = make_server({"STOCKADE_MAINTENANCE_MODE": "true", "STOCKADE_AUTHZ_TOKEN": "boss",
                       "STOCKADE_ENABLE_SUBMISSION_DELETE": "true"})
    down = {"error": "Stockade is currently in maintenance."}
    item = {"source_code": "print(1)", "language_id": PY}
    with httpx.Client(base_url=srv.url) as http:
        response = http.post("/submissions", json=item)
        assert response.status_code == 503 and response.json() == down
        # Judge0 authorizes first, then checks maintenance.
        assert http.delete("/submissions/x").status_code == 403
        response = http.delete("/submissions/x", headers={"X-Auth-User": "boss"})
        assert response.status_code == 503 and response.json() == down
        # Batches are not guarded (Judge0's check_maintenance is only: [:create, :destroy]).
        response = http.post("/submissions/batch", json={"submissions": [item]})
        assert response.status_code == 201, response.text
        wait_done(http, response.json()[0]["token"])


def test_bad_settings_stop_the_start_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "stockade.service", "--port", str(free_port())],
                          env={**os.environ, "STOCKADE_DATA_DIR": str(tmp_path), "STOCKADE_WORKERS": "zero"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == ("stockade: invalid settings: workers (STOCKADE_WORKERS): Input should be a valid integer,"
                           " unable to parse string as an integer, got 'zero'\n")
    # Empty is an unset variable, not every address (it listened on 0.0.0.0).
    done = subprocess.run([sys.executable, "-m", "stockade.service", "--port", str(free_port())],
                          env={**os.environ, "STOCKADE_DATA_DIR": str(tmp_path), "STOCKADE_HOST": ""},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr == ("stockade: invalid settings: host (STOCKADE_HOST): cannot be empty"
                                                    " (0.0.0.0 listens on every address), got ''\n")
    # A check across fields names them itself (no made-up variable).
    done = subprocess.run([sys.executable, "-m", "stockade.service", "--port", str(free_port())],
                          env={**os.environ, "STOCKADE_DATA_DIR": str(tmp_path), "STOCKADE_ENABLE_NETWORK": "true"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(
        "stockade: invalid settings: allow_enable_network/enable_network cannot be turned on yet"), done.stderr


def test_one_server_per_sqlite_database_whatever_the_data_directory(make_server, tmp_path):
    """STOCKADE_DATABASE_URL can point two servers with different data
    directories at one SQLite file: the second would run again, at its start,
    every submission the first one is running. The database file itself is locked."""
    database = tmp_path / "shared" / "jobs.db"
    link = tmp_path / "elsewhere.db"
    first = make_server({"STOCKADE_DATABASE_URL": f"sqlite:///{database}"}, data_dir=tmp_path / "one")
    link.symlink_to(database)  # another path to the same file is the same database
    for url, command in ((f"sqlite:///{database}", ["-m", "stockade.service"]),
                         (f"sqlite:///{link}", ["-m", "stockade.cli", "serve"])):
        second = subprocess.run([sys.executable, *command, "--port", str(free_port())],
                                env={**os.environ, "STOCKADE_DATA_DIR": str(tmp_path / "two"),
                                     "STOCKADE_DATABASE_URL": url},
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        assert second.stderr == (f"stockade: cannot serve: another Stockade server uses the SQLite database {link if 'elsewhere' in url else database}:"
                                 " one server per database (STOCKADE_DATABASE_URL)\n")
    assert first.client().get("/version").status_code == 200  # the first one serves on
    first.kill()  # kill -9 releases it too
    again = make_server({"STOCKADE_DATABASE_URL": f"sqlite:///{link}"}, data_dir=tmp_path / "two")
    assert again.client().get("/version").status_code == 200


def _start_fails(tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockade.service", "--port", str(free_port())],
                          env={**os.environ, "STOCKADE_DATA_DIR": str(tmp_path), **env},
                          capture_output=True, text=True, timeout=60)


def test_a_database_that_cannot_be_used_stops_the_start_in_one_line(tmp_path):
    """Not a SQLite file, a directory in its place, a file in the data
    directory's, a schema from a newer version: one line and exit status 1, before anything starts (it was a
    traceback from the app's startup and uvicorn's exit status 3)."""
    import sqlite3

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "stockade.db").write_bytes(b"this is not a database\n" * 100)
    done = _start_fails(garbage)
    assert done.returncode == 1
    assert done.stderr == f"stockade: cannot serve: cannot use the database {garbage / 'stockade.db'}: file is not a database\n"

    directory = tmp_path / "directory"
    (directory / "stockade.db").mkdir(parents=True)
    done = _start_fails(directory)
    assert done.returncode == 1
    assert done.stderr == f"stockade: cannot serve: cannot use the database {directory / 'stockade.db'}: Is a directory\n"

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    done = _start_fails(a_file)
    assert done.returncode == 1
    assert done.stderr == f"stockade: cannot serve: cannot use the data directory {a_file}: {a_file} is not a directory\n"

    newer = tmp_path / "newer"
    newer.mkdir()
    with sqlite3.connect(newer / "stockade.db") as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES ('9999_future')")
    connection.close()
    done = _start_fails(newer)
    assert done.returncode == 1
    assert done.stderr == (f"stockade: cannot serve: cannot use the database {newer / 'stockade.db'}: its schema"
                           " (revision 9999_future) is newer than this version of Stockade\n")
    # A database that ends with the process would lose what the server accepted.
    for url in ("sqlite://", "sqlite:///:memory:"):
        done = _start_fails(tmp_path / "memory", STOCKADE_DATABASE_URL=url)
        assert done.returncode == 1 and done.stderr.startswith(
            "stockade: cannot serve: an in-memory SQLite database loses every submission"), (url, done.stderr)


def test_port_0_serves_on_a_free_port_and_says_which(tmp_path):
    """The start line said "ready on http://127.0.0.1:0", which nobody can reach."""
    process = subprocess.Popen([sys.executable, "-m", "stockade.service", "--port", "0"],
                               env={**os.environ, "STOCKADE_DATA_DIR": str(tmp_path), "STOCKADE_WORKERS": "1",
                                    "STOCKADE_WARM_BOXES": "0"},
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if "ready on http://" in line:
                break
        port = int(line.split("ready on http://127.0.0.1:")[1].split(":")[0])
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/version", timeout=30).status_code == 200
    finally:
        process.terminate()
        process.wait(30)
        process.stderr.close()


def test_idle_connections_do_not_starve_the_runs_of_descriptors(tmp_path):
    """systemd starts a service with 1024 descriptors (soft limit; the hard one
    is far higher): a few hundred connections that sent half a request and wait
    (slow clients, or a burst) used them up, and submissions already accepted
    finished as Internal Error ('Too many open files' in the sandbox). The
    server raises its soft limit to the hard one at start."""
    import resource

    port = free_port()

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 8192))

    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "stockade.service", "--port", str(port)],
                               env={**os.environ, "STOCKADE_DATA_DIR": str(tmp_path), "STOCKADE_WORKERS": "1"},
                               stdout=log, stderr=subprocess.STDOUT, preexec_fn=low_limit)
    idle: list[socket.socket] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, (tmp_path / "server.log").read_text()
                try:
                    if http.get("/version").status_code == 200:
                        break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            queued = http.post("/submissions", json={"source_code": "import time; time.sleep(1); print(1)",
                                                     "language_id": PY}).json()["token"]
            for _ in range(300):
                connection = socket.create_connection(("127.0.0.1", port))
                connection.sendall(b"POST /submissions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
                idle.append(connection)
            time.sleep(0.5)  # (the server has accepted them)
            assert wait_done(http, queued)["status"]["id"] == 3
            response = http.post("/submissions", params={"wait": "true"},
                                 json={"source_code": "print(2)", "language_id": PY})
            assert response.status_code == 201 and response.json()["status"]["id"] == 3, response.text
        limits = open(f"/proc/{process.pid}/limits").read()
        assert [line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files")] == [["8192", "8192"]]
    finally:
        for connection in idle:
            connection.close()
        process.terminate()
        process.wait(30)
        log.close()


def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closes(make_server):
    """A client that sends half a body and waits held its connection (and a
    descriptor) for good; it now has STOCKADE_REQUEST_TIMEOUT to send it."""
    srv = make_server({"STOCKADE_REQUEST_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(b"POST /submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"source_code\": ")
        answer = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(body) == {"error": "request body not received within 1 s"}
    # A body sent in time, slowly, in pieces, is read as usual.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        body = json.dumps({"source_code": "print(7)", "language_id": 71}).encode()
        sock.sendall(b"POST /submissions?wait=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        for i in range(0, len(body), 8):
            sock.sendall(body[i:i + 8])
            time.sleep(0.05)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201 ") and json.loads(answer.partition(b"\r\n\r\n")[2])["stdout"] == "7\n"


def test_a_request_answered_before_its_body_came_closes_its_connection(make_server):
    """The 408 for a late body, or an answer to a GET whose body no route
    reads, left the connection open: uvicorn threw the rest of the body away as
    it came, and each byte put off its keep-alive timeout (5 s), so a client
    sending one byte now and then held the connection for good."""
    srv = make_server({"STOCKADE_REQUEST_TIMEOUT": "1"})

    def answer_while_dripping(head: bytes) -> tuple[bytes, bool]:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            sock.sendall(head)
            sock.settimeout(0.2)
            answer, deadline = b"", time.monotonic() + 12
            while time.monotonic() < deadline:
                try:
                    sock.sendall(b"x")  # (a byte of the body every 0.2 s)
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:  # (the server closed the connection: our byte was reset)
                    return answer, True
                if not chunk:
                    return answer, True
                answer += chunk
            return answer, False

    for head, status in (
        (b"POST /submissions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{", b"408"),
        (b"GET /version HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", b"200"),
        (b"GET /version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n", b"200"),
    ):
        answer, closed = answer_while_dripping(head)
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer
        assert closed, (head, answer)


def test_an_answer_the_client_does_not_read_is_dropped_after_the_timeout(make_server):
    """An answer nobody reads stayed in the server's memory for good, all of it
    but what the kernel took: a few hundred GETs of a large submission, never
    read, held gigabytes. No progress for STOCKADE_REQUEST_TIMEOUT aborts the
    connection; a client that reads slowly, but reads, keeps it."""
    srv = make_server({"STOCKADE_REQUEST_TIMEOUT": "1"})
    stdin = base64.b64encode(bytes(6 * 1024 * 1024)).decode()  # (more than the kernel's buffers hold)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        token = http.post("/submissions", params={"base64_encoded": "true"},
                          json={"source_code": base64.b64encode(b"pass").decode(), "language_id": PY,
                                "stdin": stdin}).json()["token"]
    request = (f"GET /submissions/{token}?fields=stdin&base64_encoded=true HTTP/1.1\r\n"
               "Host: x\r\nConnection: close\r\n\r\n").encode()

    def read(first_pause: float, pause: float, seconds: float) -> tuple[int, bool]:
        """(bytes read, whether the connection ended) reading 4 KiB every `pause` s."""
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", srv.port))
            sock.settimeout(10)
            sock.sendall(request)
            time.sleep(first_pause)
            got, deadline = 0, time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    return got, True
                if not chunk:
                    return got, True
                got += len(chunk)
                time.sleep(pause)
            return got, False

    got, ended = read(0, 0.3, 4)  # slowly, but reading: 4 KiB every 0.3 s
    assert got > 0 and not ended
    # Nothing read for 3 s: what the kernel held comes, then the end, the rest
    # of the answer (base64, a third more than stdin) dropped.
    got, ended = read(3, 0, 30)
    assert ended and got < len(stdin), got


def test_a_request_head_that_does_not_arrive_in_time_is_408_and_the_connection_closes(make_server):
    """uvicorn times out nothing before a request's headers are complete: a
    client that connected, or sent half its headers, and waited held its
    connection (and a descriptor) for good (slowloris)."""
    srv = make_server({"STOCKADE_REQUEST_TIMEOUT": "1"})

    def answer_to(sent: bytes) -> tuple[bytes, float]:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            started = time.monotonic()
            sock.sendall(sent)
            answer = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                answer += chunk
            return answer, time.monotonic() - started

    for sent in (b"", b"POST /submissions HTTP/1.1\r\nHost: x\r\nContent-Type: appl"):
        answer, waited = answer_to(sent)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower(), answer
        assert json.loads(body) == {"error": "request head not received within 1 s"}
        assert 0.9 < waited < 20, waited
    # A keep-alive connection's second request has its own second, and a
    # request answered slower than that (wait=true) is not cut.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        body = json.dumps({"source_code": "import time; time.sleep(1.5); print(7)", "language_id": 71}).encode()
        request = (b"POST /submissions?wait=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        for idle in (0, 0.6):  # (the first request's second runs from the connection)
            time.sleep(idle)
            sock.sendall(request[:20])
            time.sleep(0.6)
            sock.sendall(request[20:])
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 201 "), answer
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["stdout"] == "7\n"
        # Half a head pipelined behind that request: its answer first, then 408.
        sock.sendall(request + request[:20])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 201 ") and b'"stdout":"7\\n"' in answer.replace(b" ", b""), answer
        assert answer.count(b"HTTP/1.1 408 ") == 1 and answer.index(b"HTTP/1.1 408 ") > answer.index(b"}"), answer


def test_a_misspelt_setting_is_named_at_start(tmp_path):
    """Unknown names were ignored in silence: STOCKADE_WORKRES=1 left the
    workers at their default, and nothing said so."""
    config = tmp_path / "stockade.toml"
    config.write_text("port = 1\nmax_queue_sise = 5\nSTOCKADE_WORKERS = 2\n")  # (given as STOCKADE_CONFIG_FILE here; --config alike)
    with socket.create_server(("127.0.0.1", 0)) as taken:  # (so the start stops right after)
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "stockade.service", "--port", str(port)],
                              env={**os.environ, "STOCKADE_DATA_DIR": str(tmp_path), "STOCKADE_WORKRES": "1",
                                   "STOCKADE_CONFIG_FILE": str(config)},
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert any(line.endswith("not a setting, ignored: STOCKADE_WORKRES (did you mean STOCKADE_WORKERS?)")
               for line in lines), done.stderr
    assert any(line.endswith(f"not a setting, ignored: max_queue_sise in {config} (did you mean max_queue_size?)")
               for line in lines), done.stderr
    assert any(line.endswith(f"not a setting, ignored: STOCKADE_WORKERS in {config} (did you mean workers?)")
               for line in lines), done.stderr
    assert lines[-1] == f"stockade: cannot serve: cannot listen on 127.0.0.1:{port}: Address already in use"
