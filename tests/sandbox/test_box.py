"""The real box: every status, exact accounting, I/O, files, concurrency and
clean teardown on every way out (normal end, limits, cancellation, SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import glob
import hashlib
import json
import logging
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from stockade.errors import LimitError, SandboxError
from stockade.sandbox import File, Limits, MiB, Mount, Sandbox, Status
from stockade.sandbox import box as box_module
from stockade.sandbox import cgroup as cgroup_module
from tests.conftest import leftovers

PY = "/usr/bin/python3"


def py(sandbox, code, **kw):
    return sandbox.run_sync([PY, "-c", code], **kw)


@pytest.fixture(autouse=True)
def clean_after(sandbox):
    yield
    assert leftovers(sandbox) == []


def test_ok_with_stdin_and_output(sandbox):
    result = py(sandbox, "import sys; print(sys.stdin.read()[::-1]); print('e', file=sys.stderr)", stdin=b"olleh")
    assert result.status is Status.ok
    assert (result.exit_code, result.signal) == (0, None)
    assert result.stdout == b"hello\n" and result.stderr == b"e\n"
    assert 0 < result.time < 1 and 0 < result.wall_time < 5 and result.memory > 0


def test_runtime_error_keeps_exit_code(sandbox):
    result = py(sandbox, "import sys; sys.exit(42)")
    assert result.status is Status.runtime_error
    assert (result.exit_code, result.signal) == (42, None)


def test_runtime_error_by_signal(sandbox):
    result = py(sandbox, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert result.status is Status.runtime_error
    assert (result.exit_code, result.signal) == (None, signal.SIGSEGV)


def test_time_limit_and_cpu_accounting(sandbox):
    result = py(sandbox, "while True: pass", limits=Limits(cpu_time=0.5, wall_time=5))
    assert result.status is Status.time_limit
    assert result.signal == signal.SIGKILL
    assert 0.5 <= result.time <= 0.65


def test_cpu_time_of_a_half_second_loop(sandbox):
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    result = py(sandbox, code, limits=Limits(cpu_time=3))
    assert result.status is Status.ok
    assert abs(result.time - 0.5) <= 0.15, result.time


def test_cpu_of_all_processes_counts(sandbox):
    # Two processes of 0.35 s each: 0.7 s over the 0.5 s limit, though neither alone is.
    code = ("import os, time\nos.fork()\nt = time.process_time()\n"
            "while time.process_time() - t < 0.35: pass\n")
    result = py(sandbox, code, limits=Limits(cpu_time=0.5, wall_time=5))
    assert result.status is Status.time_limit
    assert result.time >= 0.5


def test_wall_time_limit(sandbox):
    started = time.monotonic()
    result = py(sandbox, "import time; time.sleep(30)", limits=Limits(wall_time=0.5))
    assert result.status is Status.wall_time_limit
    assert 0.5 <= result.wall_time < 1.5 and time.monotonic() - started < 5
    assert result.time < 0.3


def test_memory_limit(sandbox):
    result = py(sandbox, "x = bytearray(200 * 1024 * 1024)", limits=Limits(memory=64 * MiB))
    assert result.status is Status.memory_limit
    assert result.oom_killed and result.memory >= 60 * MiB


def test_peak_memory_of_100_mib(sandbox):
    result = py(sandbox, "x = bytearray(100 * 1024 * 1024)", limits=Limits(memory=256 * MiB))
    assert result.status is Status.ok
    assert 100 * MiB <= result.memory <= 140 * MiB, result.memory / MiB


@pytest.mark.parametrize("warm", [0, 1])
def test_memory_without_cgroups_is_the_programs_not_the_supervisors(warm):
    """Without cgroups, memory is the program's largest resident set. bwrap,
    spawned from the supervisor, keeps the supervisor's peak across its exec,
    and that was counted: a library process holding 300 MiB reported 320 MiB
    for /bin/true."""
    held = bytearray(256 * MiB)
    held[:: 4096] = b"x" * (len(held) // 4096)  # touched: resident in this process, the supervisor
    box = Sandbox(slots=2, warm=warm, cgroup_root="/nonexistent/stockade-test")
    try:
        assert box.cgroups.kind == "none"
        small = py(box, "pass")
        big = py(box, "x = bytearray(100 * 1024 * 1024)", limits=Limits(memory=256 * MiB))
        killed = py(box, "while True: pass", limits=Limits(cpu_time=0.3))  # (no report from the launcher)
    finally:
        box.close()
        del held
    assert small.status is Status.ok and small.memory < 64 * MiB, small.memory / MiB
    assert killed.status is Status.time_limit and killed.memory < 64 * MiB, (killed.status, killed.memory / MiB)
    assert big.status is Status.ok and 100 * MiB <= big.memory <= 140 * MiB, big.memory / MiB


def test_memory_of_a_child_counts(sandbox):
    code = ("import os\npid = os.fork()\nif pid == 0:\n    x = bytearray(100 * 1024 * 1024)\n    os._exit(0)\n"
            "os.waitpid(pid, 0)")
    result = py(sandbox, code, limits=Limits(memory=256 * MiB))
    assert result.status is Status.ok
    assert 100 * MiB <= result.memory <= 140 * MiB
    killed = py(sandbox, code, limits=Limits(memory=64 * MiB))
    assert killed.status is Status.memory_limit


def test_output_limit_keeps_first_bytes(sandbox):
    result = py(sandbox, "import sys\nwhile True: sys.stdout.write('0123456789')", limits=Limits(output=1000))
    assert result.status is Status.output_limit
    assert result.stdout_truncated and not result.stderr_truncated
    assert result.stdout == b"0123456789" * 100


def test_stderr_output_limit(sandbox):
    result = py(sandbox, "import sys\nwhile True: sys.stderr.write('e' * 4096)", limits=Limits(output=10_000))
    assert result.status is Status.output_limit
    assert result.stderr_truncated and len(result.stderr) == 10_000


def test_output_at_the_limit_is_not_truncated(sandbox):
    result = py(sandbox, "import sys; sys.stdout.write('x' * 1000)", limits=Limits(output=1000))
    assert result.status is Status.ok and not result.stdout_truncated and len(result.stdout) == 1000


def test_large_stdin_read_back(sandbox):
    data = os.urandom(30 * MiB)
    code = "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"
    result = py(sandbox, code, stdin=data, limits=Limits(memory=256 * MiB))
    assert result.status is Status.ok
    assert result.stdout.decode().strip() == hashlib.sha256(data).hexdigest()


def test_large_stdin_unread_does_not_deadlock(sandbox):
    result = py(sandbox, "print('done')", stdin=b"y" * (40 * MiB))
    assert result.status is Status.ok and result.stdout == b"done\n"


def test_echo_large_stdin_to_stdout(sandbox):
    # Both pipes full at once: a supervisor that writes before reading would deadlock.
    data = b"z" * (8 * MiB)
    code = "import shutil, sys; shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)"
    result = py(sandbox, code, stdin=data, limits=Limits(output=16 * MiB))
    assert result.status is Status.ok and result.stdout == data


def test_files_and_collect(sandbox):
    files = {"main.py": b"import os\nprint(open('data/in.txt').read())\nopen('out.bin','wb').write(b'OUT')\n"
                        b"os.symlink('/etc/passwd', 'link')\n",
             "data/in.txt": b"payload", "run.sh": File(b"#!/bin/sh\necho ran\n", 0o755)}
    result = sandbox.run_sync([PY, "main.py"], files=files, collect=["*.bin", "link", "data/*"])
    assert result.status is Status.ok and result.stdout == b"payload\n"
    assert result.files == {"out.bin": b"OUT", "data/in.txt": b"payload"}  # the link is never followed
    ran = sandbox.run_sync(["/box/run.sh"], files=files)
    assert ran.stdout == b"ran\n"


def test_box_layout(sandbox):
    code = ("import os, json; print(json.dumps({'cwd': os.getcwd(), 'uid': os.getuid(), 'gid': os.getgid(),"
            "'env': dict(os.environ), 'root': sorted(os.listdir('/')), 'fds': sorted(os.listdir('/proc/self/fd')),"
            "'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}))")
    result = py(sandbox, code, env={"EXTRA": "1"})
    seen = json.loads(result.stdout)
    assert seen["cwd"] == "/box" and seen["uid"] == 1000 and seen["gid"] == 1000
    assert set(seen["env"]) == {"PATH", "HOME", "TMPDIR", "LANG", "USER", "LOGNAME", "EXTRA", "PWD"}  # PWD: bwrap --chdir
    # /.stockade-launch: the root tree's mountpoint for the launcher (bound only
    # where it sets the rlimits inside: rootless, tight limits, warm boxes).
    assert seen["root"] == [".stockade-launch", "bin", "box", "dev", "etc", "lib", "lib64", "proc", "sbin", "tmp", "usr"]
    assert seen["fds"] == ["0", "1", "2", "3"]  # 3: the listdir itself
    assert len(seen["pids"]) <= 3  # bwrap's init, python, nothing of the host


def test_mount_read_only(sandbox):
    # The host directory must be reachable by the slot's uid (pytest's tmp_path is not).
    with tempfile.TemporaryDirectory(dir="/tmp") as host_dir:
        os.chmod(host_dir, 0o755)
        with open(os.path.join(host_dir, "product"), "w") as f:
            f.write("compiled")
        os.chmod(os.path.join(host_dir, "product"), 0o644)
        code = "import os; print(open('/opt/p/product').read()); print(os.access('/opt/p', os.W_OK))"
        result = py(sandbox, code, mounts=[Mount(host_dir, "/opt/p")])
    assert result.stdout == b"compiled\nFalse\n", result.stderr



def test_mounts_in_the_root_tree_and_beside_it(sandbox):
    # Under /box (and /etc) the generated root tree serves, bound as / (its
    # mount source is the tree); anywhere else, bwrap's own root makes the
    # mountpoint; an unnormalized target counts as where it really lands.
    code = ("import sys; print(open(sys.argv[1] + '/product').read(),"
            " '/tree-' in next(l.split()[3] for l in open('/proc/self/mountinfo') if l.split()[4] == '/'))")
    with tempfile.TemporaryDirectory(dir="/tmp") as host_dir:
        os.chmod(host_dir, 0o755)
        with open(os.path.join(host_dir, "product"), "w") as f:
            f.write("compiled")
        os.chmod(os.path.join(host_dir, "product"), 0o644)
        seen = {target: sandbox.run_sync([PY, "-c", code, target], mounts=[Mount(host_dir, target)])
                for target in ("/box/build", "/opt/p", "/box/../opt/q")}
    assert {t: r.stdout for t, r in seen.items()} == {
        "/box/build": b"compiled True\n", "/opt/p": b"compiled False\n", "/box/../opt/q": b"compiled False\n"}, seen

@pytest.mark.parametrize("one_stream", [False, True], ids=["two-streams", "stderr-to-stdout"])
def test_sandbox_error_is_a_result_not_an_exception(sandbox, one_stream):
    result = sandbox.run_sync([PY, "-c", "print(1)"], mounts=[Mount("/nonexistent/stockade", "/opt/x")],
                              stderr_to_stdout=one_stream)
    assert result.status is Status.sandbox_error
    # bwrap's own words, from whichever pipe its stderr was
    assert "bubblewrap failed" in result.message and "/nonexistent/stockade" in result.message, result.message


def test_stderr_to_stdout_is_one_stream_in_order(sandbox):
    code = "import os\nfor i in range(3): os.write(1, b'o%d ' % i); os.write(2, b'e%d ' % i)"
    result = sandbox.run_sync([PY, "-c", code], stderr_to_stdout=True)
    assert (result.status, result.stdout, result.stderr) == (Status.ok, b"o0 e0 o1 e1 o2 e2 ", b""), result


def test_bad_input_is_refused(sandbox):
    with pytest.raises(LimitError):
        sandbox.run_sync([])
    with pytest.raises(LimitError):
        sandbox.run_sync([PY], files={"../escape": b""})
    with pytest.raises(LimitError):
        sandbox.run_sync([PY], env={"A=B": "c"})


def test_many_boxes_at_once_see_only_their_own(sandbox):
    code = ("import os, sys, time\nme = sys.argv[1]\nopen('/tmp/' + me, 'w').close()\ntime.sleep(0.3)\n"
            "print(sorted(os.listdir('/tmp')), sorted(os.listdir('/box')), len([p for p in os.listdir('/proc') if p.isdigit()]))")

    async def many():
        return await asyncio.gather(*(
            sandbox.run([PY, "-c", code, f"m{i}"], files={f"own{i}": b""}) for i in range(12)))

    results = asyncio.run(many())
    for i, result in enumerate(results):
        assert result.status is Status.ok, result
        assert result.stdout.decode() == f"['m{i}'] ['own{i}'] 2\n"


def test_cancellation_cleans_up(sandbox):
    async def cancelled():
        task = asyncio.ensure_future(sandbox.run([PY, "-c", "import os, time\nos.fork()\ntime.sleep(30)"],
                                                 limits=Limits(wall_time=30)))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(cancelled())
    assert time.monotonic() - started < 5
    # the autouse fixture proves nothing is left


def _descendants(root: int) -> list[tuple[int, str]]:
    parents, names = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        names[int(pid)] = stat[stat.index("(") + 1:stat.rindex(")")]
        parents[int(pid)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found = []
    for pid in parents:
        p = pid
        while p in parents and p != root and p > 1:
            p = parents[p]
        if p == root and pid != root:
            found.append((pid, names[pid]))
    return found


def _supervisor_of_two_sleepers(tmp_path) -> tuple[subprocess.Popen, list[int]]:
    """`stockade run` of a program that forks and sleeps, once both of its
    processes run inside the box: the CLI's process and their pids."""
    program = tmp_path / "sleeper.py"
    program.write_text("import os, time\nos.fork()\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-m", "stockade.cli", "run", str(program), "--wall-time", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    inside: list[int] = []
    while time.monotonic() < deadline and len(inside) < 2:
        time.sleep(0.05)
        inside = [pid for pid, name in _descendants(proc.pid) if name.startswith("python3")]
    return proc, inside


def test_sigterm_to_the_supervisor_cleans_up(sandbox, tmp_path):
    proc, inside = _supervisor_of_two_sleepers(tmp_path)
    try:
        assert len(inside) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    # the autouse fixture proves nothing is left: no process, cgroup or directory


def test_what_a_supervisor_killed_with_sigkill_left_goes_at_the_next_start(sandbox, tmp_path):
    proc, inside = _supervisor_of_two_sleepers(tmp_path)
    try:
        assert len(inside) == 2
        uid = _status(inside[0])["Uid"]
    finally:
        proc.kill()  # no finally of the supervisor runs
        proc.wait()
    name = f"{uid}-{uid - 60000}"
    _await_gone(uid)  # (bwrap dies with its parent, and the box with bwrap)
    workdir = os.path.join(sandbox.boxes_dir, name)
    groups = glob.glob(f"/sys/fs/cgroup/*/stockade/box-{name}")
    assert os.path.isdir(workdir) and groups  # left behind
    Sandbox(slots=1).close()
    assert not os.path.lexists(workdir)
    assert not any(os.path.exists(group) for group in groups)


def test_the_start_leaves_alone_what_a_live_slot_holds(sandbox):
    from stockade.sandbox.slots import HOST_LOCK_DIR, SlotPool

    uid, index = 60000 + 4000, 4000  # a slot no test uses
    workdir = os.path.join(sandbox.boxes_dir, f"{uid}-{index}")
    os.mkdir(workdir)
    try:
        # Another process's run in that slot: its lock is held.
        with SlotPool(HOST_LOCK_DIR, 1, 60000, switch_user=True).holding(uid, index) as held:
            assert held
            Sandbox(slots=1).close()
            assert os.path.isdir(workdir)
        Sandbox(slots=1).close()
        assert not os.path.lexists(workdir)
    finally:
        if os.path.lexists(workdir):
            os.rmdir(workdir)


def test_doctor_answers_while_a_server_holds_the_first_slots(sandbox):
    from stockade.sandbox.slots import HOST_LOCK_DIR, SlotPool

    # A running service keeps its warm boxes, each holding a slot, for as long as it lives.
    other = SlotPool(HOST_LOCK_DIR, 4, 60000, switch_user=True)
    with contextlib.ExitStack() as held:
        for index in range(4):
            assert held.enter_context(other.holding(60000 + index, index))
        done = subprocess.run([sys.executable, "-m", "stockade.cli", "doctor"], capture_output=True, text=True,
                              timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "probe inside a box" in done.stdout


def _status(pid: int) -> dict[str, int | str]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {"Uid": int(fields["Uid"].split()[0]), "PPid": int(fields["PPid"]), "State": fields["State"].split()[0]}


def _await_gone(uid: int) -> None:
    """Until no process of `uid` lives; reap those that became our zombies
    (we are a subreaper: orphans of the killed supervisor come to us)."""
    deadline = time.monotonic() + 10
    while True:
        alive = []
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            try:
                status = _status(pid)
            except (OSError, KeyError):
                continue
            if status["Uid"] != uid:
                continue
            if status["State"] == "Z" and status["PPid"] == os.getpid():
                os.waitpid(pid, 0)
            else:
                alive.append(pid)
        if not alive:
            return
        assert time.monotonic() < deadline, f"processes of uid {uid} live on: {alive}"
        time.sleep(0.02)


def test_an_exception_mid_run_still_cleans_up(sandbox):
    # Too many files to collect: the supervisor raises, and every finally runs.
    code = "import os\nfor i in range(25000): open(f'f{i}', 'w').close()"
    with pytest.raises(SandboxError):
        py(sandbox, code, collect=["*"], limits=Limits(cpu_time=10, open_files=64))
    # the autouse fixture proves nothing is left; the slot is free again:
    assert py(sandbox, "print('next')").stdout == b"next\n"


def test_a_failed_run_is_not_collected(sandbox):
    # Its verdict and output stand, whatever it left: no "too many files" error instead.
    code = "import os, sys\nfor i in range(25000): open(f'f{i}', 'w').close()\nsys.exit('gave up')"
    result = py(sandbox, code, collect=["*"], limits=Limits(cpu_time=10, open_files=64))
    assert result.status is Status.runtime_error and result.exit_code == 1, result
    assert result.stderr == b"gave up\n" and result.files == {}


def test_many_files_are_written_off_the_event_loop(sandbox, on_loop_thread):
    # A multi-file program's compiled tree goes into each of its run boxes: 20,000
    # files written on the event loop stalled every other box's supervision.
    from stockade.sandbox import box as box_module

    writers = on_loop_thread(box_module, "write_files")
    many = {f"d/f{i}": b"x" for i in range(500)}
    result = sandbox.run_sync(["/bin/sh", "-c", "ls d | wc -l"], files=many)
    assert result.status is Status.ok and result.stdout == b"500\n", result
    assert writers == [False]  # in a thread
    big = {"big": b"x" * (8 * MiB)}
    result = sandbox.run_sync(["/bin/sh", "-c", "wc -c < big"], files=big)
    assert result.stdout == b"8388608\n" and writers == [False, False]
    with pytest.raises(LimitError):  # the caller's error still, from the thread
        sandbox.run_sync(["/bin/true"], files={**many, "d//f1": b"twice"})
    # A few small files, as most runs have, are written at once (make_box_dir).
    assert sandbox.run_sync(["/bin/cat", "a"], files={"a": b"few"}).stdout == b"few"
    assert writers == [False, False, False]


def test_files_are_collected_off_the_event_loop(sandbox, on_loop_thread):
    # Up to 20,000 files and 64 MiB read back after a compile.
    from stockade.sandbox import box as box_module

    readers = on_loop_thread(box_module, "collect")
    result = sandbox.run_sync(["/bin/sh", "-c", "echo made > out"], collect=["out"])
    assert result.files == {"out": b"made\n"} and readers == [False]


def test_cwd_is_box_or_a_directory_of_the_files(sandbox):
    result = sandbox.run_sync(["/bin/pwd"], files={"src/main.c": b""}, cwd="/box/src")
    assert result.stdout == b"/box/src\n"
    for bad in ("/tmp", "/box/missing", "/boxer", "/box/../etc"):
        with pytest.raises(LimitError):
            sandbox.run_sync(["/bin/pwd"], files={"src/main.c": b""}, cwd=bad)


# -- warm boxes: built ahead of time, one run each ------------------------------

LAYOUT = ("import os, json, resource as r; print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ),"
          "'uid': os.getuid(), 'nofile': r.getrlimit(r.RLIMIT_NOFILE), 'cpu': r.getrlimit(r.RLIMIT_CPU),"
          "'fds': sorted(os.listdir('/proc/self/fd')), 'files': sorted(os.listdir('.')), 'in': input()}))")


@pytest.fixture
def warm_sandbox():
    from stockade.sandbox import Sandbox

    box = Sandbox(slots=4, warm=2)
    yield box
    box.close()


def test_a_warm_box_runs_one_stream_as_a_cold_one(sandbox, warm_sandbox):
    """A warm box's pipes were given before its run was known: its launcher
    makes the program's fd 2 its fd 1 ("O" in the run), where such runs took
    a cold box. The same stream as a cold box's, and a failed exec's words in it."""
    code = "import os\nfor i in range(3): os.write(1, b'o%d ' % i); os.write(2, b'e%d ' % i)"

    async def warm_runs():
        assert await warm_sandbox.prewarm() == 2
        return [await warm_sandbox.run(argv, stderr_to_stdout=True) for argv in ([PY, "-c", code], ["/nonexistent"])]

    (warm, missing) = asyncio.run(warm_runs())
    assert warm_sandbox.warm_runs == 2 and warm_sandbox.cold_runs == 0
    cold = sandbox.run_sync([PY, "-c", code], stderr_to_stdout=True)
    assert (warm.status, warm.stdout, warm.stderr) == (cold.status, cold.stdout, cold.stderr) == (
        Status.ok, b"o0 e0 o1 e1 o2 e2 ", b""), (warm, cold)
    assert missing.exit_code == 127 and b"cannot run /nonexistent" in missing.stdout and missing.stderr == b"", missing


def test_warm_run_matches_a_cold_run(sandbox, warm_sandbox):
    limits = Limits(open_files=21, cpu_time=1.5)
    kw = dict(files={"sub/data": b"x"}, stdin=b"hi\n", limits=limits, env={"EXTRA": "1"}, cwd="/box/sub")

    async def warm_run():
        assert await warm_sandbox.prewarm() == 2
        return await warm_sandbox.run([PY, "-c", LAYOUT], **kw)

    warm = asyncio.run(warm_run())
    cold = sandbox.run_sync([PY, "-c", LAYOUT], **kw)
    assert warm_sandbox.warm_runs == 1 and warm_sandbox.cold_runs == 0
    assert warm.status is Status.ok and cold.status is Status.ok, (warm, cold)
    assert json.loads(warm.stdout) == json.loads(cold.stdout)
    seen = json.loads(warm.stdout)
    assert seen["cwd"] == "/box/sub" and seen["nofile"] == [21, 21] and seen["cpu"] == [3, 4]
    assert seen["fds"] == ["0", "1", "2", "3"] and seen["files"] == ["data"] and seen["in"] == "hi"
    assert set(seen["env"]) == {"PATH", "HOME", "TMPDIR", "LANG", "USER", "LOGNAME", "EXTRA", "PWD"}


def test_cpu_and_wall_time_are_the_programs_not_the_box_setup(sandbox, warm_sandbox, monkeypatch):
    # The box's cgroup also counts bwrap building the box (its namespaces and
    # mounts: milliseconds, in a warm box long before the run); the reported
    # times start with the program. Each run's cgroup total, as it is
    # accounted, and the launcher's report of its program:
    totals, reports = [], []
    account, split = Sandbox._account, box_module._split_report

    def spy(self, group, *args, **kwargs):
        totals.append(group.cpu_time())
        return account(self, group, *args, **kwargs)

    def split_spy(data):
        report = split(data)
        if report.ended_at is not None:  # (the CPU watch reads the first record alone)
            reports.append(report)
        return report

    monkeypatch.setattr(Sandbox, "_account", spy)
    monkeypatch.setattr(box_module, "_split_report", split_spy)

    async def warm_runs():
        await warm_sandbox.prewarm()
        return [await warm_sandbox.run(["/bin/true"]) for _ in range(2)]

    runs = [sandbox.run_sync(["/bin/true"]), *asyncio.run(warm_runs())]
    assert warm_sandbox.warm_runs == 2 and len(totals) == 3
    for result, total, report in zip(runs, totals, reports, strict=True):
        assert result.status is Status.ok and 0 < result.time < total, (result, total)
        assert result.time == (report.ended_cpu - report.started_cpu) / 1e9, (result, report)
        assert result.wall_time == (report.ended_at - report.started_at) / 1e9 > 0, (result, report)
    # Killed at its limit, the launcher with it (no end record): still from the start.
    spin = py(sandbox, "while True: pass", limits=Limits(cpu_time=0.3))
    assert spin.status is Status.time_limit and 0.3 <= spin.time < totals[-1], (spin, totals[-1])


def test_warm_runs_enforce_limits_and_leave_nothing(warm_sandbox):
    async def runs():
        await warm_sandbox.prewarm()
        hog = await warm_sandbox.run([PY, "-c", "b = bytearray(200 << 20)"], limits=Limits(memory=64 * MiB))
        spin = await warm_sandbox.run([PY, "-c", "while True: pass"], limits=Limits(cpu_time=0.3))
        fork = await warm_sandbox.run(["/bin/sh", "-c", "for i in $(seq 50); do sleep 5 & done; wait"],
                                      limits=Limits(processes=8, wall_time=3))
        return hog, spin, fork

    hog, spin, fork = asyncio.run(runs())
    assert warm_sandbox.warm_runs >= 2
    assert hog.status is Status.memory_limit and spin.status is Status.time_limit, (hog, spin)
    assert fork.status is Status.runtime_error and b"Cannot fork" in fork.stderr, fork
    warm_sandbox.close()  # the warm boxes built after these runs go too
    assert leftovers(warm_sandbox) == []


def test_runs_that_do_not_fit_a_warm_box_go_cold(warm_sandbox):
    with tempfile.TemporaryDirectory(dir="/tmp") as host_dir:
        os.chmod(host_dir, 0o755)

        async def runs():
            await warm_sandbox.prewarm()
            mounted = await warm_sandbox.run(["/bin/ls", "/data"], mounts=[Mount(host_dir, "/data")])
            small_tmp = await warm_sandbox.run(["/bin/df", "-k", "/tmp"], limits=Limits(tmp_size=4 * MiB))
            huge_argv = await warm_sandbox.run(["/bin/echo", "x" * 70_000])
            return mounted, small_tmp, huge_argv

        mounted, small_tmp, huge_argv = asyncio.run(runs())
    assert (mounted.status, small_tmp.status, huge_argv.status) == (Status.ok,) * 3
    assert b"4096" in small_tmp.stdout and len(huge_argv.stdout) == 70_001
    assert warm_sandbox.warm_runs == 0 and warm_sandbox.cold_runs == 3



def test_the_next_warm_box_is_built_after_the_run_and_close_finishes_it(warm_sandbox):
    # The replacement box is built once the run's result is out (never on the
    # run's own path), and its used box gone; a close() while it is still
    # building tears it down too.
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(warm_sandbox.prewarm()) == 2
        result = loop.run_until_complete(warm_sandbox.run(["/bin/echo", "warm"]))
        assert result.stdout == b"warm\n" and warm_sandbox.warm_runs == 1
        # The result is out; the used box is still to go, and nothing is built yet.
        assert len(warm_sandbox._ending) == 1 and len(warm_sandbox._warm) == 1
        assert not [task for task in warm_sandbox._warming if not task.done()]
        loop.run_until_complete(warm_sandbox.settle())
        building = [task for task in warm_sandbox._warming if not task.done()]
        assert len(building) == 1 and not warm_sandbox._ending
        loop.run_until_complete(asyncio.sleep(0))  # the build starts: slot, /box, cgroup, bwrap
        warm_sandbox.close()
        assert all(task.done() for task in building)
        assert leftovers(warm_sandbox) == []
    finally:
        loop.close()


def test_a_run_returns_before_its_box_is_gone_with_all_its_output(sandbox):
    """The result is made once the launcher has reported the program's end (it
    has killed and reaped everything else in the box by then); the box is
    removed after, by a task of its own, which settle() waits for. Nothing
    written is lost: past a pipe's capacity, and from a child killed as the
    program ended."""
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    os.write(2, b'child\\n')\n"
            "    time.sleep(60)\n"
            "time.sleep(0.3)\n"
            "sys.stdout.write('x' * 300_000)\n")

    async def go():
        result = await sandbox.run([PY, "-c", code])
        ending = len(sandbox._ending)
        await sandbox.settle()
        return result, ending, len(sandbox._ending)

    result, ending, after = asyncio.run(go())
    assert result.status is Status.ok and result.exit_code == 0, result
    assert result.stdout == b"x" * 300_000 and result.stderr == b"child\n"
    assert result.wall_time < 10  # (the child's sleep did not hold the run)
    assert (ending, after) == (1, 0)
    # run_sync ends its box before it returns (its loop ends with it).
    assert py(sandbox, "print(1)").stdout == b"1\n" and not sandbox._ending


def test_close_in_the_event_loop_removes_the_boxes_still_ending():
    # A close() from a coroutine that did not await settle(): the boxes whose
    # ends were deferred go at once, before their slots are let go.
    box = Sandbox(slots=2)

    async def go():
        assert (await box.run(["/bin/echo", "hi"])).stdout == b"hi\n"
        assert len(box._ending) == 1
        box.close()
        return len(box._ending)

    assert asyncio.run(go()) == 0
    assert leftovers(box) == []


def test_a_deferred_end_cut_short_still_ends_its_box():
    # asyncio.run cancels what is left when its coroutine returns: a box on its
    # way out is ended at once. And a task cancelled before its first step runs
    # none of its coroutine: its box is ended all the same.
    box = Sandbox(slots=2)
    try:
        assert asyncio.run(box.run(["/bin/echo", "hi"])).stdout == b"hi\n"
        assert not box._ending and not box.slot_in_use(0) and leftovers(box) == []

        async def cancelled_at_once():
            await box.run(["/bin/true"])
            (task,) = list(box._ending)
            task.cancel()  # (before it ever ran)
            await asyncio.sleep(0.05)
            return list(box._ending)

        assert asyncio.run(cancelled_at_once()) == []
        assert not box.slot_in_use(0) and leftovers(box) == []
    finally:
        box.close()


def test_a_cancelled_run_starts_no_new_warm_box(warm_sandbox):
    async def cancelled():
        await warm_sandbox.prewarm()
        run = asyncio.ensure_future(warm_sandbox.run(["/bin/sleep", "30"]))
        await asyncio.sleep(0.2)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return [task for task in warm_sandbox._warming if not task.done()]

    assert asyncio.run(cancelled()) == [] and warm_sandbox.warm_runs == 1
    warm_sandbox.close()
    assert leftovers(warm_sandbox) == []

def test_idle_warm_boxes_never_starve_cold_runs():
    from stockade.sandbox import Sandbox

    box = Sandbox(slots=2, warm=1)
    try:
        async def runs():
            assert await box.prewarm() == 1
            # Two runs that cannot use a warm box, at once, with only two slots.
            return await asyncio.gather(*(box.run(["/bin/echo", "ok"], limits=Limits(tmp_size=4 * MiB))
                                          for _ in range(2)))

        results = asyncio.wait_for(runs(), 30)
        assert [r.stdout for r in asyncio.run(results)] == [b"ok\n", b"ok\n"]
    finally:
        box.close()
    assert leftovers(box) == []


def test_a_warm_box_built_while_a_run_waits_for_a_slot_gives_it_the_slot():
    from stockade.sandbox.slots import HOST_LOCK_DIR, SlotPool

    box = Sandbox(slots=2, warm=1, first_uid=61300)
    try:
        # Another process holds slot 1 for as long as the test lasts (its warm
        # box, say): this Sandbox has slot 0 only.
        with SlotPool(HOST_LOCK_DIR, 2, 61300, switch_user=True).holding(61301, 1) as held:
            assert held

            async def runs():
                building = asyncio.ensure_future(box.prewarm())
                for _ in range(3):  # prewarm starts the build, which takes slot 0
                    await asyncio.sleep(0)
                assert box.slot_in_use(0)
                # A run that cannot use a warm box, while the only slot builds one.
                result = await box.run(["/bin/echo", "ok"], limits=Limits(tmp_size=4 * MiB))
                await building
                return result

            result = asyncio.run(asyncio.wait_for(runs(), 20))
        assert result.stdout == b"ok\n"
    finally:
        box.close()
    assert not glob.glob(os.path.join(box.boxes_dir, "61300-*"))


def test_warm_boxes_of_a_finished_event_loop_are_replaced(warm_sandbox):
    async def once():
        await warm_sandbox.prewarm()
        return await warm_sandbox.run(["/bin/echo", "again"])

    for _ in range(3):  # each asyncio.run is a new loop: its warm boxes are rebuilt
        assert asyncio.run(once()).stdout == b"again\n"
    assert warm_sandbox.warm_runs == 3
    warm_sandbox.close()
    assert leftovers(warm_sandbox) == []


@pytest.fixture
def host_dir():
    # Reachable by the slot uids (pytest's own tmp_path is under a 0700 directory).
    with tempfile.TemporaryDirectory(dir="/tmp") as path:
        os.chmod(path, 0o755)
        yield pathlib.Path(path)


def test_a_copied_tree_is_read_only_for_the_box(sandbox, warm_sandbox, host_dir):
    product = host_dir / "product"
    (product / "sub").mkdir(parents=True)
    (product / "main").write_bytes(b"#!/bin/sh\necho main ran\n")
    os.chmod(product / "main", 0o755)
    (product / "sub" / "data").write_text("data\n")
    os.symlink("/etc/shadow", product / "link")  # never followed, never copied
    probe = ("import os\nprint(open('/box/build/sub/data').read().strip(), sorted(os.listdir('/box/build')))\n"
             "for path, flags in (('/box/build/main', os.O_WRONLY), ('/box/build/new', os.O_WRONLY | os.O_CREAT),"
             " ('/box/build/sub/data', os.O_WRONLY)):\n"
             "    try:\n        os.close(os.open(path, flags))\n        print('WRITABLE', path)\n"
             "    except OSError as e:\n        print(e.strerror)\n")
    mount = Mount(str(product), "/box/build", copy=True)

    async def runs():
        await warm_sandbox.prewarm()
        ran = await warm_sandbox.run(["/box/build/main"], mounts=[mount])
        probed = await warm_sandbox.run([PY, "-c", probe], mounts=[mount])
        return ran, probed

    ran, probed = asyncio.run(runs())
    assert warm_sandbox.warm_runs == 2, (warm_sandbox.warm_runs, warm_sandbox.cold_runs)
    assert ran.stdout == b"main ran\n", ran
    assert probed.stdout.decode().splitlines() == ["data ['main', 'sub']"] + ["Permission denied"] * 3, probed
    assert (product / "main").read_bytes() == b"#!/bin/sh\necho main ran\n"
    # The cold path binds the same tree read-only: the same files, and the link.
    warm_sandbox.close()  # its idle warm boxes hold slots the other sandbox may need
    cold = sandbox.run_sync([PY, "-c", probe], mounts=[mount])
    first, *refused = cold.stdout.decode().splitlines()
    assert first == "data ['link', 'main', 'sub']" and len(refused) == 3
    assert set(refused) <= {"Permission denied", "Read-only file system"}, refused


def test_a_large_product_is_copied_into_a_warm_box_off_the_event_loop(warm_sandbox, host_dir, on_loop_thread):
    # A product of thousands of class files took the loop that supervises every
    # other box; one small file (a C program) is copied at once, no thread.
    from stockade.sandbox import box as box_module

    copiers = on_loop_thread(box_module, "copy_in")
    small, large = host_dir / "small", host_dir / "large"
    small.mkdir()
    (small / "main").write_bytes(b"one\n")
    (large / "sub").mkdir(parents=True)  # (a directory: not flat)
    for i in range(3):
        (large / "sub" / f"f{i}").write_bytes(b"x")

    async def runs():
        await warm_sandbox.prewarm()
        one = await warm_sandbox.run(["/bin/cat", "/box/build/main"], mounts=[Mount(str(small), "/box/build", copy=True)])
        many = await warm_sandbox.run(["/bin/ls", "/box/build/sub"], mounts=[Mount(str(large), "/box/build", copy=True)])
        return one, many

    one, many = asyncio.run(runs())
    assert warm_sandbox.warm_runs == 2, (warm_sandbox.warm_runs, warm_sandbox.cold_runs)
    assert one.stdout == b"one\n" and many.stdout == b"f0\nf1\nf2\n", (one, many)
    assert copiers == [True, False]


def test_warm_mounts_are_in_every_warm_box(host_dir):
    from stockade.sandbox import Sandbox

    config = host_dir / "config"
    config.mkdir()
    (config / "tool.ini").write_text("x=1\n")
    standing = Mount(str(config), "/etc/stockade-test-config")
    box = Sandbox(slots=4, warm=1, warm_mounts=[standing])
    try:
        async def runs():
            await box.prewarm()
            first = await box.run(["/bin/cat", "/etc/stockade-test-config/tool.ini"], mounts=[standing])
            other = await box.run(["/bin/ls", "/data"], mounts=[Mount(str(config), "/data")])
            return first, other

        first, other = asyncio.run(runs())
        assert first.stdout == b"x=1\n" and other.stdout == b"tool.ini\n", (first, other)
        assert (box.warm_runs, box.cold_runs) == (1, 1)
    finally:
        box.close()
    assert leftovers(box) == []


def test_a_slot_keeps_its_network_namespace_but_nothing_in_it():
    from stockade.sandbox import Sandbox

    # One slot (of its own uid range): every run lands in the same slot.
    box = Sandbox(slots=1, first_uid=61000)
    try:
        # Abstract unix sockets belong to the network namespace (and only AF_UNIX
        # sockets pass seccomp): the one name a run could leave for the next.
        listen = ("import os, socket; s = socket.socket(socket.AF_UNIX); s.bind('\\0stockade-test'); s.listen();"
                  "print(os.readlink('/proc/self/ns/net'))")
        probe = ("import os, socket; print(os.readlink('/proc/self/ns/net'));"
                 "print(socket.socket(socket.AF_UNIX).connect_ex('\\0stockade-test'))")
        first = box.run_sync([PY, "-c", listen])
        second = box.run_sync([PY, "-c", probe])
        assert first.status is Status.ok and second.status is Status.ok, (first, second)
        netns, refused = second.stdout.decode().split()
        # The listener died with its run: nothing of it is left to connect to.
        assert int(refused) == errno.ECONNREFUSED
        if box.netns_per_slot:  # as root with the launcher: the same namespace, reused
            assert first.stdout.decode().strip() == netns
        assert netns != os.readlink("/proc/self/ns/net")
    finally:
        box.close()


TWO_PROCESSES = ("import os, time\npid = os.fork()\nb = bytearray(60 << 20)\nt = time.process_time()\n"
                 "while time.process_time() - t < 0.7: pass\nif pid: os.waitpid(pid, 0); print('both done')\n")


@pytest.mark.parametrize("per_process", [False, True])
def test_per_process_time_limit(sandbox, per_process):
    result = sandbox.run_sync([PY, "-c", TWO_PROCESSES],
                              limits=Limits(cpu_time=1, memory=256 * MiB, per_process_time=per_process))
    if per_process:  # 0.7 s each is within 1 s each, though 1.4 s together
        assert result.status is Status.ok and result.stdout == b"both done\n" and result.time > 1.2, result
    else:
        assert result.status is Status.time_limit and result.time < 1.3, result


def test_per_process_time_limit_stops_one_process(sandbox):
    result = sandbox.run_sync([PY, "-c", "while True: pass"], limits=Limits(cpu_time=1, per_process_time=True))
    assert result.status is Status.time_limit and result.signal == signal.SIGXCPU, result


@pytest.mark.parametrize("per_process", [False, True])
def test_per_process_memory_limit(sandbox, per_process):
    limits = Limits(cpu_time=5, memory=100 * MiB, per_process_memory=per_process)
    together = sandbox.run_sync([PY, "-c", TWO_PROCESSES], limits=limits)
    alone = sandbox.run_sync([PY, "-c", "b = bytearray(150 << 20)"], limits=limits)
    if per_process:  # 60 MB each fits; 150 MB in one process does not: MemoryError, not a kill
        assert together.status is Status.ok and together.memory > 100 * MiB, together
        assert alone.status is Status.runtime_error and b"MemoryError" in alone.stderr, alone
    else:
        assert together.status is Status.memory_limit and alone.status is Status.memory_limit, (together, alone)


def test_undecodable_bytes_pass_and_lone_surrogates_are_refused(sandbox, warm_sandbox):
    arg = os.fsdecode(b"caf\xe9")  # the byte 0xE9 as Python keeps it: a surrogate escape

    async def warm_run():
        await warm_sandbox.prewarm()
        return await warm_sandbox.run(["/bin/echo", arg])

    assert sandbox.run_sync(["/bin/echo", arg]).stdout == b"caf\xe9\n"
    assert asyncio.run(warm_run()).stdout == b"caf\xe9\n" and warm_sandbox.warm_runs == 1
    for bad in (dict(argv=["/bin/echo", "\ud800"]), dict(argv=["/bin/true"], env={"X": "\ud800"})):
        with pytest.raises(LimitError, match="lone surrogate"):
            sandbox.run_sync(**bad)


def test_warm_boxes_go_when_their_process_exits_without_close():
    script = ("import asyncio\nfrom stockade.sandbox import Sandbox\n"
              "box = Sandbox(slots=4, warm=2, first_uid=61100)\n"
              "async def main():\n    assert await box.prewarm() == 2\n    await box.run(['/bin/true'])\n"
              "asyncio.run(main())\nprint(box.boxes_dir)\n")  # and no close()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    boxes_dir = done.stdout.strip()
    left = [p for p in os.listdir(boxes_dir) if p.startswith("611")]
    left += [p for p in glob.glob("/sys/fs/cgroup/*/stockade/box-611*")]
    assert left == []


def test_a_file_given_twice_is_the_callers_error_warm_or_cold(sandbox, warm_sandbox):
    files = {"a/b": b"1", "a//b": b"2"}  # one path, twice
    with pytest.raises(LimitError, match="given twice"):
        sandbox.run_sync(["/bin/true"], files=files)

    async def warm_run():
        await warm_sandbox.prewarm()
        await warm_sandbox.run(["/bin/true"], files=files)

    with pytest.raises(LimitError, match="given twice"):
        asyncio.run(warm_run())
    assert warm_sandbox.warm_runs == 1


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                    reason="slot cgroups are recycled on cgroup v1 only; this host has no v1 memory hierarchy")
def test_a_slot_cgroup_serves_the_next_run_counting_only_it(monkeypatch):
    from stockade.sandbox import Sandbox, cgroup
    from stockade.sandbox import box as box_module

    box = Sandbox(slots=1, first_uid=61200)  # one slot: every run lands in the same one
    memory_dir = "/sys/fs/cgroup/memory/stockade/box-61200-0"
    hog = "x = bytearray(100 << 20)\nimport time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    try:
        first = py(box, hog + "\ny = bytearray(300 << 20)", limits=Limits(memory=200 * MiB))
        assert first.status is Status.memory_limit and first.time >= 0.25, first
        assert box.kept_cgroups == {"box-61200-0"} and leftovers(box) == []
        kept = os.stat(memory_dir).st_ino
        second = py(box, "pass", limits=Limits(memory=64 * MiB))
        assert os.stat(memory_dir).st_ino == kept  # the same group, recycled
        # Nothing of the first run is counted: no OOM kill, not its CPU nor its peak.
        assert second.status is Status.ok and second.time < 0.2 and second.memory < 20 * MiB, second
        assert py(box, hog, limits=Limits(memory=256 * MiB)).status is Status.ok  # its limit, raised again

        # Removed behind our back (another process that held the slot): a new one.
        for path in glob.glob("/sys/fs/cgroup/*/stockade/box-61200-0"):
            os.rmdir(path)
        third = py(box, "print('ok')", limits=Limits(memory=64 * MiB))
        assert third.status is Status.ok and third.stdout == b"ok\n", third
        assert os.stat(memory_dir).st_ino != kept

        # A group a run left charged beyond the bound is removed, not kept.
        monkeypatch.setattr(cgroup, "RECYCLE_MAX_CHARGE", -1)
        assert py(box, "pass").status is Status.ok
        assert box.kept_cgroups == set() and glob.glob("/sys/fs/cgroup/*/stockade/box-61200-0") == []
        monkeypatch.undo()
        # So is one past the number kept (each holds open files).
        monkeypatch.setattr(box_module, "_KEPT_GROUPS", 0)
        assert py(box, "pass").status is Status.ok
        assert box.kept_cgroups == set() and glob.glob("/sys/fs/cgroup/*/stockade/box-61200-0") == []
        monkeypatch.undo()
        assert py(box, "pass").status is Status.ok and box.kept_cgroups == {"box-61200-0"}
    finally:
        box.close()
    assert box.kept_cgroups == set() and glob.glob("/sys/fs/cgroup/*/stockade/box-61200-*") == []


def test_a_kept_cgroup_is_not_removed_once_another_sandbox_runs_in_its_slot():
    # Two Sandboxes on the same uids (two processes on a host, say): the first
    # keeps its slot's cgroup, empty, then lets the slot go; the second's run
    # takes the slot and a cgroup of that name. Closing the first must leave
    # that run alone.
    first, second = Sandbox(slots=1, first_uid=61500), Sandbox(slots=1, first_uid=61500)
    try:
        assert first.run_sync(["/bin/true"]).status is Status.ok
        assert first.kept_cgroups == {"box-61500-0"}

        async def meanwhile():
            running = asyncio.ensure_future(second.run(["/bin/sh", "-c", "sleep 1; echo alive"]))
            deadline = time.monotonic() + 10
            while not second.slot_in_use(0) or not glob.glob("/sys/fs/cgroup/pids/stockade/box-61500-0/tasks"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # the program sleeps in its box
            first.close()
            return await running

        result = asyncio.run(meanwhile())
        assert result.status is Status.ok and result.stdout == b"alive\n", result
    finally:
        first.close()
        second.close()
    assert glob.glob("/sys/fs/cgroup/*/stockade/box-61500-*") == []


def test_many_processes_starting_on_a_new_state_directory_prepare_it_once():
    # A new host: the service and a few `stockade run` start at the same moment.
    top = tempfile.mkdtemp(prefix="stockade-state-", dir="/tmp")
    os.chmod(top, 0o755)  # (the slot uids go through it to their box directories)
    state = os.path.join(top, "state")
    go = os.path.join(top, "go")
    code = ("import os, time\nfrom stockade.sandbox import Sandbox, tmpfs\n"
            # A slow look at the mount table (a busy host): the window between
            # "nothing mounted here" and mounting is wide open.
            "real = tmpfs.is_mounted\n"
            "tmpfs.is_mounted = lambda path: (real(path), time.sleep(0.3))[0]\n"
            f"while not os.path.exists({go!r}): time.sleep(0.001)\n"  # all start together
            f"box = Sandbox(state_dir={state!r}, slots=4, first_uid=61600)\n"
            "r = box.run_sync(['/bin/echo', 'ok'])\nprint(r.status.value, r.stdout, r.message)\nbox.close()\n")
    starts = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(8)]
    time.sleep(1)  # (the interpreters have started)
    open(go, "w").close()
    try:
        outcomes = [(p.wait(timeout=120), *p.communicate()) for p in starts]
        assert outcomes == [(0, b"ok b'ok\\n' \n", b"")] * 8
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        # One box space and one /dev, not one per process.
        assert (mounts.count(os.path.join(state, "boxes")), mounts.count(os.path.join(state, "dev"))) == (1, 1)
    finally:
        for mount in ("boxes", "dev"):
            while os.path.ismount(os.path.join(state, mount)):
                subprocess.run(["umount", os.path.join(state, mount)], check=True)
        shutil.rmtree(top)


@pytest.mark.parametrize("warm", [0, 1])
def test_threads_may_share_a_sandbox(warm):
    # A thread pool calling run_sync (each call its own event loop): each run
    # gets a slot of its own, waits for one when all are busy, and warm boxes
    # stay with the event loop that built them (the others' runs go cold).
    import concurrent.futures

    box = Sandbox(slots=3, warm=warm, first_uid=61700)

    def one(i):
        result = box.run_sync(["/bin/sh", "-c", f"echo {i}; sleep 0.05"])
        return result.status, result.stdout

    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(60)))
    finally:
        box.close()
    assert results == [(Status.ok, f"{i}\n".encode()) for i in range(60)]
    assert glob.glob(os.path.join(box.boxes_dir, "61700-*")) == []
    assert glob.glob("/sys/fs/cgroup/*/stockade/box-61700-*") == []


def test_a_sigxcpu_the_program_sends_itself_is_no_time_limit(sandbox):
    # Only a SIGXCPU that comes with the CPU time to show for it is the limit's.
    selfsent = sandbox.run_sync([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGXCPU)"],
                                limits=Limits(cpu_time=2))
    assert selfsent.status is Status.runtime_error and selfsent.signal == signal.SIGXCPU, selfsent
    # Per process, the rlimit that would send it is whole seconds: 0.46 s of CPU
    # under a 0.5 s limit (a 1 s rlimit) and a SIGXCPU of its own is no time limit either.
    burn = ("import os, signal, time\nwhile time.process_time() < 0.46: pass\n"
            "os.kill(os.getpid(), signal.SIGXCPU)")
    gamed = sandbox.run_sync([PY, "-c", burn], limits=Limits(cpu_time=0.5, per_process_time=True))
    assert gamed.status is Status.runtime_error and gamed.signal == signal.SIGXCPU, gamed


FORK_N = """
import os, sys, time
n = int(sys.argv[1])
pids = []
try:
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            time.sleep(0.3)
            os._exit(0)
        pids.append(pid)
    print("forked", len(pids))
except OSError as exc:
    print("refused after", len(pids), exc.errno)
for pid in pids:
    os.waitpid(pid, 0)
"""


@pytest.mark.parametrize("processes", [1, 3])
def test_processes_counts_the_programs_own(sandbox, warm_sandbox, processes):
    # `processes` is the program's: the box's own two (bwrap's monitor, the
    # launcher as pid 1) are not taken from it. With 1, the program runs alone;
    # with 3, it may fork twice, not three times.
    async def warm_run(argv):
        await warm_sandbox.prewarm()
        return await warm_sandbox.run(argv, limits=Limits(processes=processes))

    for run in (lambda argv: sandbox.run_sync(argv, limits=Limits(processes=processes)),
                lambda argv: asyncio.run(warm_run(argv))):
        alone = run([PY, "-c", "print('alone')"])
        assert alone.status is Status.ok and alone.stdout == b"alone\n", alone
        allowed = run([PY, "-c", FORK_N, str(processes - 1)])
        assert allowed.stdout == f"forked {processes - 1}\n".encode(), allowed
        refused = run([PY, "-c", FORK_N, str(processes)])
        assert refused.stdout == f"refused after {processes - 1} 11\n".encode(), refused  # EAGAIN


def test_a_wall_time_shorter_than_the_start_is_a_wall_time_limit(sandbox):
    # The box may be killed before bwrap has read the byte that lets the program
    # start: that is the wall time running out, not a box that failed to build.
    statuses = {sandbox.run_sync([PY, "-c", "pass"], limits=Limits(wall_time=0.001)).status for _ in range(20)}
    assert statuses == {Status.wall_time_limit}, statuses


def test_run_sync_builds_no_warm_box_to_throw_away(caplog):
    # Each run_sync has an event loop of its own, which ends with the call: a warm
    # box built there would be torn down unused by the next call. It runs cold,
    # builds none, and says once how warm boxes are used.
    box = Sandbox(slots=4, warm=2, first_uid=61500)
    try:
        with caplog.at_level(logging.WARNING, logger="stockade.sandbox"):
            results = [box.run_sync([PY, "-c", "print('cold')"]) for _ in range(3)]
        assert [r.stdout for r in results] == [b"cold\n"] * 3
        assert (box.warm_runs, box.cold_runs) == (0, 3) and not box._warm and not box._warming
        assert sum("run_sync does not use warm boxes" in r.message for r in caplog.records) == 1
    finally:
        box.close()
    assert leftovers(box) == []


def test_a_supervisor_with_descriptors_past_1024(sandbox):
    # A busy supervisor (a server: connections, kept cgroups, a namespace per
    # slot) has descriptors past 1024, which select() cannot watch and the
    # launcher used to refuse. Every run must still work, and say its status.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.skip(f"this process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    filler = []
    try:
        while len(filler) < 1100:
            filler.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))

        async def warm_run():
            box = Sandbox(slots=4, warm=1, first_uid=61600)
            try:
                await box.prewarm()
                return await box.run([PY, "-c", "import sys; sys.exit(152)"]), box.warm_runs
            finally:
                box.close()

        cold = sandbox.run_sync([PY, "-c", "import sys; sys.exit(152)"])
        warm, warm_runs = asyncio.run(warm_run())
        for result in (cold, warm):
            assert result.status is Status.runtime_error and result.exit_code == 152, result
        assert warm_runs == 1
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_launchers_own_failure_is_the_boxs():
    # The box's launcher fails before the program runs (here: an rlimit it may
    # not raise, on a warm box, where the launcher sets them): a sandbox_error
    # with its reason, not the program's exit 127.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def warm_run():
        box = Sandbox(slots=4, warm=1, first_uid=61600)
        try:
            await box.prewarm()
            return await box.run([PY, "-c", "pass"], limits=Limits(open_files=hard + 1000)), box.warm_runs
        finally:
            box.close()

    result, warm_runs = asyncio.run(warm_run())
    assert warm_runs == 1
    assert result.status is Status.sandbox_error and "the box's launcher failed" in result.message, result
    assert "nofile" in result.message, result


def test_a_setup_failure_is_not_an_output_limit(sandbox):
    # bwrap's own error goes to the program's stderr: past a tiny output limit it
    # must still read as a box that failed to build.
    result = sandbox.run_sync([PY, "-c", "pass"], limits=Limits(output=16),
                              mounts=[Mount("/nonexistent/stockade-test", "/box/x")])
    assert result.status is Status.sandbox_error, result


def test_a_box_that_cannot_be_made_is_a_sandbox_error_not_an_exception(sandbox, monkeypatch):
    """A full box tmpfs (ENOSPC making the box's directory) was an OSError out
    of run(), no result at all, where run() promises a sandbox_error."""
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(box_module, "make_box_dir", full)
    result = sandbox.run_sync(["/bin/true"])
    assert result.status is Status.sandbox_error and "No space left on device" in result.message, result
    monkeypatch.undo()
    assert sandbox.run_sync(["/bin/true"]).status is Status.ok  # the slot was given back
    assert leftovers(sandbox) == []


def test_a_limits_kill_signals_and_never_waits_on_the_loop(sandbox, monkeypatch, caplog):
    """The kill at a limit runs in a callback of the event loop (a timer): it
    signals the group and returns. It waited there for the group to empty:
    seconds for a fork bomb on a busy host (every other box and request held
    meanwhile), then a SandboxError for the survivors escaped into the loop
    ("Exception in callback", logged by asyncio) before the box's pid 1 was
    killed. Here any wait for the group from a bare loop callback finds
    survivors."""
    real_wait = cgroup_module._kill_until_empty

    def survivors_in_callbacks(procs_path: str, what: str) -> None:
        if asyncio.current_task() is None:  # a bare callback of the loop, not a run's task
            raise SandboxError(f"cgroup {what}: processes [1] survived SIGKILL")
        real_wait(procs_path, what)

    monkeypatch.setattr(cgroup_module, "_kill_until_empty", survivors_in_callbacks)
    caplog.set_level(logging.ERROR, logger="asyncio")
    code = "import os, time\nfor _ in range(8):\n    os.fork()\ntime.sleep(30)"
    result = py(sandbox, code, limits=Limits(wall_time=0.5, processes=300))
    assert result.status is Status.wall_time_limit
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_work_meant_for_a_thread_runs_in_place_once_the_executor_is_shut_down():
    # At interpreter exit (atexit: a box's deferred end) the default executor
    # refuses new work; the box directory must still go.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(loop.shutdown_default_executor())
        assert loop.run_until_complete(box_module._in_thread(lambda a, b: a + b, 2, 3)) == 5
    finally:
        loop.close()
