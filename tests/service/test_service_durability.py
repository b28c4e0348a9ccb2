"""Durability: submissions are stored before they are acknowledged, and a
server killed with SIGKILL mid-way finishes every one of them after a restart,
each with exactly one result."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from stockade_server import ADMIN, kill_during_each_run, wait_done

COUNT = 50
# Slow enough that the kill lands mid-way; random output, so two runs of one
# submission could never carry the same result.
SOURCE = "import os, time\ntime.sleep(0.25)\nprint(os.urandom(8).hex())"


class _Callbacks(BaseHTTPRequestHandler):
    received: dict[str, list[dict]] = defaultdict(list)
    lock = threading.Lock()

    def do_PUT(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            type(self).received[body["token"]].append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _results(http: httpx.Client, tokens: list[str]) -> dict[str, dict]:
    found = {}
    for i in range(0, len(tokens), 20):
        chunk = tokens[i:i + 20]
        response = http.get("/submissions/batch", params={"tokens": ",".join(chunk), "fields": "token,status,stdout"})
        assert response.status_code == 200
        found.update({item["token"]: item for item in response.json()["submissions"] if item})
    return found


def test_kill_9_mid_way_loses_nothing(make_server, tmp_path):
    _Callbacks.received = defaultdict(list)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Callbacks)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {"STOCKADE_WORKERS": "2", "STOCKADE_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32",
           "STOCKADE_AUTHZ_TOKEN": ADMIN}
    try:
        srv = make_server(env, data_dir=tmp_path / "data")
        callback = f"http://127.0.0.1:{receiver.server_address[1]}/done"
        tokens: list[str] = []
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            for start in range(0, COUNT, 20):
                items = [{"source_code": SOURCE, "language_id": 71, "callback_url": callback}
                         for _ in range(min(20, COUNT - start))]
                response = http.post("/submissions/batch", json={"submissions": items})
                assert response.status_code == 201
                tokens += [item["token"] for item in response.json()]
        assert len(set(tokens)) == COUNT

        deadline = time.monotonic() + 60
        while len(_Callbacks.received) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        srv.kill()
        finished_before = len(_Callbacks.received)
        assert 0 < finished_before < COUNT, "the kill must land mid-way"

        again = make_server(env, data_dir=srv.data_dir, port=srv.port)
        with httpx.Client(base_url=again.url, timeout=30) as http:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                results = _results(http, tokens)
                if all(r["status"]["id"] not in (1, 2) for r in results.values()):
                    break
                time.sleep(0.2)
            assert set(results) == set(tokens)
            assert all(r["status"]["id"] == 3 for r in results.values()), results
            assert all(len(r["stdout"].strip()) == 16 for r in results.values())
            listing = http.get("/submissions", headers={"X-Auth-User": ADMIN}, params={"per_page": 1}).json()
            assert listing["meta"]["total_count"] == COUNT

            # Every submission called back, and every callback of a submission
            # carries its one stored result.
            deadline = time.monotonic() + 30
            while len(_Callbacks.received) < COUNT and time.monotonic() < deadline:
                time.sleep(0.05)
            assert set(_Callbacks.received) == set(tokens)
            for token, bodies in _Callbacks.received.items():
                # (callbacks are base64, like Judge0's)
                assert {base64.b64decode(body["stdout"]).decode() for body in bodies} == {results[token]["stdout"]}
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_sigterm_answers_requests_waiting_for_a_result_then_the_restart_runs_them(make_server, tmp_path):
    """SIGTERM while wait=true requests wait for runs that outlast the graceful
    shutdown: each gets its submission as it stands (201, its token, In Queue or
    Processing), not uvicorn's 500 after a cancel and a traceback in the log;
    the restart runs each once."""
    import concurrent.futures
    import signal

    srv = make_server({"STOCKADE_WORKERS": "1"}, data_dir=tmp_path / "data")
    slow = "import os, time\ntime.sleep(8)\nprint(os.urandom(8).hex())"

    def post_waiting() -> httpx.Response:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            return http.post("/submissions", params={"wait": "true"}, json={"source_code": slow, "language_id": 71})

    with concurrent.futures.ThreadPoolExecutor(2) as pool, httpx.Client(base_url=srv.url, timeout=30) as http:
        running = pool.submit(post_waiting)
        deadline = time.monotonic() + 30
        while http.get("/workers").json()[0]["working"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        queued = pool.submit(post_waiting)
        while http.get("/workers").json()[0]["size"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.process.send_signal(signal.SIGTERM)
        answers = [running.result(timeout=30), queued.result(timeout=30)]
    srv.process.wait(30)
    for answer, status in zip(answers, (2, 1), strict=True):
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["status"]["id"] == status and body["stdout"] is None and body["token"]
    assert "Traceback" not in srv.log() and "Exception in ASGI application" not in srv.log()

    again = make_server({"STOCKADE_WORKERS": "1"}, data_dir=srv.data_dir, port=srv.port)
    with httpx.Client(base_url=again.url, timeout=30) as http:
        for answer in answers:
            final = wait_done(http, answer.json()["token"], timeout=60)
            assert final["status"]["id"] == 3 and len(final["stdout"].strip()) == 16


def _mount_tmpfs(path, size: str) -> None:
    import os
    import subprocess

    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)


def test_a_full_disk_refuses_submissions_with_503_stores_every_201_and_recovers(tmp_path):
    """The data directory's disk fills up while submissions arrive and results
    are stored. Each submission is either acknowledged (201, and then stored,
    and run once) or refused with a 503 that says so; nothing in between.
    When space comes back the results that could not be stored are, and new
    submissions are taken, without a restart."""
    import concurrent.futures
    import os
    import subprocess

    from stockade_server import Server

    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "1m")
    srv = Server(disk / "data", {"STOCKADE_WORKERS": "2", "STOCKADE_MAX_QUEUE_SIZE": "100000"})
    srv.log_path = tmp_path / "server.log"  # (not on the disk that fills up)
    try:
        srv.start()
        source = "print(len(input()))"

        def post(_i: int) -> httpx.Response:
            with httpx.Client(base_url=srv.url, timeout=60) as http:
                return http.post("/submissions", json={"source_code": source, "language_id": 71,
                                                       "stdin": os.urandom(8192).hex()})

        answers: list[httpx.Response] = []
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while not any(a.status_code != 201 for a in answers[-40:]) and len(answers) < 2000:
                answers += list(pool.map(post, range(40)))
        refused = [a for a in answers if a.status_code != 201]
        assert refused, "the disk never filled up"
        for answer in refused:
            assert answer.status_code == 503, answer.text
            assert answer.json() == {"error": "the submission could not be stored, try again later"}
        tokens = [a.json()["token"] for a in answers if a.status_code == 201]
        assert tokens
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            for token in tokens:  # every acknowledged submission is stored
                assert http.get(f"/submissions/{token}", params={"fields": "token"}).status_code == 200

            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
            for token in tokens:  # each runs once, and its result is stored
                final = wait_done(http, token, timeout=120)
                assert final["status"]["id"] == 3 and final["stdout"] == "16384\n"
            answer = http.post("/submissions", params={"wait": "true"}, json={"source_code": source,
                                                                              "language_id": 71, "stdin": "ab"})
            assert answer.status_code == 201 and answer.json()["stdout"] == "2\n"
            assert http.get("/workers").json()[0]["size"] == 0
        assert "Traceback" not in srv.log()
    finally:
        srv.stop()
        subprocess.run(["umount", str(disk)], check=False)


def test_a_data_directory_deleted_under_the_server_refuses_submissions(make_server, tmp_path):
    """`rm -rf` of the data directory while the server runs: SQLite went on
    writing to its open, deleted file, and each submission acknowledged from
    then on was gone at the next start. Now they are refused (503), and what
    was acknowledged before is still served."""
    import shutil

    srv = make_server({"STOCKADE_WORKERS": "1"}, data_dir=tmp_path / "data")
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        before = http.post("/submissions", params={"wait": "true"}, json={"source_code": "print(1)", "language_id": 71})
        assert before.status_code == 201
        shutil.rmtree(srv.data_dir)
        for _ in range(3):
            answer = http.post("/submissions", json={"source_code": "print(2)", "language_id": 71})
            assert answer.status_code == 503, answer.text
            assert answer.json() == {"error": "the submission could not be stored, try again later"}
        batch = http.post("/submissions/batch", json={"submissions": [{"source_code": "print(3)", "language_id": 71}]})
        assert batch.status_code == 503
        assert http.get(f"/submissions/{before.json()['token']}").json()["stdout"] == "1\n"


def test_a_submission_the_server_never_survives_is_not_run_for_ever(make_server, tmp_path):
    """A run cut short by a crash runs again at the next start, but not for
    ever: a submission during whose runs the server died three times (one that
    brings it down, say) is finished as an Internal Error at the fourth start,
    instead of being started again at every start."""
    import sqlite3

    env = {"STOCKADE_WORKERS": "1"}
    data = tmp_path / "data"

    def attempts(token: str) -> int:
        with contextlib.closing(sqlite3.connect(data / "stockade.db")) as db:
            return db.execute("SELECT attempts FROM submissions WHERE token = ?", (token,)).fetchone()[0]

    srv, token = kill_during_each_run(make_server, env, data, attempts)
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        final = wait_done(http, token)
        assert final["status"]["id"] == 13
        assert final["message"] == "the server stopped during each of this submission's 3 runs: it is not run again"
        assert http.get("/workers").json()[0]["working"] == 0
        # Runs that end as usual are counted once each.
        done = http.post("/submissions", params={"wait": "true"}, json={"source_code": "print(1)", "language_id": 71})
        assert done.json()["status"]["id"] == 3
    assert attempts(token) == 3 and attempts(done.json()["token"]) == 1


def test_ctrl_c_stops_the_server_cleanly_and_the_restart_runs_what_was_cut_short(make_server, tmp_path):
    """SIGINT (Ctrl-C) stops the server as SIGTERM does: exit status 130,
    without the traceback of a KeyboardInterrupt after the clean shutdown; the
    runs cut short and the queued submissions run at the next start."""
    import signal

    srv = make_server({"STOCKADE_WORKERS": "1"}, data_dir=tmp_path / "data")
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        tokens = [http.post("/submissions", json={"source_code": "import time\ntime.sleep(5)\nprint(1)",
                                                  "language_id": 71}).json()["token"] for _ in range(2)]
        deadline = time.monotonic() + 30
        while http.get("/workers").json()[0]["working"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    srv.process.send_signal(signal.SIGINT)
    assert srv.process.wait(30) == 130
    assert "Traceback" not in srv.log() and "KeyboardInterrupt" not in srv.log()

    again = make_server({"STOCKADE_WORKERS": "1"}, data_dir=srv.data_dir, port=srv.port)
    with httpx.Client(base_url=again.url, timeout=30) as http:
        for token in tokens:
            assert wait_done(http, token)["stdout"] == "1\n"


def test_a_run_cut_short_waits_in_queue_after_the_restart_as_in_queue(make_server, tmp_path):
    """Two runs cut short by a kill, and one worker after the restart: one runs
    again (Processing), the other waits its turn, and says so (In Queue), not
    the Processing the database kept from before the kill."""
    import sqlite3

    data = tmp_path / "data"
    srv = make_server({"STOCKADE_WORKERS": "2"}, data_dir=data)
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        tokens = [http.post("/submissions", json={"source_code": "import time\ntime.sleep(60)",
                                                  "language_id": 71}).json()["token"] for _ in range(2)]
    deadline = time.monotonic() + 60
    with contextlib.closing(sqlite3.connect(data / "stockade.db")) as db:
        while db.execute("SELECT count(*) FROM submissions WHERE attempts = 1").fetchone()[0] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    srv.kill()
    again = make_server({"STOCKADE_WORKERS": "1"}, data_dir=data, port=srv.port)
    with httpx.Client(base_url=again.url, timeout=30) as http:
        while http.get("/workers").json()[0]["working"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        shown = sorted(http.get(f"/submissions/{token}", params={"fields": "status_id"}).json()["status_id"]
                       for token in tokens)
        assert shown == [1, 2]
