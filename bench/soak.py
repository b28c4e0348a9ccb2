"""A soak of the HTTP service under a mixed, partly hostile load.

Not a test (it runs for minutes). Against a fresh server (`python -m
stockade.service` on a free port, temporary data and (small) cache directories,
deletion and loopback callbacks allowed), ~8 clients keep sending Judge0
submissions for a given number of minutes: normal programs in Python, C, C++,
Java and JavaScript (accepted and wrong answer), compile errors, time limits,
memory and fork bombs, output past max_file_size, programs that leave daemons
behind or fill /tmp with files, crashes by signal, non-UTF-8 output; with
wait=true (some abandoned by their client), polled, or in batches; some deleted once finished, some with a
callback to a loopback receiver here. Every answer is checked against what its
program must get (status id, stdout, message), every callback must arrive once
with the right body. Every minute and at the end it prints what was done, what
was wrong, and what the server holds (RSS, fds, threads, box processes,
cgroups, directories, database size); after the server stops, nothing of the
sandbox may be left.
Usage: .venv/bin/python bench/soak.py [MINUTES] [CLIENTS] [KIND,...]   (defaults 10 8, every kind)
Exit status 1 if anything was wrong or left behind; the server's log is then
kept (its path is printed).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import glob
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import httpx

FIRST_UID = 60000  # the sandbox's slot uids (sandbox/slots.py): FIRST_UID + slot index
SLOTS = 32  # STOCKADE_BOX_SLOTS, the default
STATE_DIR = "/run/stockade"  # the sandbox's state directory as root (sandbox/box.py)
HOST_LOCKS = "/run/lock/stockade"  # the slot locks as root (sandbox/slots.py)
ADMIN = "soak-admin"
UTF8_ERROR = ("some attributes for this submission cannot be converted to UTF-8, "
              "use base64_encoded=true query parameter")
PY, C, CPP, JAVA, JS = 71, 50, 54, 62, 63


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -------------------------------------------------------------------- the programs

@dataclass
class Case:
    """One submission and what it must get."""
    kind: str
    request: dict  # plain text fields; encoded here when the request is base64
    status: tuple[int, ...]
    stdout: bytes | None  # None: not checked (see check)
    message: str | None
    check: object = None  # an extra check(stdout: bytes) -> bool
    utf8: bool = True  # its outputs decode as UTF-8


C_SUM = "#include <stdio.h>\nint main(void){long a,b;scanf(\"%ld %ld\",&a,&b);printf(\"%ld\\n\",a+b);return 0;}\n"
CPP_SUM = "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<std::endl;}\n"
JAVA_SUM = ("import java.util.Scanner;\npublic class Main{public static void main(String[] x){"
            "Scanner s=new Scanner(System.in);long a=s.nextLong(),b=s.nextLong();System.out.println(a+b);}}\n")
JS_SUM = "const [a,b]=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(Number);console.log(a+b);\n"
PY_SUM = "a, b = map(int, input().split())\nprint(a + b)\n"
FORK_CAPPED = ("#include <stdio.h>\n#include <unistd.h>\nint main(void){for(;;){pid_t p=fork();"
               "if(p<0){puts(\"capped\");return 0;}if(p==0){pause();_exit(0);}}}\n")
MEMORY_BOMB_C = ("#include <stdlib.h>\n#include <string.h>\nint main(void){for(;;){char*p=malloc(1<<20);"
                 "if(!p)return 1;memset(p,1,1<<20);}}\n")
# Forks on, whatever fails, until the time limit.
FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
DAEMON = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
          "        time.sleep(1000)\n    os._exit(0)\nos.wait()\nprint('parent done')\n")
TMP_FILES = ("import os\nfor i in range(2000):\n    with open(f'/tmp/f{i}', 'w') as f:\n        f.write('x' * 100)\n"
             "print(len(os.listdir('/tmp')))\n")


def pair() -> tuple[str, bytes]:
    a, b = random.randint(-10**9, 10**9), random.randint(-10**9, 10**9)
    return f"{a} {b}\n", f"{a + b}\n".encode()


def summing(kind: str, language: int, source: str, unique: bool, wrong: bool = False) -> Case:
    stdin, out = pair()
    if unique:  # a new compile (and a new entry in the compile cache)
        source += ("// " if language != PY else "# ") + uuid.uuid4().hex + "\n"
    expected = out if not wrong else out + b"0"
    return Case(kind, {"source_code": source, "language_id": language, "stdin": stdin,
                       "expected_output": expected.decode()},
                (4,) if wrong else (3,), out, None)


def make_case() -> Case:
    kind = random.choices(list(KINDS), weights=[w for w, _ in KINDS.values()])[0]
    return KINDS[kind][1]()


def _flood() -> Case:
    return Case("output_flood", {"source_code": "import sys\nsys.stdout.write('x' * (3 << 20))\n",
                                 "language_id": PY, "max_file_size": 1024},
                (8,), None, "Output limit exceeded",
                check=lambda out: 0 < len(out) <= 1024 * 1024 and out == b"x" * len(out))


def _nonutf8() -> Case:
    n = random.randint(0, 255)
    return Case("non_utf8", {"source_code": f"import sys\nsys.stdout.buffer.write(b'\\xff\\xfe' + bytes([{n}]) + b'ok')\n",
                             "language_id": PY}, (3,), b"\xff\xfe" + bytes([n]) + b"ok", None, utf8=False)


KINDS: dict[str, tuple[float, object]] = {
    "python_ok": (8, lambda: summing("python_ok", PY, PY_SUM, False)),
    "python_wrong": (4, lambda: summing("python_wrong", PY, PY_SUM, False, wrong=True)),
    "c_ok": (5, lambda: summing("c_ok", C, C_SUM, random.random() < 0.3)),
    "c_wrong": (2, lambda: summing("c_wrong", C, C_SUM, False, wrong=True)),
    "cpp_ok": (3, lambda: summing("cpp_ok", CPP, CPP_SUM, random.random() < 0.2)),
    "java_ok": (2, lambda: summing("java_ok", JAVA, JAVA_SUM, False)),
    "java_wrong": (1, lambda: summing("java_wrong", JAVA, JAVA_SUM, False, wrong=True)),
    "js_ok": (3, lambda: summing("js_ok", JS, JS_SUM, False)),
    "compile_error": (3, lambda: Case("compile_error", {"source_code": f"int main(void){{return x{uuid.uuid4().hex};}}\n",
                                                        "language_id": C}, (6,), b"", None)),
    "cpu_time_limit": (3, lambda: Case("cpu_time_limit", {"source_code": "while True:\n    pass\n", "language_id": PY,
                                                          "cpu_time_limit": 0.5, "cpu_extra_time": 0.5},
                                       (5,), b"", "Time limit exceeded")),
    "wall_time_limit": (2, lambda: Case("wall_time_limit", {"source_code": "import time\ntime.sleep(30)\n", "language_id": PY,
                                                            "wall_time_limit": 1}, (5,), b"", "Time limit exceeded (wall clock)")),
    "memory_bomb_c": (2, lambda: Case("memory_bomb_c", {"source_code": MEMORY_BOMB_C, "language_id": C,
                                                        "memory_limit": 32000}, (11, 12), b"", "Memory limit exceeded")),
    "memory_bomb_py": (2, lambda: Case("memory_bomb_py", {"source_code": "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n",
                                                          "language_id": PY, "memory_limit": 64000},
                                       (11, 12), None, "Memory limit exceeded")),
    "fork_bomb_capped": (2, lambda: Case("fork_bomb_capped", {"source_code": FORK_CAPPED, "language_id": C,
                                                              "max_processes_and_or_threads": 30}, (3,), b"capped\n", None)),
    "fork_bomb": (2, lambda: Case("fork_bomb", {"source_code": FORK_BOMB, "language_id": PY,
                                                "cpu_time_limit": 1, "cpu_extra_time": 0.5, "wall_time_limit": 3},
                                  (5,), None, None, check=lambda out: True)),
    "output_flood": (2, _flood),
    "daemon_left": (3, lambda: Case("daemon_left", {"source_code": DAEMON, "language_id": PY}, (3,), b"parent done\n", None)),
    "tmp_files": (2, lambda: Case("tmp_files", {"source_code": TMP_FILES, "language_id": PY}, (3,), b"2000\n", None)),
    "segfault": (2, lambda: Case("segfault", {"source_code": "int main(void){volatile int*p=0;return *p;}\n", "language_id": C},
                                 (7,), b"", "Caught fatal signal 11")),
    "abort": (1, lambda: Case("abort", {"source_code": "#include <stdlib.h>\nint main(void){abort();}\n", "language_id": C},
                              (10,), b"", "Caught fatal signal 6")),
    "sigkill_self": (1, lambda: Case("sigkill_self", {"source_code": "import os\nprint('bye', flush=True)\nos.kill(os.getpid(), 9)\n",
                                                      "language_id": PY}, (12,), b"bye\n", "Caught fatal signal 9")),
    "exit_code": (2, lambda: Case("exit_code", {"source_code": "import sys\nprint('three')\nsys.exit(3)\n", "language_id": PY},
                                  (11,), b"three\n", "Exited with error status 3")),
    "non_utf8": (3, _nonutf8),
}


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def encoded_request(case: Case, encoded: bool) -> dict:
    body = dict(case.request)
    if encoded:
        for name in ("source_code", "stdin", "expected_output"):
            if name in body:
                body[name] = _b64(body[name])
    return body


def field_bytes(value, encoded: bool) -> bytes:
    if value is None:
        return b""
    return base64.b64decode(value) if encoded else value.encode()


def problems(case: Case, body: dict, encoded: bool) -> list[str]:
    """What is wrong with a finished submission's answer (fields=* or the defaults)."""
    wrong = []
    status = (body.get("status") or {}).get("id")
    if status not in case.status:
        wrong.append(f"status {status}, wanted {case.status}")
    stdout = field_bytes(body.get("stdout"), encoded)
    if case.stdout is not None and stdout != case.stdout:
        wrong.append(f"stdout {stdout[:200]!r}, wanted {case.stdout[:200]!r}")
    if case.check is not None and not case.check(stdout):
        wrong.append(f"stdout {stdout[:100]!r}... ({len(stdout)} bytes) fails its check")
    message = body.get("message")
    message = field_bytes(message, encoded).decode() if message is not None else None
    if case.kind == "fork_bomb":
        if message not in ("Time limit exceeded", "Time limit exceeded (wall clock)"):
            wrong.append(f"message {message!r}")
    elif message != case.message:
        wrong.append(f"message {message!r}, wanted {case.message!r}")
    if case.kind == "compile_error":
        compile_output = field_bytes(body.get("compile_output"), encoded)
        if b"error" not in compile_output:
            wrong.append(f"compile_output {compile_output[:200]!r}")
    if wrong:
        wrong.append(f"(token {body.get('token')}, stderr {field_bytes(body.get('stderr'), encoded)[:300]!r})")
    return wrong


# -------------------------------------------------------------------- the callback receiver

class Receiver:
    """A loopback HTTP server that records every PUT by its path."""

    def __init__(self):
        self.bodies: dict[str, list[bytes]] = collections.defaultdict(list)
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split()[:2]
                headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "PUT":
                    self.bodies[path].append(body)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        writer.close()


# -------------------------------------------------------------------- the load

@dataclass
class Tally:
    done: collections.Counter = field(default_factory=collections.Counter)
    wrong: list[str] = field(default_factory=list)
    deleted: int = 0
    batches: int = 0
    callbacks: dict[str, tuple[Case, str | None]] = field(default_factory=dict)  # path -> (case, token)

    def fail(self, what: str) -> None:
        self.wrong.append(what)
        print(f"WRONG: {what}", flush=True)


class Load:
    def __init__(self, url: str, receiver: Receiver, tally: Tally):
        self.url, self.receiver, self.tally = url, receiver, tally

    def _maybe_callback(self, case: Case, body: dict) -> str | None:
        if random.random() < 0.15:
            path = f"/cb/{uuid.uuid4().hex}"
            body["callback_url"] = f"http://127.0.0.1:{self.receiver.port}{path}"
            self.tally.callbacks[path] = (case, None)
            return path
        return None

    async def client(self, deadline: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=120) as http:
            while time.monotonic() < deadline:
                try:
                    roll = random.random()
                    if roll < 0.1:
                        await self.batch(http)
                    elif roll < 0.12:
                        await self.abandon(http)
                    else:
                        await self.single(http, wait=roll < 0.55)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self.tally.fail(f"client error: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(1)

    async def single(self, http: httpx.AsyncClient, wait: bool) -> None:
        case = make_case()
        encoded = not case.utf8 or random.random() < 0.5
        body = encoded_request(case, encoded)
        path = self._maybe_callback(case, body)
        params = {"base64_encoded": str(encoded).lower(), "wait": str(wait).lower(), "fields": "*"}
        response = await http.post("/submissions", params=params, json=body)
        if response.status_code == 503:  # queue full: not wrong, try later
            self.tally.done["queue_full"] += 1
            if path:
                del self.tally.callbacks[path]
            await asyncio.sleep(0.5)
            return
        if response.status_code != 201:
            self.tally.fail(f"{case.kind}: POST answered {response.status_code} {response.text[:300]}")
            return
        answer = response.json()
        token = answer["token"]
        if path:
            self.tally.callbacks[path] = (case, token)
        if wait and not encoded and not case.utf8:
            if answer.get("error") != UTF8_ERROR:
                self.tally.fail(f"{case.kind}: wait=true without base64 answered {answer}")
            answer = await self.poll(http, token, encoded=True)
            encoded = True
        elif not wait:
            answer = await self.poll(http, token, encoded)
        if answer is None:
            return
        for problem in problems(case, answer, encoded):
            self.tally.fail(f"{case.kind} ({'wait' if wait else 'polled'}, base64 {encoded}): {problem}")
        self.tally.done[case.kind] += 1
        if not wait and random.random() < 0.3:
            await self.delete(http, token)

    async def abandon(self, http: httpx.AsyncClient) -> None:
        """A wait=true request whose client hangs up before the answer: the
        run goes on, the server must forget the request (and its socket)."""
        body = {"source_code": "import time\ntime.sleep(1)\nprint('late')\n", "language_id": PY}
        with contextlib.suppress(httpx.TimeoutException):
            response = await http.post("/submissions", params={"wait": "true"}, json=body, timeout=0.3)
            if response.status_code == 503:
                self.tally.done["queue_full"] += 1
                return
            if response.status_code != 201 or (response.json().get("status") or {}).get("id") != 3:
                self.tally.fail(f"abandoned wait answered {response.status_code} {response.text[:300]}")
        self.tally.done["abandoned_wait"] += 1

    async def poll(self, http: httpx.AsyncClient, token: str, encoded: bool) -> dict | None:
        started = time.monotonic()
        while time.monotonic() - started < 300:
            response = await http.get(f"/submissions/{token}",
                                      params={"base64_encoded": str(encoded).lower(), "fields": "*"})
            if response.status_code != 200:
                self.tally.fail(f"GET {token} answered {response.status_code} {response.text[:300]}")
                return None
            body = response.json()
            if body["status"]["id"] > 2:
                return body
            await asyncio.sleep(0.2)
        self.tally.fail(f"{token} not finished after 300 s")
        return None

    async def delete(self, http: httpx.AsyncClient, token: str) -> None:
        response = await http.delete(f"/submissions/{token}", headers={"X-Auth-User": ADMIN})
        if response.status_code != 200 or response.json().get("token") != token:
            self.tally.fail(f"DELETE {token} answered {response.status_code} {response.text[:300]}")
            return
        gone = await http.get(f"/submissions/{token}")
        if gone.status_code != 404:
            self.tally.fail(f"GET of deleted {token} answered {gone.status_code}")
        self.tally.deleted += 1

    async def batch(self, http: httpx.AsyncClient) -> None:
        cases = [make_case() for _ in range(random.randint(2, 6))]
        items = []
        for case in cases:
            item = encoded_request(case, True)
            self._maybe_callback(case, item)
            items.append(item)
        paths = [next((p for p, (c, _) in self.tally.callbacks.items() if c is case), None) for case in cases]
        response = await http.post("/submissions/batch", params={"base64_encoded": "true"},
                                   json={"submissions": items})
        if response.status_code == 503:
            self.tally.done["queue_full"] += 1
            for path in paths:
                if path:
                    del self.tally.callbacks[path]
            await asyncio.sleep(0.5)
            return
        if response.status_code != 201:
            self.tally.fail(f"batch POST answered {response.status_code} {response.text[:300]}")
            return
        tokens = [item["token"] for item in response.json()]
        for path, case, token in zip(paths, cases, tokens, strict=True):
            if path:
                self.tally.callbacks[path] = (case, token)
        started = time.monotonic()
        while time.monotonic() - started < 300:
            got = await http.get("/submissions/batch", params={"tokens": ",".join(tokens),
                                                               "base64_encoded": "true", "fields": "*"})
            if got.status_code != 200:
                self.tally.fail(f"batch GET answered {got.status_code} {got.text[:300]}")
                return
            submissions = got.json()["submissions"]
            if all(s["status"]["id"] > 2 for s in submissions):
                break
            await asyncio.sleep(0.3)
        else:
            self.tally.fail(f"batch {tokens} not finished after 300 s")
            return
        for case, answer in zip(cases, submissions, strict=True):
            for problem in problems(case, answer, True):
                self.tally.fail(f"{case.kind} (batch): {problem}")
            self.tally.done[case.kind] += 1
        self.tally.batches += 1


def check_callbacks(tally: Tally, receiver: Receiver, final: bool) -> list[str]:
    """Callbacks received more than once, with a wrong body, or (final) never."""
    wrong = []
    for path, (case, token) in tally.callbacks.items():
        bodies = receiver.bodies.get(path, [])
        if len(bodies) > 1:
            wrong.append(f"callback {path} ({case.kind}) received {len(bodies)} times")
        if not bodies:
            if final and token is not None:
                wrong.append(f"callback {path} ({case.kind}, {token}) never received")
            continue
        body = json.loads(bodies[0])
        if token is not None and body.get("token") != token:
            wrong.append(f"callback {path}: token {body.get('token')}, wanted {token}")
        wrong += [f"callback {path} ({case.kind}): {p}" for p in problems(case, body, True)
                  if not p.startswith("compile_output")]  # (not among the default fields)
    return wrong


# -------------------------------------------------------------------- what the host holds

def _proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


def processes() -> dict[int, tuple[int, int]]:
    """pid -> (uid, ppid) of every process."""
    out = subprocess.run(["ps", "-eo", "pid=,uid=,ppid="], capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        pid, uid, ppid = map(int, line.split())
        table[pid] = (uid, ppid)
    return table


def in_slot_range(uid: int) -> bool:
    return FIRST_UID <= uid < FIRST_UID + SLOTS


def box_processes(server_pid: int | None) -> tuple[int, int, int]:
    """Processes under the slot uids: all of them (other Stockade processes on the
    host count too), those under our server, and orphans (their ancestors are all
    slot uids up to init: a box nobody supervises)."""
    table = processes()
    total = ours = orphans = 0
    for pid, (uid, _) in table.items():
        if not in_slot_range(uid):
            continue
        total += 1
        parent = table[pid][1]
        while parent in table and in_slot_range(table[parent][0]):
            parent = table[parent][1]
        if parent == server_pid:
            ours += 1
        elif parent in (0, 1) or parent not in table:
            orphans += 1
    return total, ours, orphans


def held_lock_inodes() -> set[int]:
    # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF", or "1: -> FLOCK ..." for a waiter.
    with open("/proc/locks") as f:
        return {int(m.group(1)) for line in f if (m := re.search(r" [0-9a-f]+:[0-9a-f]+:(\d+) ", line))}


def unheld(names: list[str]) -> list[str]:
    """Box names (UID-INDEX) whose slot no process holds: left behind."""
    held = held_lock_inodes()
    left = []
    for name in names:
        uid = name.split("-")[0]
        try:
            inode = os.stat(os.path.join(HOST_LOCKS, f"uid-{uid}.lock")).st_ino
        except FileNotFoundError:
            inode = None
        if inode not in held:
            left.append(name)
    return left


def box_cgroups() -> list[str]:
    return [os.path.basename(p) for p in glob.glob("/sys/fs/cgroup/*/stockade/box-*")
            + glob.glob("/sys/fs/cgroup/stockade/box-*")]


def box_dirs() -> list[str]:
    with contextlib.suppress(FileNotFoundError):
        return os.listdir(os.path.join(STATE_DIR, "boxes"))
    return []


def box_mounts() -> list[str]:
    boxes = os.path.join(STATE_DIR, "boxes")
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(boxes + "/")]


def count(path: str) -> int:
    with contextlib.suppress(FileNotFoundError):
        return sum(len(files) + len(dirs) for _, dirs, files in os.walk(path))
    return 0


def server_sample(pid: int) -> str:
    status = _proc_status(pid)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return f"server rss {int(status['VmRSS'].split()[0]) // 1024} MiB, fds {fds}, threads {status['Threads'].strip()}"


def host_sample(server_pid: int, data_dir: str, cache_dir: str) -> str:
    total, ours, orphans = box_processes(server_pid)
    groups = box_cgroups()
    db = sum(os.path.getsize(p) for p in glob.glob(os.path.join(data_dir, "stockade.db*")))
    return (f"slot-uid processes {total} (ours {ours}, orphans {orphans}); box cgroups {len(groups)} "
            f"(unheld {len(unheld([g.removeprefix('box-') for g in groups]))}); box dirs {len(box_dirs())} "
            f"(unheld {len(unheld(box_dirs()))}); state dir entries {len(os.listdir(STATE_DIR))}; "
            f"data dir entries {len(os.listdir(data_dir))}; cache entries {count(cache_dir)}; "
            f"/tmp entries {len(os.listdir('/tmp'))}; sqlite {db / 1e6:.1f} MB")


def report(label: str, tally: Tally, receiver: Receiver, server_pid: int, data_dir: str, cache_dir: str,
           started: float) -> None:
    done = sum(v for k, v in tally.done.items() if k != "queue_full")
    print(f"--- {label} ({(time.monotonic() - started) / 60:.1f} min): {done} submissions, "
          f"{tally.batches} batches, {tally.deleted} deleted, {tally.done['queue_full']} queue full, "
          f"callbacks {sum(map(len, receiver.bodies.values()))}/{len(tally.callbacks)}", flush=True)
    print("  done: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.done.items()) if k != "queue_full"))
    print(f"  wrong answers: {len(tally.wrong)}")
    print(f"  {server_sample(server_pid)}")
    print(f"  {host_sample(server_pid, data_dir, cache_dir)}", flush=True)


async def soak(url: str, minutes: float, clients: int, server: subprocess.Popen, data_dir: str, cache_dir: str,
               receiver: Receiver, tally: Tally) -> None:
    load = Load(url, receiver, tally)
    started = time.monotonic()
    deadline = started + minutes * 60
    tasks = [asyncio.create_task(load.client(deadline)) for _ in range(clients)]
    minute = 1
    while not all(t.done() for t in tasks):
        await asyncio.wait(tasks, timeout=max(0.1, started + minute * 60 - time.monotonic()))
        if time.monotonic() >= started + minute * 60 and server.poll() is None:
            report(f"minute {minute}", tally, receiver, server.pid, data_dir, cache_dir, started)
            minute += 1
        if server.poll() is not None:
            tally.fail(f"the server exited with {server.returncode}")
            for t in tasks:
                t.cancel()
            break
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception():
            tally.fail(f"client crashed: {t.exception()!r}")
    # Callbacks still on their way.
    for _ in range(60):
        if not any(path not in receiver.bodies for path, (_, token) in tally.callbacks.items() if token):
            break
        await asyncio.sleep(0.5)
    for problem in check_callbacks(tally, receiver, final=True):
        tally.fail(problem)
    report("end", tally, receiver, server.pid, data_dir, cache_dir, started)


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    if len(sys.argv) > 3:  # only these kinds (to chase one problem)
        for kind in set(KINDS) - set(sys.argv[3].split(",")):
            del KINDS[kind]
    if os.geteuid() != 0:
        raise SystemExit("run as root: the soak counts the sandbox's slot-uid processes and cgroups")
    port = free_port()
    baseline_groups = set(unheld([g.removeprefix("box-") for g in box_cgroups()]))
    baseline_dirs, baseline_mounts = set(unheld(box_dirs())), set(box_mounts())
    with tempfile.TemporaryDirectory(prefix="stockade-soak-") as top:
        os.chmod(top, 0o711)  # the compile cache's parents must be traversable by the box uids
        data_dir, cache_dir = os.path.join(top, "data"), os.path.join(top, "cache")
        log_path = os.path.join(top, "server.log")
        env = {**os.environ, "STOCKADE_DATA_DIR": data_dir, "STOCKADE_CACHE_DIR": cache_dir,
               "STOCKADE_CACHE_SIZE": str(2 << 20), "STOCKADE_LOG_LEVEL": "info",
               "STOCKADE_ENABLE_SUBMISSION_DELETE": "true", "STOCKADE_AUTHZ_TOKEN": ADMIN,
               "STOCKADE_CALLBACK_ALLOWED_NETWORKS": "127.0.0.0/8", "STOCKADE_MAX_QUEUE_SIZE": "200"}
        tally, receiver = Tally(), Receiver()
        with open(log_path, "wb") as log:
            server = subprocess.Popen([sys.executable, "-m", "stockade.service", "--port", str(port)],
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/version", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            print(f"soak: {minutes:g} min, {clients} clients, server pid {server.pid} on port {port}", flush=True)

            async def run() -> None:
                await receiver.start()
                try:
                    await soak(url, minutes, clients, server, data_dir, cache_dir, receiver, tally)
                finally:
                    receiver.server.close()

            asyncio.run(run())
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                tally.fail("the server did not stop within 30 s of SIGTERM")
        # After the server: nothing of the sandbox may be left.
        time.sleep(1)
        _, _, orphans = box_processes(None)
        groups = set(unheld([g.removeprefix("box-") for g in box_cgroups()])) - baseline_groups
        dirs = set(unheld(box_dirs())) - baseline_dirs
        mounts = set(box_mounts()) - baseline_mounts
        print(f"after the server: exit status {server.returncode}; orphan slot-uid processes {orphans}; "
              f"box cgroups left {sorted(groups)}; box dirs left {sorted(dirs)}; box mounts left {sorted(mounts)}")
        for what, left in (("orphan processes", orphans), ("cgroups", groups), ("box dirs", dirs), ("mounts", mounts)):
            if left:
                tally.fail(f"left after the server stopped: {what} {left}")
        with open(log_path, errors="replace") as f:
            lines = f.read().splitlines()
        bad = [line for line in lines if re.search(r"\b(ERROR|CRITICAL|WARNING)\b", line)]
        runs = sum(" run token=" in line for line in lines)
        print(f"server log: {len(lines)} lines, {runs} runs, {len(bad)} warnings or errors")
        for line in bad[:20]:
            print(f"  {line}")
        if tally.wrong or bad:
            kept = f"/tmp/stockade-soak-{os.getpid()}.log"
            os.rename(log_path, kept)
            print(f"server log kept: {kept}")
        print(f"wrong answers and leaks: {len(tally.wrong)}")
        for line in tally.wrong[:40]:
            print(f"  {line}")
        if tally.wrong or bad:
            sys.exit(1)


if __name__ == "__main__":
    main()
