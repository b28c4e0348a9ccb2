"""cgroup v1 backend against the real kernel: limits, accounting, kill-all, removal.

Needs root and the v1 memory hierarchy (Debian hybrid hosts, CI); every group and
process a test makes is removed in a finally, whatever the outcome.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from stockade.sandbox import cgroup

ROOT = "/sys/fs/cgroup"
HIERARCHIES = ("memory", "pids", "cpuacct", "freezer")
MiB = 1 << 20

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroup v1 tests need root"),
    pytest.mark.skipif(
        not os.path.exists(f"{ROOT}/memory/memory.limit_in_bytes"),
        reason="no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory",
    ),
]

# The child waits for one byte on stdin, so it is in the group before it does anything.
PRELUDE = "import os, sys, time, signal\nsys.stdin.buffer.read(1)\n"


@pytest.fixture
def backend():
    b = cgroup.detect(ROOT)
    assert b.kind == "v1", b.reason
    return b


@pytest.fixture
def box(backend):
    """Factory: box(code, memory=, pids=) -> (cgroup, Popen) with the child in the group."""
    groups, procs = [], []
    counter = iter(range(1000))

    def make(code, memory=64 * MiB, pids=16, name=None):
        cg = backend.create(name or f"test-{os.getpid()}-{next(counter)}", memory=memory, pids=pids)
        groups.append(cg)
        p = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        procs.append(p)
        cg.add(p.pid)
        p.stdin.write(b"go")
        p.stdin.close()
        return cg, p

    try:
        yield make
    finally:
        for cg in groups:
            cg.remove()
        for p in procs:
            p.kill()
            p.wait()
            p.stdout.close()


def gone(pid):
    """True when pid no longer runs (exited, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def group_dirs(name):
    return [os.path.join(ROOT, h, "stockade", name) for h in HIERARCHIES]


def test_detect_reports_v1(backend):
    assert "memory" in backend.reason and "freezer" in backend.reason


def test_limits_are_written_in_every_hierarchy(backend):
    name = f"test-{os.getpid()}-limits"
    cg = backend.create(name, memory=64 * MiB, pids=16)
    try:
        assert all(os.path.isdir(d) for d in group_dirs(name))
        mem = os.path.join(ROOT, "memory/stockade", name)
        assert int(open(f"{mem}/memory.limit_in_bytes").read()) == 64 * MiB
        if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
            assert int(open(f"{mem}/memory.memsw.limit_in_bytes").read()) == 64 * MiB
        assert open(os.path.join(ROOT, "pids/stockade", name, "pids.max")).read() == "16\n"
    finally:
        cg.remove()


def test_limits_change_both_ways(backend):
    # A warm box's group is made with default limits, then set to the run's own.
    name = f"test-{os.getpid()}-relimit"
    cg = backend.create(name, memory=256 * MiB, pids=64)
    mem = os.path.join(ROOT, "memory/stockade", name)
    try:
        for memory, pids in ((32 * MiB, 8), (512 * MiB, 100), (64 * MiB, 16)):
            cg.set_limits(memory=memory, pids=pids)
            assert int(open(f"{mem}/memory.limit_in_bytes").read()) == memory
            if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
                assert int(open(f"{mem}/memory.memsw.limit_in_bytes").read()) == memory
            assert open(os.path.join(ROOT, "pids/stockade", name, "pids.max")).read() == f"{pids}\n"
    finally:
        cg.remove()


def test_child_is_in_every_hierarchy(box):
    cg, p = box("time.sleep(30)")
    assert cg.pids() == [p.pid]
    for h in HIERARCHIES:
        with open(f"/proc/{p.pid}/cgroup") as f:
            assert any(f"stockade/{cg.name}" in line for line in f if f":{h}:" in line), h


def test_cpu_time_of_a_busy_loop(box):
    cg, p = box("""
        t = time.process_time()
        while time.process_time() - t < 0.3:
            pass
    """)
    assert p.wait(timeout=10) == 0
    assert 0.15 <= cg.cpu_time() <= 0.45
    # The box's launcher reads the same counter, from its own read-only descriptor.
    fd = cg.open_cpu_counter()
    try:
        assert int(os.pread(fd, 64, 0)) == round(cg.cpu_time() * 1e9)
        with pytest.raises(OSError):
            os.write(fd, b"0")
    finally:
        os.close(fd)


def test_memory_peak(box):
    cg, p = box("x = b'1' * (40 << 20)")
    assert p.wait(timeout=10) == 0
    assert 40 * MiB <= cg.memory_peak() < 64 * MiB + MiB
    assert not cg.oom_killed()


def test_oom_kill_is_reported(box):
    cg, p = box("x = b'1' * (100 << 20)")
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert cg.oom_killed()
    assert cg.memory_peak() <= 64 * MiB


def test_fork_loop_stops_at_pids_limit(box):
    cg, p = box("""
        n = 0
        try:
            while n < 100:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
        except OSError:
            pass
        print(n, flush=True)
        time.sleep(30)
    """)
    forked = int(p.stdout.readline())
    assert forked <= 15  # 16 tasks, one of them the parent
    assert len(cg.pids()) <= 16
    cg.kill()
    assert cg.pids() == []
    assert p.wait(timeout=10) == -signal.SIGKILL


def test_kill_reaches_double_forked_daemon(box):
    cg, p = box("""
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                print(os.getpid(), flush=True)
                while True:
                    time.sleep(1)
            os._exit(0)
        time.sleep(30)
    """)
    daemon = int(p.stdout.readline())
    assert daemon in cg.pids()
    cg.kill()
    assert cg.pids() == []
    assert p.wait(timeout=10) == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while not gone(daemon):
        assert time.monotonic() < deadline, "daemon survived kill()"
        time.sleep(0.01)


def test_remove_leaves_nothing_and_is_idempotent(box):
    cg, p = box("time.sleep(30)")
    cg.remove()
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert not any(os.path.exists(d) for d in group_dirs(cg.name))
    cg.remove()
    cg.kill()
    assert cg.pids() == []


def test_names_and_discard_a_group_left_behind(backend, box):
    name = f"test-{os.getpid()}-left"
    _, p = box("time.sleep(30)", name=name)
    # Left in one hierarchy only, too (a supervisor killed while removing it).
    partial = f"test-{os.getpid()}-partial"
    os.mkdir(group_dirs(partial)[-1])
    assert {name, partial} <= backend.names()
    backend.discard(name)
    backend.discard(partial)
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert not any(os.path.exists(d) for d in group_dirs(name) + group_dirs(partial))
    assert not {name, partial} & backend.names()
    backend.discard(name)  # gone already: nothing to do


def test_stale_group_is_replaced(backend, box):
    name = f"test-{os.getpid()}-stale"
    # A crashed supervisor left this group with a live process in it.
    old, p = box("time.sleep(30)", name=name)
    new = backend.create(name, memory=32 * MiB, pids=8)
    try:
        assert p.wait(timeout=10) == -signal.SIGKILL
        assert new.pids() == []
        mem = os.path.join(ROOT, "memory/stockade", name)
        assert int(open(f"{mem}/memory.limit_in_bytes").read()) == 32 * MiB
        assert new.memory_peak() == 0 and new.cpu_time() == 0
    finally:
        new.remove()


def test_none_backend_does_nothing():
    cg = cgroup.NoCgroup("test").create("x", memory=MiB, pids=1)
    cg.add(os.getpid())
    assert (cg.cpu_time(), cg.memory_peak(), cg.oom_killed(), cg.pids()) == (0.0, 0, False, [])
    assert cg.open_cpu_counter() is None
    cg.kill()
    cg.remove()


def run_in(cg, code):
    """Run `code` in `cg` to its end; its exit code."""
    p = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], stdin=subprocess.PIPE)
    try:
        cg.add(p.pid)
        p.stdin.write(b"go")
        p.stdin.close()
        return p.wait(timeout=20)
    finally:
        p.kill()
        p.wait()


def test_a_recycled_group_counts_only_the_next_run(backend):
    cg = backend.create(f"test-{os.getpid()}-recycle", memory=64 * MiB, pids=16)
    mem = os.path.join(ROOT, "memory/stockade", cg.name)
    try:
        # First run: CPU, then an OOM kill.
        assert run_in(cg, """
            t = time.process_time()
            while time.process_time() - t < 0.2:
                pass
            x = b'1' * (100 << 20)
        """) == -signal.SIGKILL
        assert cg.oom_killed() and cg.cpu_time() >= 0.15
        inode = os.stat(mem).st_ino
        assert cg.recycle()
        cg.renew(memory=128 * MiB, pids=32)
        assert os.stat(mem).st_ino == inode  # the same group, not a new one
        assert int(open(f"{mem}/memory.limit_in_bytes").read()) == 128 * MiB
        if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
            assert int(open(f"{mem}/memory.memsw.limit_in_bytes").read()) == 128 * MiB
        assert open(os.path.join(ROOT, "pids/stockade", cg.name, "pids.max")).read() == "32\n"
        assert not cg.oom_killed() and cg.cpu_time() < 0.01 and cg.memory_peak() < MiB
        # Second run: 80 MiB fits the new limit; what it reports is its own.
        assert run_in(cg, "x = b'1' * (80 << 20)") == 0
        assert not cg.oom_killed()
        assert 80 * MiB <= cg.memory_peak() < 100 * MiB
        assert 0 < cg.cpu_time() < 0.15
        # Third run, a lower limit again (memsw must follow the limit down).
        assert cg.recycle()
        cg.renew(memory=32 * MiB, pids=8)
        assert int(open(f"{mem}/memory.limit_in_bytes").read()) == 32 * MiB
        assert run_in(cg, "x = b'1' * (64 << 20)") == -signal.SIGKILL
        assert cg.oom_killed() and cg.memory_peak() <= 32 * MiB
        # All that with a few files kept open, one per file.
        assert len({fd for fd in cg._fds.values()}) <= 8
    finally:
        cg.remove()
    assert not any(os.path.exists(d) for d in group_dirs(cg.name))


def test_a_busy_or_charged_group_is_not_recycled(backend, box, monkeypatch):
    cg, p = box("time.sleep(30)")
    assert not cg.recycle()  # a process is still in it
    p.kill()
    p.wait()
    assert cg.recycle()
    monkeypatch.setattr(cgroup, "RECYCLE_MAX_CHARGE", -1)  # whatever stays charged is too much
    assert not cg.recycle()


def test_renew_without_limits_means_unlimited(backend):
    cg = backend.create(f"test-{os.getpid()}-unlimited", memory=64 * MiB, pids=16)
    try:
        assert cg.recycle()
        cg.renew(memory=None, pids=None)
        mem = os.path.join(ROOT, "memory/stockade", cg.name)
        assert int(open(f"{mem}/memory.limit_in_bytes").read()) > 1 << 50
        assert open(os.path.join(ROOT, "pids/stockade", cg.name, "pids.max")).read() == "max\n"
        assert run_in(cg, "x = b'1' * (100 << 20)") == 0 and not cg.oom_killed()
    finally:
        cg.remove()


def test_renew_fails_once_the_group_is_gone(backend):
    # Another process that held the slot in between removed it (and may have
    # made a new one of the same name): our open files are of the old one.
    cg = backend.create(f"test-{os.getpid()}-gone", memory=64 * MiB, pids=16)
    try:
        assert cg.recycle()
        for d in group_dirs(cg.name):
            os.rmdir(d)
        other = backend.create(cg.name, memory=32 * MiB, pids=8)
        with pytest.raises((OSError, cgroup.SandboxError)):
            cg.renew(memory=64 * MiB, pids=16)
        mem = os.path.join(ROOT, "memory/stockade", cg.name)
        assert int(open(f"{mem}/memory.limit_in_bytes").read()) == 32 * MiB  # the other's, untouched
        other.remove()
    finally:
        cg.remove()
