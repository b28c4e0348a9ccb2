"""Hostile programs through the real box, one test per file in programs/.

Each program carries its expectation in its header comment (data, not code):

    # expect: status=time_limit|wall_time_limit signal=9 max_wall=2.5
    # limits: cpu_time=1 wall_time=3 memory=64M processes=32
    # stdin: random 32M          (default: empty)
    # stdout-contains: DONE      (repeatable; {stdin_sha256} and {stdin_len} expand)
    # runs: sequence write check (or: concurrent a b; each run gets its word as argv[1])
    # xfail: <precise reason>    (a weakness of the box that is known and reported)
    # cflags: -static            (C programs: compiled on the host, run only in the box)

Programs print what they observe. A probe that finds access prints a line with
LEAK, which fails the test; no host secret may ever appear in any output. After
every run the host is checked: no process of a slot uid, no box cgroup, no box
directory, sentinels and planted secrets unchanged, no connection to the test's
listeners, and the next run works. Every program sees /box/host.json: the paths,
ports and socket names it should try to reach (never a secret value)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from stockade.sandbox import File, Limits, RunResult, Sandbox, Status, parse_size
from tests.conftest import kept_empty

PROGRAMS_DIR = Path(__file__).parent / "programs"
PROBE = Path(__file__).parent / "probe.py"
FIRST_UID = 60000
MAX_SLOTS = 4096  # any slot uid on the host counts, not only this module's four
ENV_SECRET_NAME = "STOCKADE_HOSTILE_SUITE_SECRET"
INTERPRETERS = {".py": ["/usr/bin/python3"], ".sh": ["/bin/bash"]}
EXPECT_KEYS = {"status", "exit_code", "signal", "stdout_truncated", "stderr_truncated", "oom_killed",
               "stdout_len", "stdout", "max_wall"}
HEADER_KEYS = ("expect", "limits", "stdin", "stdout-contains", "stderr-contains", "runs", "xfail", "cflags")
# Short limits keep the whole suite fast; a header overrides any of them.
DEFAULT_LIMITS = {"cpu_time": 1.0, "wall_time": 3.0}


# -- programs as data ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Program:
    path: Path
    expect: dict[str, str]
    limits: Limits
    stdin: str
    stdout_contains: tuple[str, ...]
    stderr_contains: tuple[str, ...]
    runs: tuple[str, ...]  # ("single",) or ("sequence"|"concurrent", word, word...)
    xfail: str | None
    cflags: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.name


def parse_header(path: Path) -> Program:
    """The leading comment lines of a program: `# key: value` or `// key: value`."""
    fields: dict[str, list[str]] = {key: [] for key in HEADER_KEYS}
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#!") or not text:
            continue
        match = re.match(r"^(?:#|//)\s*([a-z-]+):\s*(.*?)\s*$", text)
        if match is None:
            if text.startswith(("#", "//")):
                continue  # prose in the header
            break
        key, value = match.groups()
        if key not in fields:
            raise ValueError(f"{path.name}: unknown header key {key!r}")
        fields[key].append(value)
    if len(fields["expect"]) != 1:
        raise ValueError(f"{path.name}: needs exactly one 'expect:' line")
    expect = dict(item.split("=", 1) for item in fields["expect"][0].split())
    if "status" not in expect or not expect.keys() <= EXPECT_KEYS:
        raise ValueError(f"{path.name}: 'expect:' needs status= and knows only {sorted(EXPECT_KEYS)}")
    if not {*expect["status"].split("|")} <= {status.value for status in Status}:
        raise ValueError(f"{path.name}: unknown status in {expect['status']!r}")
    limits = dict(DEFAULT_LIMITS)
    for item in " ".join(fields["limits"]).split():
        key, value = item.split("=", 1)
        limits[key] = float(value) if key in ("cpu_time", "wall_time") else (
            int(value) if key in ("processes", "open_files") else parse_size(value))
    runs = tuple(" ".join(fields["runs"]).split()) or ("single",)
    return Program(
        path=path,
        expect=expect,
        limits=Limits(**limits),
        stdin=" ".join(fields["stdin"]),
        stdout_contains=tuple(fields["stdout-contains"]),
        stderr_contains=tuple(fields["stderr-contains"]),
        runs=runs,
        xfail=" ".join(fields["xfail"]) or None,
        cflags=tuple(" ".join(fields["cflags"]).split()),
    )


def load_programs() -> list:
    params = []
    for path in sorted(PROGRAMS_DIR.iterdir()):
        if path.suffix not in (*INTERPRETERS, ".c"):
            continue
        program = parse_header(path)
        marks = [pytest.mark.xfail(strict=True, reason=program.xfail)] if program.xfail else []
        params.append(pytest.param(program, id=program.name, marks=marks))
    return params


PROGRAMS = load_programs()


# -- the host: planted secrets, listeners, and the checks after every run -----


@functools.cache
def setuid_binaries() -> list[str]:
    """The host's setuid and setgid files under /usr (what every box sees, read
    only): walked once here, not by the probe inside a box, where a walk of
    /usr/lib on a busy disk once outlasted the probe's wall time."""
    found = []
    for top in ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec"):
        for dirpath, _, names in os.walk(top):
            for name in names:
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                        found.append(path)
    return sorted(found)


class Host:
    """Everything the programs must not reach, and the proofs that they did not."""

    def __init__(self, root: Path, sandbox: Sandbox):
        self.sandbox = sandbox
        self.tokens: list[str] = []  # strings that must never appear in any output
        self.cleanup: list = []
        # Sentinels outside the box: files, a nested one, a link to one.
        self.sentinel_dir = root / "sentinels"
        (self.sentinel_dir / "nested").mkdir(parents=True)
        for rel in ("a.txt", "b.bin", "nested/c.txt"):
            token = self._token()
            (self.sentinel_dir / rel).write_text(f"sentinel {token}\n")
        os.symlink("a.txt", self.sentinel_dir / "link-to-a")
        # Planted host secrets, 0600 root: one under /root, one directly in /tmp.
        self.secret_paths = []
        for parent in ("/root", "/tmp"):
            path = Path(parent) / f"stockade-hostile-secret-{secrets.token_hex(6)}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"host secret {self._token()}\n")
            self.secret_paths.append(str(path))
            self.cleanup.append(lambda p=path: p.unlink(missing_ok=True))
        # The supervisor's own environment holds a secret too.
        self.env_secret = self._token()
        previous = os.environ.get(ENV_SECRET_NAME)
        os.environ[ENV_SECRET_NAME] = self.env_secret
        self.cleanup.append(lambda: os.environ.pop(ENV_SECRET_NAME, None) if previous is None
                            else os.environ.__setitem__(ENV_SECRET_NAME, previous))
        # Descriptors the test holds open, inheritable on purpose: none may reach a box.
        self.extra_fds = [os.open(self.secret_paths[0], os.O_RDONLY), *os.pipe()]
        for fd in self.extra_fds:
            os.set_inheritable(fd, True)
            self.cleanup.append(lambda fd=fd: os.close(fd))
        # Listeners on the host's loopback and unix sockets: no box may connect.
        self.listeners: dict[str, socket.socket] = {}
        tcp = self._listen(socket.AF_INET, ("127.0.0.1", 0), "tcp")
        self.tcp_port = tcp.getsockname()[1]
        self.tcp6_port = None
        with contextlib.suppress(OSError):
            self.tcp6_port = self._listen(socket.AF_INET6, ("::1", 0), "tcp6").getsockname()[1]
        self.abstract_name = f"stockade-test-{secrets.token_hex(6)}"
        self._listen(socket.AF_UNIX, "\0" + self.abstract_name, "abstract")
        self.unix_path = str(root / "host.sock")
        self._listen(socket.AF_UNIX, self.unix_path, "unix")
        os.chmod(self.unix_path, 0o777)  # anyone who can see it may connect: only the view protects it
        self.baseline = self.snapshot()

    def _token(self) -> str:
        token = secrets.token_hex(16)
        self.tokens.append(token)
        return token

    def _listen(self, family, address, name) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        self.cleanup.append(sock.close)
        sock.bind(address)
        sock.listen(16)
        sock.setblocking(False)
        self.listeners[name] = sock
        return sock

    def close(self) -> None:
        for action in reversed(self.cleanup):
            with contextlib.suppress(OSError):
                action()

    def context(self) -> bytes:
        """/box/host.json: where the host's things are (paths and ports, no secret)."""
        return json.dumps({
            "secret_paths": self.secret_paths,
            "sentinel_dir": str(self.sentinel_dir),
            "sentinel_files": sorted(str(p) for p in self.sentinel_dir.rglob("*")),
            "env_name": ENV_SECRET_NAME,
            "host_pid": os.getpid(),
            "extra_fds": self.extra_fds,
            "tcp_port": self.tcp_port,
            "tcp6_port": self.tcp6_port,
            "abstract_name": self.abstract_name,
            "unix_path": self.unix_path,
            "project_dir": str(Path(__file__).resolve().parents[2]),
            "state_dir": self.sandbox.state_dir,
            "setuid_binaries": setuid_binaries(),
        }).encode()

    def snapshot(self) -> dict[str, tuple]:
        """Content hash and ownership of what a broken teardown or escape would touch."""
        paths = [*self.secret_paths, *sorted(map(str, self.sentinel_dir.rglob("*"))), str(self.sentinel_dir),
                 "/", "/etc", "/root", "/tmp", "/usr", "/usr/bin", "/etc/passwd", "/etc/shadow",
                 "/etc/group", "/etc/hostname", self.sandbox.state_dir, self.sandbox.boxes_dir]
        state = {}
        for path in paths:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                state[path] = ("missing",)
                continue
            digest = ""
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(path)
            state[path] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, digest)
        # Nothing may appear in or vanish from the sentinel tree.
        state["sentinel tree"] = tuple(sorted(str(p) for p in self.sentinel_dir.rglob("*")))
        return state

    # -- after every run ----------------------------------------------------

    def _slot_idle(self, slot: int) -> bool:
        """A slot another process holds right now (another test run on this host)
        is not ours to judge: its lock tells."""
        return not self.sandbox.slot_in_use(slot)

    @staticmethod
    def _status(pid: int) -> dict[str, str]:
        try:
            with open(f"/proc/{pid}/status") as f:
                return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except OSError:
            return {}

    @staticmethod
    def _is_slot_uid(uid: int) -> bool:
        return FIRST_UID <= uid < FIRST_UID + MAX_SLOTS

    def _started_at(self, pid: int) -> float:
        """Start time of `pid` in seconds since boot (field 22 of /proc/PID/stat)."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")

    def _ours(self, pid: int) -> bool:
        """Whether a recent slot-uid process comes from this module's runs. Other
        Stockade processes share this host (and the slot uids, with other state
        directories). Walk up to the topmost slot-uid ancestor: its parent is this
        test process (ours), or it is another supervisor's live bwrap (not ours), or
        it is an orphan some reaper adopted (ours: the caller only asks about
        processes that started during our run)."""
        top = pid
        for _ in range(64):
            status = self._status(pid)
            if not status:
                return False  # gone meanwhile
            if not any(self._is_slot_uid(int(u)) for u in status["Uid"].split()):
                break
            top, pid = pid, int(status["PPid"])
        if pid in (os.getpid(), 0, 1):
            return True
        try:
            argv0 = Path(f"/proc/{top}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            return False
        return not argv0.endswith(b"/bwrap")

    def leftover_processes(self, since: float) -> list[tuple[int, int]]:
        """(pid, uid) of slot-uid processes (any of real, effective, saved, fs uid;
        zombies included) left by this module's runs."""
        found = []
        for name in filter(str.isdigit, os.listdir("/proc")):
            pid = int(name)
            status = self._status(pid)
            uids = [int(u) for u in status.get("Uid", "").split()]
            slot_uids = [u for u in uids if self._is_slot_uid(u)]
            if not slot_uids:
                continue
            if self._started_at(pid) < since - 0.05 and int(status.get("PPid", 0)) != os.getpid():
                continue  # older than our run: another Stockade process's box
            if self._slot_idle(slot_uids[0] - FIRST_UID) and self._ours(pid):
                found.append((pid, slot_uids[0]))
        return found

    def lasting_processes(self, since: float, grace: float = 1.0) -> list[tuple[int, int]]:
        """leftover_processes that are still there after `grace` seconds. A box of
        another Stockade process on this host that is exiting right now (state D or
        Z, its slot already unlocked) must not count; a process our run left does
        not go away by itself."""
        deadline = time.monotonic() + grace
        found = self.leftover_processes(since)
        while found and time.monotonic() < deadline:
            time.sleep(0.05)
            found = [entry for entry in self.leftover_processes(since) if entry in found]
        return found

    def traces(self) -> set[str]:
        """Box cgroups and box directories present now, whoever made them."""
        return {*glob.glob("/sys/fs/cgroup/*/stockade/box-*"), *glob.glob(os.path.join(self.sandbox.boxes_dir, "*"))}

    def sweep(self, since: float, before: set[str]) -> list[str]:
        """Every trace the runs since `since` (CLOCK_BOOTTIME) left on the host, given
        the cgroups and box directories that existed `before` them (a supervisor
        elsewhere killed -9 leaves its own, cleaned by the next run of that slot: not
        ours). Ours are also removed, so one failure does not cascade into the next test."""
        problems = []
        for pid, uid in self.lasting_processes(since):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
            except OSError:
                cmdline = b"?"
            state = self._status(pid).get("State", "gone")
            problems.append(f"process {pid} (uid {uid}, {state}) left: {cmdline!r}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # a box process of this module's own runs
        # Another Stockade process on this host may be using a slot name for a moment
        # (its lock held, or another state directory): a leftover is one that stays.
        deadline = time.monotonic() + 1.0
        while True:
            # A slot's cgroup kept empty for its next run is not a trace (kept_empty).
            left = sorted(path for path in self.traces() - before
                          if self._slot_idle(int(re.search(r"(\d+)$", path).group(1)))
                          and not kept_empty(path))
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for path in left:
            if path.startswith("/sys/fs/cgroup/"):
                problems.append(f"cgroup left: {path}")
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            else:
                problems.append(f"box directory left: {path}")
                # GNU rm: no recursion limit, never follows links, stays on this fs.
                subprocess.run(["rm", "-rf", "--one-file-system", "--", path], check=False)
        for name, sock in self.listeners.items():
            try:
                conn, peer = sock.accept()
            except BlockingIOError:
                continue
            conn.close()
            problems.append(f"the {name} listener got a connection from {peer!r}")
        now = self.snapshot()
        for path, before in self.baseline.items():
            if now.get(path) != before:
                problems.append(f"host changed: {path}: {before} -> {now.get(path)}")
        return problems


SLOTS = 4


@pytest.fixture(scope="module", params=["cold", "warm"])
def sandbox(request):
    # Every program runs in boxes built for it (cold) and in boxes built ahead of
    # time that it takes over (warm): both paths must hold.
    box = Sandbox(slots=SLOTS, warm=2 if request.param == "warm" else 0)
    yield box
    box.close()


@pytest.fixture(scope="module")
def host(sandbox):
    # Directly in /tmp and world-traversable, sentinels world-readable: only the box's
    # view of the filesystem hides them (pytest's own tmp dirs are 0700 root).
    root = Path(tempfile.mkdtemp(prefix="stockade-hostile-"))
    os.chmod(root, 0o755)
    planted = Host(root, sandbox)
    try:
        yield planted
    finally:
        planted.close()
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """C programs compiled on the host (never run there), once per module."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out_dir = tmp_path_factory.mktemp("hostile-bin")
    cache: dict[Path, bytes] = {}

    def compile_(program: Program) -> bytes:
        if program.path not in cache:
            binary = out_dir / program.path.stem
            subprocess.run(["gcc", "-O1", "-Wall", "-o", str(binary), str(program.path), *program.cflags],
                           check=True, capture_output=True)
            cache[program.path] = binary.read_bytes()
        return cache[program.path]

    return compile_


# -- one program ---------------------------------------------------------------


def make_stdin(spec: str) -> bytes:
    if not spec:
        return b""
    kind, *args = spec.split()
    if kind == "random":
        # Echoed back by some programs: it must not spell the LEAK marker by chance
        # (about once in 150 runs of 30 MB).
        return os.urandom(parse_size(args[0])).replace(b"LEAK", b"LEAF")
    raise ValueError(f"unknown stdin spec {spec!r}")


def invocation(program: Program, compiled) -> tuple[list[str], dict]:
    if program.path.suffix == ".c":
        return [f"/box/{program.path.stem}"], {program.path.stem: File(compiled(program), 0o755)}
    argv = [*INTERPRETERS[program.path.suffix], f"/box/{program.name}"]
    # probe.py: the shared syscall probe the Python programs import.
    return argv, {program.name: program.path.read_bytes(), "probe.py": PROBE.read_bytes()}


def check_result(program: Program, result: RunResult, stdin: bytes, host: Host, label: str) -> None:
    where = f"{program.name} {label}: {result.status} exit={result.exit_code} signal={result.signal} " \
            f"message={result.message!r}\nstdout={result.stdout[-2000:]!r}\nstderr={result.stderr[-2000:]!r}"
    output = result.stdout + b"\n" + result.stderr
    # A probe that found access says so; it must make the test fail.
    assert b"LEAK" not in output, where
    for token in host.tokens:
        assert token.encode() not in output, f"a host secret reached the program's output\n{where}"
    expect = program.expect
    assert result.status.value in expect["status"].split("|"), where
    for key in ("exit_code", "signal"):
        if key in expect:
            assert getattr(result, key) == (None if expect[key] == "none" else int(expect[key])), where
    for key in ("stdout_truncated", "stderr_truncated", "oom_killed"):
        if key in expect:
            assert getattr(result, key) is (expect[key] == "true"), where
    if "stdout_len" in expect:
        assert len(result.stdout) == parse_size(expect["stdout_len"]), where
    if expect.get("stdout") == "stdin":
        assert result.stdout == stdin, f"{where}\n(stdout is not the stdin echoed back: {len(result.stdout)} bytes)"
    if "max_wall" in expect:
        assert result.wall_time <= float(expect["max_wall"]), where
    values = {"stdin_sha256": hashlib.sha256(stdin).hexdigest(), "stdin_len": str(len(stdin))}
    for needle in program.stdout_contains:
        assert needle.format(**values).encode() in result.stdout, f"missing {needle!r}\n{where}"
    for needle in program.stderr_contains:
        assert needle.format(**values).encode() in result.stderr, f"missing {needle!r}\n{where}"


def test_the_catalog_is_complete():
    # issue 2 asks for at least 35 hostile programs; each starts with a line saying what it does.
    assert len(PROGRAMS) >= 40
    for param in PROGRAMS:
        first = param.values[0].path.read_text().splitlines()[0]
        assert first.startswith(("# ", "// ")) and not re.match(r"^(?:#|//)\s*[a-z-]+:", first), param.id


@pytest.mark.parametrize("program", PROGRAMS)
def test_hostile(program: Program, sandbox: Sandbox, host: Host, compiled):
    argv, files = invocation(program, compiled)
    files["host.json"] = host.context()

    def run(words: list[str]) -> list[tuple[str, bytes, RunResult]]:
        stdins = [make_stdin(program.stdin) for _ in words]

        async def go():
            if sandbox.warm:
                # Fewer only while another process on this host holds our slots.
                warmed.append(await sandbox.prewarm())
            return await asyncio.gather(*(
                sandbox.run([*argv, *([word] if word else [])], files=files, stdin=stdin, limits=program.limits)
                for word, stdin in zip(words, stdins, strict=True)))

        return list(zip(words, stdins, asyncio.run(go()), strict=True))

    warm_before = sandbox.warm_runs
    warmed: list[int] = []
    mode, *words = program.runs
    batches = {"single": [[""]], "sequence": [[w] for w in words], "concurrent": [words]}[mode]
    problems: list[str] = []
    outcomes = []
    started = time.monotonic()
    since = time.clock_gettime(time.CLOCK_BOOTTIME)  # processes older than this are not ours
    for batch in batches:
        before = host.traces()
        try:
            outcomes += run(batch)
        finally:
            # After EVERY run: nothing left behind, nothing on the host changed.
            problems += host.sweep(since, before)
    assert not problems, "\n".join(problems)
    for word, stdin, result in outcomes:
        check_result(program, result, stdin, host, word or "run")
    if sandbox.warm and program.limits.tmp_size == Limits().tmp_size and any(warmed):
        assert sandbox.warm_runs > warm_before, "no run of this program took a warm box"
    if mode == "concurrent":
        # The runs really overlapped: together they took less than one after the other.
        assert time.monotonic() - started < sum(r.wall_time for _, _, r in outcomes), outcomes
    # The box still works for the next program.
    before = host.traces()
    after = sandbox.run_sync(["/bin/sh", "-c", "echo alive"], limits=Limits(cpu_time=1, wall_time=5))
    assert (after.status, after.stdout) == (Status.ok, b"alive\n"), after
    assert host.sweep(since, before) == []
