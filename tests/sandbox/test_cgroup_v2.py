"""cgroup v2 backend against a fake cgroupfs in tmp_path.

The fake mirrors the kernel's file names and formats; since a plain mkdir does not
create a cgroup's files and a plain rmdir refuses a directory holding them, the
module's `_mkdir`/`_rmdir` are replaced by versions that do what the kernel does.
"""

import os
import shutil
import signal
import subprocess

import pytest

from stockade.sandbox import cgroup

MiB = 1 << 20

CPU_STAT = (
    "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n"
    "core_sched.force_idle_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
    "nr_bursts 0\nburst_usec 0\n"
)
MEMORY_EVENTS = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"

# What the kernel puts in every non-root cgroup (with memory and pids enabled above it).
GROUP_FILES = {
    "cgroup.type": "domain\n",
    "cgroup.procs": "",
    "cgroup.threads": "",
    "cgroup.controllers": "memory pids\n",
    "cgroup.subtree_control": "\n",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.kill": "",
    "cgroup.freeze": "0\n",
    "cpu.stat": CPU_STAT,
    "memory.max": "max\n",
    "memory.swap.max": "max\n",
    "memory.current": "0\n",
    "memory.peak": "0\n",
    "memory.events": MEMORY_EVENTS,
    "pids.max": "max\n",
    "pids.current": "0\n",
}


class FakeCgroupFs:
    def __init__(self, root, controllers="cpuset cpu io memory pids"):
        self.root = str(root)
        self.missing = set()  # files an older kernel would not create
        self.write(self.root, "cgroup.controllers", controllers + "\n")
        self.write(self.root, "cgroup.subtree_control", "\n")
        self.write(self.root, "cgroup.procs", "1\n")
        self.write(self.root, "cpu.stat", CPU_STAT)

    @staticmethod
    def write(d, name, text):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    def read(self, *parts):
        with open(os.path.join(self.root, *parts)) as f:
            return f.read()

    def mkdir(self, path):
        os.mkdir(path)
        for name, text in GROUP_FILES.items():
            if name not in self.missing:
                self.write(path, name, text)

    def rmdir(self, path):
        if not os.path.isdir(path):
            raise FileNotFoundError(path)
        with os.scandir(path) as it:
            if any(e.is_dir() for e in it) or cgroup._procs(os.path.join(path, "cgroup.procs")):
                raise OSError(16, "Device or resource busy", path)  # EBUSY, as the kernel
        shutil.rmtree(path)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.fixture
def fake(tmp_path, monkeypatch):
    fs = FakeCgroupFs(tmp_path)
    monkeypatch.setattr(cgroup, "_mkdir", fs.mkdir)
    monkeypatch.setattr(cgroup, "_rmdir", fs.rmdir)
    # The kernel lists only live tasks in cgroup.procs (dead ones leave at exit).
    real_procs = cgroup._procs
    monkeypatch.setattr(cgroup, "_procs", lambda p: [x for x in real_procs(p) if _alive(x)])
    # A write to a cgroup file replaces its value; to a regular file it overwrites in place.
    real_write = cgroup._write

    def write(path, value):
        if os.path.exists(path):
            os.truncate(path, 0)
        real_write(path, value)

    monkeypatch.setattr(cgroup, "_write", write)
    return fs


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "30"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def test_detect_picks_v2_and_enables_controllers(fake):
    b = cgroup.detect(fake.root)
    assert b.kind == "v2", b.reason
    assert b.parent == os.path.join(fake.root, "stockade")
    assert "memory" in b.reason and "pids" in b.reason
    assert fake.read("cgroup.subtree_control") == "+memory +pids"
    assert fake.read("stockade", "cgroup.subtree_control") == "+memory +pids"
    assert (b.has_swap, b.has_peak, b.has_kill) == (True, True, True)


def test_controllers_already_enabled_are_not_rewritten(fake):
    fake.write(fake.root, "cgroup.subtree_control", "cpu memory pids\n")
    b = cgroup.detect(fake.root)
    assert b.kind == "v2", b.reason
    assert fake.read("cgroup.subtree_control") == "cpu memory pids\n"


def test_limits_are_written_in_kernel_format(fake):
    cg = cgroup.detect(fake.root).create("slot-1", memory=64 * MiB, pids=16)
    assert fake.read("stockade/slot-1/memory.max") == str(64 * MiB)
    assert fake.read("stockade/slot-1/memory.swap.max") == "0"
    assert fake.read("stockade/slot-1/pids.max") == "16"
    cg.remove()


def test_limits_can_be_changed(fake):
    cg = cgroup.detect(fake.root).create("slot-1", memory=64 * MiB, pids=16)
    cg.set_limits(memory=8 * MiB, pids=4)
    assert fake.read("stockade/slot-1/memory.max") == str(8 * MiB)
    assert fake.read("stockade/slot-1/pids.max") == "4"
    cg.remove()


def test_no_limits_leaves_max(fake):
    cgroup.detect(fake.root).create("slot-1")
    assert fake.read("stockade/slot-1/memory.max") == "max\n"
    assert fake.read("stockade/slot-1/pids.max") == "max\n"


def test_no_swap_file_is_skipped(fake):
    fake.missing.add("memory.swap.max")
    b = cgroup.detect(fake.root)
    assert not b.has_swap and "NO swap limit" in b.reason
    b.create("slot-1", memory=MiB)
    assert fake.read("stockade/slot-1/memory.max") == str(MiB)


def test_accounting_is_parsed(fake):
    cg = cgroup.detect(fake.root).create("slot-1")
    assert cg.cpu_time() == pytest.approx(1.234567)
    # The box's launcher reads the same counter, from its own read-only descriptor.
    fd = cg.open_cpu_counter()
    try:
        assert os.pread(fd, 64, 0).startswith(b"usage_usec 1234567\n")
        with pytest.raises(OSError):
            os.write(fd, b"0")
    finally:
        os.close(fd)
    g = os.path.join(fake.root, "stockade", "slot-1")
    fake.write(g, "memory.peak", "41943040\n")
    fake.write(g, "memory.current", "4096\n")
    assert cg.memory_peak() == 40 * MiB
    assert not cg.oom_killed()
    fake.write(g, "memory.events", MEMORY_EVENTS.replace("oom_kill 0", "oom_kill 1"))
    assert cg.oom_killed()


def test_memory_current_when_no_peak(fake):
    fake.missing.add("memory.peak")
    cg = cgroup.detect(fake.root).create("slot-1")
    fake.write(os.path.join(fake.root, "stockade", "slot-1"), "memory.current", "8192\n")
    assert cg.memory_peak() == 8192


def test_add_and_pids(fake, sleeper):
    cg = cgroup.detect(fake.root).create("slot-1")
    cg.add(sleeper.pid)
    assert fake.read("stockade/slot-1/cgroup.procs") == str(sleeper.pid)
    assert cg.pids() == [sleeper.pid]
    # What the launcher writes "0" to, to join the group itself: the one file.
    assert cg.procs_files() == [os.path.join(fake.root, "stockade", "slot-1", "cgroup.procs")]


def test_kill_writes_cgroup_kill(fake):
    cg = cgroup.detect(fake.root).create("slot-1")
    cg.kill()
    assert fake.read("stockade/slot-1/cgroup.kill") == "1"


def test_kill_signals_survivors(fake, sleeper):
    # The fake's cgroup.kill does nothing: the backend must notice and SIGKILL.
    cg = cgroup.detect(fake.root).create("slot-1")
    cg.add(sleeper.pid)
    cg.kill()
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert cg.pids() == []


def test_kill_without_cgroup_kill_freezes_first(fake, sleeper):
    fake.missing.add("cgroup.kill")
    b = cgroup.detect(fake.root)
    assert not b.has_kill and "freeze" in b.reason
    cg = b.create("slot-1")
    g = os.path.join(fake.root, "stockade", "slot-1")
    cg.add(sleeper.pid)
    fake.write(g, "cgroup.events", "populated 1\nfrozen 1\n")  # as the kernel would report
    cg.kill()
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert fake.read("stockade/slot-1/cgroup.freeze") == "0"  # thawed again


def test_remove_rmdirs_and_is_idempotent(fake, sleeper):
    cg = cgroup.detect(fake.root).create("slot-1")
    cg.add(sleeper.pid)
    cg.remove()
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert not os.path.exists(os.path.join(fake.root, "stockade", "slot-1"))
    cg.remove()
    assert cg.pids() == []


def test_stale_group_is_replaced(fake, sleeper):
    b = cgroup.detect(fake.root)
    old = b.create("slot-1", pids=4)
    old.add(sleeper.pid)
    new = b.create("slot-1", pids=8)
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert fake.read("stockade/slot-1/pids.max") == "8"
    assert new.pids() == []


def test_names_and_discard_a_group_left_behind(fake, sleeper):
    b = cgroup.detect(fake.root)
    left = b.create("box-60007-7")
    left.add(sleeper.pid)
    b.create("box-60008-8")
    assert {"box-60007-7", "box-60008-8"} <= b.names()
    b.discard("box-60007-7")  # with its process
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    b.discard("box-60009-9")  # never was: nothing to do
    assert "box-60007-7" not in b.names() and "box-60008-8" in b.names()
    with pytest.raises(ValueError):
        b.discard("../box")


def test_bad_name_is_refused(fake):
    b = cgroup.detect(fake.root)
    for name in ("", "..", "a/b"):
        with pytest.raises(ValueError):
            b.create(name)


def test_none_without_memory_controller(tmp_path, monkeypatch):
    fake = FakeCgroupFs(tmp_path, controllers="cpuset cpu io pids")
    monkeypatch.setattr(cgroup, "_mkdir", fake.mkdir)
    b = cgroup.detect(fake.root)
    assert b.kind == "none"
    assert "lacks memory" in b.reason and "v1" in b.reason
    assert not os.path.exists(os.path.join(fake.root, "stockade"))
    cg = b.create("slot-1", memory=MiB)
    assert (cg.cpu_time(), cg.memory_peak(), cg.oom_killed(), cg.pids()) == (0.0, 0, False, [])
    cg.remove()


def test_none_on_hybrid_without_controllers_in_unified(tmp_path):
    os.mkdir(tmp_path / "unified")
    FakeCgroupFs(tmp_path / "unified", controllers="hugetlb")
    b = cgroup.detect(str(tmp_path))
    assert b.kind == "none"
    assert "unified lacks memory, pids" in b.reason


def test_none_without_any_cgroupfs(tmp_path):
    b = cgroup.detect(str(tmp_path / "nothing"))
    assert b.kind == "none" and "no cgroup2 mount" in b.reason


def test_refuses_enabling_controllers_where_processes_live(fake):
    # A cgroup namespace root (e.g. a container) is a non-root cgroup holding processes.
    fake.write(fake.root, "cgroup.type", "domain\n")
    b = cgroup.detect(fake.root)
    assert b.kind == "none"
    assert "no internal processes" in b.reason


def test_rootless_moves_itself_to_a_leaf_of_its_delegated_cgroup(fake, monkeypatch):
    own = os.path.join(fake.root, "user.slice", "app.scope")
    os.makedirs(os.path.dirname(own))
    fake.mkdir(own)
    fake.write(own, "cgroup.procs", f"{os.getpid()}\n")
    monkeypatch.setattr(cgroup.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cgroup, "_self_cgroup", lambda: "/user.slice/app.scope")
    b = cgroup.detect(fake.root)
    assert b.kind == "v2", b.reason
    assert b.parent == os.path.join(own, "stockade")
    assert fake.read("user.slice/app.scope/supervisor/cgroup.procs") == str(os.getpid())
    assert fake.read("user.slice/app.scope/cgroup.subtree_control") == "+memory +pids"
    # The next detect() (we now live in the leaf) finds the same parent.
    monkeypatch.setattr(cgroup, "_self_cgroup", lambda: "/user.slice/app.scope/supervisor")
    assert cgroup.detect(fake.root).parent == b.parent


def test_rootless_refuses_a_shared_cgroup(fake, monkeypatch, sleeper):
    own = os.path.join(fake.root, "session.scope")
    fake.mkdir(own)
    fake.write(own, "cgroup.procs", f"{os.getpid()}\n{sleeper.pid}\n")
    monkeypatch.setattr(cgroup.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cgroup, "_self_cgroup", lambda: "/session.scope")
    b = cgroup.detect(fake.root)
    assert b.kind == "none"
    assert "also holds" in b.reason and "Delegate=yes" in b.reason


def test_favordynmods_plan_keeps_the_mounts_own_options():
    from stockade.sandbox.cgroup import favordynmods_plan

    v2_host = ("30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
               "rw,nsdelegate,memory_recursiveprot\n"
               "31 24 0:27 / /proc rw - proc proc rw\n")
    assert favordynmods_plan(v2_host) == ("/sys/fs/cgroup", "nsdelegate,memory_recursiveprot,favordynmods")
    hybrid = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n" \
             "42 31 0:39 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    assert favordynmods_plan(hybrid) == ("/sys/fs/cgroup/unified", "favordynmods")
    assert favordynmods_plan(hybrid.replace("cgroup2 rw\n", "cgroup2 rw,favordynmods\n")) is None
    assert favordynmods_plan("42 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n") is None
