"""cgroup v2 backend against a fake cgroupfs in tmp_path, and its core files
against this machine's own cgroup2 mount.

The fake mirrors the kernel's file names, formats and refusals (see
FakeCgroupFs); since a plain mkdir does not create a cgroup's files and a plain
rmdir refuses a directory holding them, the module's `_mkdir`, `_rmdir` and
`_write` are replaced by versions that do what the kernel does. The memory and
pids controllers are only faked: here they are bound to cgroup v1.
"""

import contextlib
import errno
import os
import re
import resource
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

# The kernel's order of the controllers (their ids), in which it lists them.
CONTROLLER_ORDER = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")

# What the kernel puts in every non-root cgroup, whatever its parent enables.
CORE_FILES = {
    "cgroup.type": "domain\n",
    "cgroup.procs": "",
    "cgroup.threads": "",
    "cgroup.subtree_control": "\n",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.kill": "",  # (write-only in the kernel)
    "cgroup.freeze": "0\n",
    "cpu.stat": CPU_STAT,  # core (usage_usec, ...), even without the cpu controller
}
# The files a controller's parent creates in each child when it enables it.
CONTROLLER_FILES = {
    "memory": {
        "memory.max": "max\n",
        "memory.swap.max": "max\n",
        "memory.current": "0\n",
        "memory.peak": "0\n",
        "memory.events": MEMORY_EVENTS,
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
}
# Files a rootless user may write in a cgroup delegated to it (the rest of a
# delegated cgroup's files, its limits, belong to whoever delegated it).
DELEGATED_FILES = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")


def _errno(code, path):
    return OSError(code, os.strerror(code), path)


class FakeCgroupFs:
    """A cgroup2 tree in plain files, with the kernel's rules for what it refuses:
    controllers enabled only from cgroup.controllers and never in a non-root
    group holding processes; a process in one group at a time, never in a
    non-root group that hands controllers to its children; and for a writer
    other than root, delegation: it may write only the files of groups it was
    given (`delegate`) or made, and move a process only if it may write the
    cgroup.procs of the lowest group holding both where the process is and
    where it goes.

    cgroup.kill sends SIGKILL to every process of the group and its children
    (the kernel's also stops forks racing with it). Not modelled: cgroup.freeze
    reports the group frozen at once but stops nothing, and counters never
    move by themselves."""

    def __init__(self, root, controllers="cpuset cpu io memory pids"):
        self.root = str(root)
        self.missing = set()  # files an older kernel would not create
        self.writable = {}  # group -> "delegated" (given to the user) or "made" (mkdir by the user)
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

    def _words(self, d, name):
        with open(os.path.join(d, name)) as f:
            return f.read().split()

    def _is_root(self, d):
        return os.path.normpath(d) == os.path.normpath(self.root)

    def delegate(self, d):
        """Give group `d` to the (non-root) user, as chown of it and its three files would."""
        self.writable[os.path.normpath(d)] = "delegated"

    def _may_write(self, path):
        if os.geteuid() == 0:
            return True
        d, name = os.path.split(os.path.normpath(path))
        how = self.writable.get(d)
        return how == "made" or (how == "delegated" and name in DELEGATED_FILES)

    def access(self, path, mode):
        """os.access for paths in the tree, as the kernel's file modes would answer."""
        path = os.path.normpath(path)
        if not os.path.exists(path):
            return False
        if os.geteuid() == 0 or not mode & os.W_OK:
            return True
        if os.path.isdir(path):
            return path in self.writable
        return self._may_write(path)

    def mkdir(self, path):
        parent = os.path.dirname(os.path.normpath(path))
        if os.path.exists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)  # before any permission check
        if os.geteuid() != 0 and parent not in self.writable:
            raise _errno(errno.EACCES, path)
        os.mkdir(path)
        if os.geteuid() != 0:
            self.writable[os.path.normpath(path)] = "made"
        enabled = self._words(parent, "cgroup.subtree_control")
        self.write(path, "cgroup.controllers", " ".join(enabled) + "\n")
        files = dict(CORE_FILES)
        for c in enabled:
            files.update(CONTROLLER_FILES.get(c, {}))
        for name, text in files.items():
            if name not in self.missing:
                self.write(path, name, text)

    def rmdir(self, path):
        if not os.path.isdir(path):
            raise FileNotFoundError(path)
        with os.scandir(path) as it:
            if any(e.is_dir() for e in it) or cgroup._procs(os.path.join(path, "cgroup.procs")):
                raise _errno(errno.EBUSY, path)
        shutil.rmtree(path)
        self.writable.pop(os.path.normpath(path), None)

    def _group_of(self, pid):
        for d, _, _ in os.walk(self.root):
            if str(pid) in self._words(d, "cgroup.procs"):
                return d
        return self.root  # where every process not moved anywhere lives

    def write_file(self, path, value):
        """What a write to a cgroup file does (the module's _write, in the fake)."""
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if not self._may_write(path):
            raise _errno(errno.EACCES, path)
        d, name = os.path.split(os.path.normpath(path))
        if name == "cgroup.subtree_control":
            self._subtree_control(d, value)
        elif name == "cgroup.procs":
            self._move(d, int(value) or os.getpid())
        elif name == "cgroup.freeze":
            if value.strip() not in ("0", "1"):
                raise _errno(errno.EINVAL, path)
            # (At once here; the kernel reports "frozen 1" once every task has stopped.)
            self.write(d, name, value.strip() + "\n")
            events = self.read(os.path.relpath(os.path.join(d, "cgroup.events"), self.root))
            self.write(d, "cgroup.events", re.sub(r"frozen \d", f"frozen {value.strip()}", events))
        elif name == "cgroup.kill":
            if value.strip() != "1":
                raise _errno(errno.EINVAL, path)
            for group, _, _ in os.walk(d):  # the group and every group below it
                for pid in self._words(group, "cgroup.procs"):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        else:
            self.write(d, name, value)  # a value replaces the old one

    def _subtree_control(self, d, value):
        available = self._words(d, "cgroup.controllers")
        enabled = set(self._words(d, "cgroup.subtree_control"))
        for word in value.split():
            sign, c = word[0], word[1:]
            if sign not in "+-" or c not in available:
                raise _errno(errno.ENOENT if sign in "+-" else errno.EINVAL, d)
            if sign == "+":
                enabled.add(c)
            else:
                enabled.discard(c)
        # No internal processes: only the root may hold processes and enable controllers.
        if enabled and not self._is_root(d) and self._words(d, "cgroup.procs"):
            raise _errno(errno.EBUSY, d)
        self.write(d, "cgroup.subtree_control", " ".join(c for c in CONTROLLER_ORDER if c in enabled) + "\n")
        with os.scandir(d) as it:
            for child in (e.path for e in it if e.is_dir()):
                self.write(child, "cgroup.controllers", " ".join(sorted(enabled, key=CONTROLLER_ORDER.index)) + "\n")
                for c in enabled:
                    for name, text in CONTROLLER_FILES.get(c, {}).items():
                        if name not in self.missing and not os.path.exists(os.path.join(child, name)):
                            self.write(child, name, text)

    def _move(self, d, pid):
        if not _alive(pid):
            raise _errno(errno.ESRCH, d)
        if not self._is_root(d) and self._words(d, "cgroup.subtree_control"):
            raise _errno(errno.EBUSY, d)  # no internal processes
        source = self._group_of(pid)
        if os.geteuid() != 0:
            common = os.path.commonpath([source, d])
            if not self._may_write(os.path.join(common, "cgroup.procs")):
                raise _errno(errno.EACCES, d)
        # A process is in one group at a time: it leaves the one it was in.
        self.write(source, "cgroup.procs", "".join(f"{p}\n" for p in self._words(source, "cgroup.procs") if p != str(pid)))
        self.write(d, "cgroup.procs", "".join(f"{p}\n" for p in [*self._words(d, "cgroup.procs"), str(pid)]))


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
    monkeypatch.setattr(cgroup, "_write", fs.write_file)
    real_access = os.access
    monkeypatch.setattr(cgroup.os, "access", lambda path, mode: (
        fs.access(path, mode) if os.path.normpath(path).startswith(fs.root) else real_access(path, mode)))
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
    assert fake.read("cgroup.subtree_control") == "memory pids\n"
    assert fake.read("stockade", "cgroup.subtree_control") == "memory pids\n"
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


def test_a_run_without_memory_peak_reports_at_least_its_largest_process(fake):
    # Kernel < 5.19 (Ubuntu 22.04's 5.15, Debian 11's 5.10): no memory.peak, and
    # memory.current read after the run is what is still charged, not a peak.
    from types import SimpleNamespace

    from stockade.sandbox import Limits, box

    fake.missing.add("memory.peak")
    b = cgroup.detect(fake.root)
    cg = b.create("slot-1")
    assert not cg.exact_peak
    fake.write(os.path.join(fake.root, "stockade", "slot-1"), "memory.current", "8192\n")
    usage = resource.struct_rusage((0.1,) + (0,) * 15)  # (its CPU time; the peak is `largest`)
    result = box.Sandbox._account(SimpleNamespace(cgroups=b), cg, box._Outcome(), 0, None, [usage], 0.1, Limits(),
                                  largest=40 * MiB)  # (the largest process's peak, as _watch finds it)
    assert result.memory == 40 * MiB


def test_add_and_pids(fake, sleeper):
    cg = cgroup.detect(fake.root).create("slot-1")
    cg.add(sleeper.pid)
    assert fake.read("stockade/slot-1/cgroup.procs") == f"{sleeper.pid}\n"
    assert cg.pids() == [sleeper.pid]
    # What the launcher writes "0" to, to join the group itself: the one file.
    assert cg.procs_files() == [os.path.join(fake.root, "stockade", "slot-1", "cgroup.procs")]


def test_kill_goes_through_cgroup_kill(fake, sleeper, monkeypatch):
    cg = cgroup.detect(fake.root).create("slot-1")
    cg.add(sleeper.pid)
    writes = []
    write = cgroup._write
    monkeypatch.setattr(cgroup, "_write", lambda path, value: (writes.append((path, value)), write(path, value)))
    cg.kill()
    assert writes[0] == (os.path.join(cg.path, "cgroup.kill"), "1")
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert cg.pids() == []


def test_kill_without_cgroup_kill_or_freezer_signals_until_empty(fake, sleeper):
    # Kernel < 5.2: neither file; each process is sent SIGKILL until none is left.
    fake.missing.update({"cgroup.kill", "cgroup.freeze"})
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
    cg.add(sleeper.pid)
    cg.kill()
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert fake.read("stockade/slot-1/cgroup.freeze") == "0\n"  # thawed again
    assert fake.read("stockade/slot-1/cgroup.events").endswith("frozen 0\n")


def test_kill_without_cgroup_kill_of_a_group_removed_meanwhile(fake, sleeper):
    # Its last process exits after we listed it, and the process that holds
    # the slot now removes the group before we freeze it: nothing left to kill.
    fake.missing.add("cgroup.kill")
    cg = cgroup.detect(fake.root).create("slot-1")
    cg.add(sleeper.pid)
    listed = cg.pids

    def listed_then_gone():
        pids = listed()
        sleeper.kill()
        sleeper.wait()
        cgroup._rmdir(cg.path)
        return pids

    cg.pids = listed_then_gone
    cg.kill()
    cg.remove()
    assert not os.path.exists(cg.path)


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


def test_refuses_enabling_controllers_where_other_processes_live(fake, monkeypatch):
    # A cgroup namespace root (e.g. a container) is a non-root cgroup, here
    # holding its init (pid 1) besides us: we move only ourselves out.
    fake.write(fake.root, "cgroup.type", "domain\n")
    fake.write(fake.root, "cgroup.procs", f"1\n{os.getpid()}\n")
    monkeypatch.setattr(cgroup, "_self_cgroup", lambda: "/")
    b = cgroup.detect(fake.root)
    assert b.kind == "none"
    assert "also holds pids [1]" in b.reason and "no internal processes" in b.reason
    assert fake.read("cgroup.subtree_control") == "\n"


def _own_group(fake, monkeypatch, path, pids=(), controllers="memory pids", delegated=True):
    """A systemd host: controllers enabled down to `path`'s parent (systemd
    does that), `path` holding us (and `pids`), given to us or not, and us no
    longer root."""
    parts = path.strip("/").split("/")
    d = fake.root
    for part in parts:
        fake.write_file(os.path.join(d, "cgroup.subtree_control"), " ".join(f"+{c}" for c in controllers.split()))
        d = os.path.join(d, part)
        fake.mkdir(d)
    for pid in (os.getpid(), *pids):
        fake.write_file(os.path.join(d, "cgroup.procs"), str(pid))
    if delegated:
        fake.delegate(d)
    monkeypatch.setattr(cgroup.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cgroup, "_self_cgroup", lambda: path)
    return d


def test_rootless_moves_itself_to_a_leaf_of_its_delegated_cgroup(fake, monkeypatch):
    own = _own_group(fake, monkeypatch, "/user.slice/app.scope")
    b = cgroup.detect(fake.root)
    assert b.kind == "v2", b.reason
    assert b.parent == os.path.join(own, "stockade")
    assert fake.read("user.slice/app.scope/supervisor/cgroup.procs") == f"{os.getpid()}\n"
    assert fake.read("user.slice/app.scope/cgroup.procs") == ""
    assert fake.read("user.slice/app.scope/cgroup.subtree_control") == "memory pids\n"
    # The next detect() (we now live in the leaf) finds the same parent.
    monkeypatch.setattr(cgroup, "_self_cgroup", lambda: "/user.slice/app.scope/supervisor")
    assert cgroup.detect(fake.root).parent == b.parent


def test_rootless_in_a_cgroup_not_given_to_it_says_how(fake, monkeypatch):
    _own_group(fake, monkeypatch, "/user.slice/session-1.scope", delegated=False)
    b = cgroup.detect(fake.root)
    assert b.kind == "none"
    assert "session-1.scope is not writable" in b.reason and "Delegate=yes" in b.reason


def test_rootless_refuses_a_shared_cgroup(fake, monkeypatch, sleeper):
    _own_group(fake, monkeypatch, "/session.scope", pids=[sleeper.pid])
    b = cgroup.detect(fake.root)
    assert b.kind == "none"
    assert "also holds" in b.reason and "Delegate=yes" in b.reason


def _place(fake, pid, group):
    """`pid` in `group`, as a fork of a process there would be (root's move)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cgroup.os, "geteuid", lambda: 0)
        fake.write_file(os.path.join(group, "cgroup.procs"), str(pid))


def test_rootless_detect_after_one_that_failed_once_moved_uses_the_same_leaf(fake, monkeypatch):
    own = _own_group(fake, monkeypatch, "/user.slice/app.scope")
    mkdir = fake.mkdir

    def failing(path):
        if os.path.basename(path) == "stockade":
            raise _errno(errno.ENOSPC, path)  # cgroup.max.descendants reached, say
        mkdir(path)

    monkeypatch.setattr(cgroup, "_mkdir", failing)
    assert cgroup.detect(fake.root).kind == "none"  # after moving us into the leaf
    monkeypatch.setattr(cgroup, "_mkdir", mkdir)
    monkeypatch.setattr(cgroup, "_self_cgroup", lambda: "/user.slice/app.scope/supervisor")
    b = cgroup.detect(fake.root)
    assert b.kind == "v2", b.reason
    assert b.parent == os.path.join(own, "stockade")
    assert not os.path.exists(os.path.join(own, "supervisor", "supervisor"))


def test_rootless_moves_its_boxes_in(fake, monkeypatch, sleeper):
    own = _own_group(fake, monkeypatch, "/user.slice/app.scope")
    b = cgroup.detect(fake.root)
    _place(fake, sleeper.pid, os.path.join(own, "supervisor"))  # a child of ours, in our leaf
    cg = b.create("box-1", memory=MiB, pids=8)
    cg.add(sleeper.pid)
    assert cg.pids() == [sleeper.pid]
    assert fake.read("user.slice/app.scope/stockade/box-1/memory.max") == str(MiB)
    cg.remove()


def test_rootless_refuses_a_delegated_parent_it_cannot_move_its_boxes_into(fake, monkeypatch, sleeper):
    # An admin made /stockade and gave it to us, but we run in a session scope
    # outside it: moving our children there needs write access to the root's
    # cgroup.procs (the lowest group holding both), which we lack.
    fake.write_file(os.path.join(fake.root, "cgroup.subtree_control"), "+memory +pids")
    fake.mkdir(os.path.join(fake.root, "stockade"))
    fake.delegate(os.path.join(fake.root, "stockade"))
    own = _own_group(fake, monkeypatch, "/user.slice/session-1.scope", delegated=False)
    b = cgroup.detect(fake.root)
    assert b.kind == "none", b.reason
    assert "outside" in b.reason and own in b.reason
    # The same delegated parent works for a supervisor started inside it.
    _place(fake, os.getpid(), os.path.join(fake.root, "stockade"))
    inside = os.path.join(fake.root, "stockade", "supervisor")
    fake.mkdir(inside)
    _place(fake, os.getpid(), inside)
    _place(fake, sleeper.pid, inside)
    monkeypatch.setattr(cgroup, "_self_cgroup", lambda: "/stockade/supervisor")
    b = cgroup.detect(fake.root)
    assert b.kind == "v2", b.reason
    cg = b.create("box-1")
    cg.add(sleeper.pid)
    assert cg.pids() == [sleeper.pid]
    cg.remove()


def test_root_in_a_cgroup_namespace_moves_itself_to_a_leaf(fake, monkeypatch):
    # A container with its own cgroup namespace: the mount's root is the
    # container's (non-root) group, holding us alone, e.g. as the container's pid 1.
    fake.write(fake.root, "cgroup.type", "domain\n")
    fake.write(fake.root, "cgroup.procs", f"{os.getpid()}\n")
    monkeypatch.setattr(cgroup, "_self_cgroup", lambda: "/")
    b = cgroup.detect(fake.root)
    assert b.kind == "v2", b.reason
    assert b.parent == os.path.join(fake.root, "stockade")
    assert fake.read("supervisor/cgroup.procs") == f"{os.getpid()}\n"
    assert fake.read("cgroup.subtree_control") == "memory pids\n"


def test_controllers_not_given_to_our_cgroup_are_named(fake, monkeypatch):
    # The host has memory, but systemd gave our delegated scope only pids.
    own = _own_group(fake, monkeypatch, "/user.slice/app.scope", controllers="pids")
    b = cgroup.detect(fake.root)
    assert b.kind == "none"
    assert "not given memory" in b.reason and "Delegate=" in b.reason
    # Refused before moving ourselves: where we were, nothing made.
    assert fake.read("user.slice/app.scope/cgroup.procs") == f"{os.getpid()}\n"
    assert not os.path.exists(os.path.join(own, "supervisor"))


def _cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return fields[4]
    return None


@pytest.fixture
def real_v2():
    """A group of our own on this machine's cgroup2 mount: its core files
    (cgroup.procs, cgroup.kill, cgroup.freeze, cgroup.events, cpu.stat) are
    the kernel's, whatever controllers the mount has (none, on a host whose
    controllers are bound to v1). Nothing is enabled or moved but our sleeper."""
    mount = _cgroup2_mount()
    if os.geteuid() != 0 or mount is None:
        pytest.skip("needs root and a cgroup2 mount")
    parent = os.path.join(mount, f"stockade-test-{os.getpid()}")
    os.mkdir(parent)
    try:
        yield cgroup.V2Backend("this machine's cgroup2", parent)
    finally:
        for d in sorted((e.path for e in os.scandir(parent) if e.is_dir()), reverse=True):
            cgroup.V2Cgroup(cgroup.V2Backend("", parent), os.path.basename(d)).remove()
        os.rmdir(parent)


@pytest.mark.parametrize("has_kill", [True, False], ids=["cgroup.kill", "freeze-and-kill"])
def test_real_kernel_kill_and_remove(real_v2, sleeper, has_kill):
    real_v2.has_kill = has_kill and real_v2.has_kill
    cg = real_v2.create("box-1")
    cg.add(sleeper.pid)
    assert cg.pids() == [sleeper.pid]
    assert cg.cpu_time() >= 0.0  # usage_usec, from the core cpu.stat
    assert not cgroup._rmdir_if_empty(cg.path)  # EBUSY: a process is in it
    cg.kill()
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert cg.pids() == []
    if real_v2.has_freeze:
        with open(os.path.join(cg.path, "cgroup.freeze")) as f:
            assert f.read() == "0\n"  # never left frozen
    cg.remove()
    assert not os.path.exists(cg.path)
    cg.remove()  # gone already: fine


def test_real_kernel_refuses_what_the_fake_refuses(real_v2, sleeper):
    cg = real_v2.create("box-1")
    given = set(cgroup._read(os.path.join(cg.path, "cgroup.controllers")).split())
    absent = next(c for c in ("memory", "pids", "hugetlb", "rdma", "misc") if c not in given)
    with pytest.raises(OSError) as e:  # a controller the parent did not give
        cgroup._write(os.path.join(cg.path, "cgroup.subtree_control"), f"+{absent}")
    assert e.value.errno == errno.ENOENT
    sleeper.kill()
    sleeper.wait()
    with pytest.raises(OSError) as e:  # a process that is no more
        cgroup._write(os.path.join(cg.path, "cgroup.procs"), str(sleeper.pid))
    assert e.value.errno == errno.ESRCH
    cg.remove()


def test_real_kernel_migration_needs_the_common_ancestors_procs(real_v2):
    # The rule behind refusing a delegated parent we run outside of: a user
    # moving a process needs write access to cgroup.procs of the lowest group
    # holding both where it is and where it goes.
    given = os.path.join(real_v2.parent, "given")
    for d in (given, os.path.join(given, "a"), os.path.join(given, "b")):
        os.mkdir(d)
        for f in ("", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
            os.chown(os.path.join(d, f), 65534, 65534)  # delegated to nobody
    target = os.path.join(given, "b", "cgroup.procs")

    def move_itself(start=None):
        code = f"import os, sys; sys.stdin.readline(); os.write(os.open({target!r}, os.O_WRONLY), b'0')"
        sh = subprocess.Popen(["/usr/bin/python3", "-c", code], user=65534, group=65534, cwd="/",
                              stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        if start:
            cgroup._write(os.path.join(start, "cgroup.procs"), str(sh.pid))  # root places it
        _, err = sh.communicate(b"go\n", timeout=10)
        return sh.returncode, err

    code, err = move_itself()  # from our group, outside `given`: the ancestor is above it
    assert code != 0 and b"PermissionError" in err
    code, err = move_itself(start=os.path.join(given, "a"))  # inside: `given` is the ancestor
    assert code == 0, err


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


def test_favordynmods_is_reported_but_not_remounted_without_root(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("30 24 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n")
    line = cgroup.favor_dynamic_migrations(str(mountinfo), remount=False)
    assert line.startswith("favordynmods off") and "needs root" in line
    mountinfo.write_text("30 24 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,favordynmods\n")
    assert cgroup.favor_dynamic_migrations(str(mountinfo), remount=False).startswith("favordynmods on")
