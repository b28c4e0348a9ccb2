"""libstockade-spawn (spawn.c, spawn.py): bwrap started as the slot's uid from
our own vfork child, with no exec in between. Run for real, as root, on
harmless programs; and the Sandbox's other way (the launcher) still works."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat

import pytest

from stockade.errors import SandboxUnavailable
from stockade.sandbox import Limits, Sandbox, Status, cgroup, launch, spawn
from tests.conftest import leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the spawner switches uid: root only")

PY = "/usr/bin/python3"
UID = 61450
# Everything the spawned program inherits, as JSON.
SHOW = """
import json, os, resource as r
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
print(json.dumps({
    'ids': [os.getresuid(), os.getresgid(), os.getgroups()],
    'limits': [r.getrlimit(r.RLIMIT_NOFILE), r.getrlimit(r.RLIMIT_CORE), r.getrlimit(r.RLIMIT_FSIZE)],
    'cgroups': [line.strip() for line in open('/proc/self/cgroup') if 'spawn-test' in line],
    'fds': sorted(os.listdir('/proc/self/fd')),
    'cwd': os.getcwd(), 'env': open('/proc/self/environ').read(),  # (not os.environ: Python adds LC_CTYPE)
    'blocked': status['SigBlk'].strip(),
    'netns': os.readlink('/proc/self/ns/net'),
}))
"""


@pytest.fixture(scope="module")
def spawner():
    s = spawn.load()
    assert s is not None, f"{spawn.DEFAULT_LIBRARY} missing: run `make setup`"
    return s


def run(spawner, argv, **kwargs):
    """Spawn argv with stdout/stderr on a pipe; (exit status, output)."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        pid = spawner.spawn(argv, stdio=(null, out_w, out_w), uid=UID, gid=UID, **{"keep": (), **kwargs})
        os.close(out_w)
        out_w = -1
        chunks = []
        while chunk := os.read(out_r, 65536):
            chunks.append(chunk)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), b"".join(chunks).decode()
    finally:
        for fd in (out_r, out_w, null):
            if fd != -1:
                os.close(fd)


def test_the_library_is_built_and_not_writable_by_others():
    st = os.stat(spawn.DEFAULT_LIBRARY)
    assert st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def test_the_child_gets_the_identity_limits_cgroup_netns_and_only_its_fds(spawner):
    group = cgroup.detect().create(f"spawn-test-{os.getpid()}", memory=256 << 20, pids=64)
    netns = launch.make_netns(launch.install(launch.DEFAULT_LAUNCHER, "/run/stockade"))
    kept_r, kept_w = os.pipe2(os.O_CLOEXEC)  # (close-on-exec here: kept anyway)
    secret_r, secret_w = os.pipe()  # inheritable, not named: must not pass
    try:
        code, out = run(spawner, [PY, "-c", SHOW], keep=(kept_r,), netns_fd=netns,
                        cgroup_procs=group.procs_files(),
                        rlimits=[("nofile", 40, 41), ("core", 0, 0), ("fsize", 1 << 20, 2 << 20)])
        assert code == 0, out
        seen = json.loads(out)
        assert seen["ids"] == [[UID] * 3, [UID] * 3, []]
        assert seen["limits"] == [[40, 41], [0, 0], [1 << 20, 2 << 20]]
        # In the group in every hierarchy (v1: memory, pids, cpuacct, freezer; v2: one line).
        assert len(seen["cgroups"]) == len(set(group.procs_files())), seen["cgroups"]
        # 0-2, the kept one, and the one python's listdir opens.
        assert len(seen["fds"]) == 5 and str(kept_r) in seen["fds"] and str(secret_r) not in seen["fds"]
        assert seen["cwd"] == "/" and seen["env"] == ""
        assert seen["blocked"] == "0000000000000000"
        assert seen["netns"] == os.readlink(f"/proc/self/fd/{netns}")
        assert seen["netns"] != os.readlink("/proc/self/ns/net")
    finally:
        for fd in (kept_r, kept_w, secret_r, secret_w, netns):
            os.close(fd)
        group.remove()


def test_no_signal_is_ignored_in_the_child(spawner):
    # We ignore SIGPIPE and SIGXFSZ (as Python does); the child must not:
    # SIGXFSZ is what enforces the file size limit. (Not checked from Python,
    # which ignores both again at its start.)
    code, out = run(spawner, ["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])
    assert code == 0 and out.split() == ["SigBlk:", "0" * 16, "SigIgn:", "0" * 16], out


def test_a_failed_start_names_its_step_and_leaves_no_child(spawner):
    # (Orphans of other tests, reparented to this process as the sandbox's
    # subreaper, may be zombies already: only new ones count.)
    zombies_before = set(zombie_children())
    cases = [
        (dict(argv=["/nonexistent/program"]), "exec: No such file or directory"),
        (dict(argv=["/bin/true"], cgroup_procs=["/sys/fs/cgroup/memory/no-such-group/cgroup.procs"]),
         "joining the box's cgroup (/sys/fs/cgroup/memory/no-such-group/cgroup.procs)"),
        (dict(argv=["/bin/true"], rlimits=[("nofile", 10, 5)]), "setting an rlimit (nofile)"),
    ]
    with open("/etc/hostname") as not_a_namespace:
        cases.append((dict(argv=["/bin/true"], netns_fd=not_a_namespace.fileno()),
                      "joining the slot's network namespace"))
        for kwargs, message in cases:
            with pytest.raises(OSError, match=message.replace("(", r"\(").replace(")", r"\)")):
                run(spawner, **kwargs)
    # The failed children were reaped by the spawner: no zombie of ours is left.
    assert set(zombie_children()) - zombies_before == set()


def zombie_children() -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(name))
    return found


def test_root_and_low_descriptors_are_refused_before_anything_runs(spawner):
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError, match="checking the new identity"):
            spawner.spawn(["/bin/true"], stdio=(null, null, null), keep=(), uid=0, gid=UID)
        with pytest.raises(OSError, match="placing descriptors"):
            spawner.spawn(["/bin/true"], stdio=(0, null, null), keep=(), uid=UID, gid=UID)
    finally:
        os.close(null)


def test_kernels_without_close_range_cloexec_get_the_launcher(monkeypatch):
    assert spawn.kernel_supported("6.1.0-18-amd64") and spawn.kernel_supported("5.11.0")
    assert spawn.kernel_supported("6.18.2+") and spawn.kernel_supported("10.0")
    assert not spawn.kernel_supported("5.10.0-28-amd64") and not spawn.kernel_supported("4.19.0")
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "5.10.0-28-amd64", "#1", "x86_64")))
    assert spawn.load() is None


def test_load_vets_the_library(tmp_path):
    writable = tmp_path / spawn.LIBRARY_NAME
    shutil.copyfile(spawn.DEFAULT_LIBRARY, writable)
    os.chmod(writable, 0o777)
    with pytest.raises(SandboxUnavailable, match="writable by group or others"):
        spawn.load(str(writable))
    assert spawn.load(str(tmp_path / "missing.so")) is None and spawn.load(None) is None


# Identity and rlimits as the box's program sees them.
BOX_VIEW = "import os, resource as r; print(os.getresuid(), r.getrlimit(r.RLIMIT_NOFILE), r.getrlimit(r.RLIMIT_FSIZE))"


def test_both_ways_to_start_bwrap_make_the_same_box(sandbox):
    assert sandbox.spawner is not None  # the default, as root with the library built
    by_launcher = Sandbox(slots=2, first_uid=61400, spawner=None)
    try:
        assert by_launcher.spawner is None and by_launcher.launcher
        limits = Limits(open_files=40, file_size=3 << 20, memory=128 << 20)
        views = [box.run_sync([PY, "-c", BOX_VIEW], limits=limits) for box in (sandbox, by_launcher)]
        assert all(v.status is Status.ok for v in views), views
        assert views[0].stdout == views[1].stdout == b"(1000, 1000, 1000) (40, 40) (3145728, 3145728)\n"
        for box in (sandbox, by_launcher):
            hog = box.run_sync([PY, "-c", "b = bytearray(300 << 20)"], limits=limits)
            assert hog.status is Status.memory_limit, hog  # the cgroup holds bwrap and its box
            # (exec: head itself is the program; a shell would exit with 153, an exit code)
            big = box.run_sync(["/bin/sh", "-c", "exec head -c 4M /dev/zero > /box/f"], limits=limits)
            assert big.status is Status.runtime_error and big.signal == signal.SIGXFSZ, big  # never ignored
    finally:
        by_launcher.close()
    assert leftovers(by_launcher) == []
