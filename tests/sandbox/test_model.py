"""Pure parts of the sandbox layer: limits, sizes, verdict precedence, argv."""

from __future__ import annotations

import sys

import pytest

from stockade.errors import LimitError
from stockade.sandbox import Limits, MiB, Mount, Status, parse_size
from stockade.sandbox import bwrap as bw
from stockade.sandbox.box import _program_status
from stockade.sandbox.launch import identity_argv, rlimit_argv, rlimits
from stockade.sandbox.model import PRECEDENCE, decide
from stockade.sandbox.workdir import check_relpath


@pytest.mark.parametrize(("text", "expected"), [
    ("1048576", 1048576), ("512K", 512 * 1024), ("64M", 64 * MiB), ("1G", 1024 * MiB),
    ("1.5G", int(1.5 * 1024 * MiB)), ("64m", 64 * MiB), ("64MiB", 64 * MiB), (" 7 ", 7), ("100B", 100),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12X", "-5M", "M", "1.5", "1e6", "64 MB extra", "1iB", "1KK"])
def test_parse_size_refuses(text):
    with pytest.raises(LimitError):
        parse_size(text)


def test_limits_defaults_are_documented_values():
    limits = Limits()
    assert (limits.cpu_time, limits.wall_time, limits.memory, limits.processes) == (2.0, 10.0, 256 * MiB, 64)
    assert (limits.output, limits.file_size, limits.open_files, limits.stack) == (MiB, 16 * MiB, 64, 64 * MiB)


@pytest.mark.parametrize("bad", [
    {"cpu_time": 0}, {"cpu_time": -1}, {"wall_time": "3"}, {"memory": 1024}, {"processes": 0},
    {"output": -1}, {"output": 1024 * MiB + 1}, {"open_files": 2}, {"memory": 1.5 * MiB}, {"processes": True},
])
def test_limits_refuse_nonsense(bad):
    with pytest.raises(LimitError):
        Limits(**bad)


def test_precedence_order_is_the_design():
    assert PRECEDENCE == (Status.sandbox_error, Status.memory_limit, Status.output_limit, Status.time_limit,
                          Status.wall_time_limit, Status.runtime_error, Status.ok)


@pytest.mark.parametrize(("events", "expected"), [
    (set(), Status.ok),
    ({Status.runtime_error}, Status.runtime_error),
    ({Status.runtime_error, Status.wall_time_limit}, Status.wall_time_limit),
    ({Status.wall_time_limit, Status.time_limit}, Status.time_limit),
    ({Status.time_limit, Status.output_limit}, Status.output_limit),
    ({Status.output_limit, Status.memory_limit, Status.runtime_error}, Status.memory_limit),
    ({Status.memory_limit, Status.sandbox_error}, Status.sandbox_error),
])
def test_verdict_precedence(events, expected):
    assert decide(events) is expected


def test_program_status():
    # Without the launcher's report: bwrap's exit code, 128 + N for signal N.
    assert _program_status(b"", 0) == (0, None)
    assert _program_status(b"", 3 << 8) == (3, None)
    assert _program_status(b"", (128 + 9) << 8) == (None, 9)  # bwrap: the program died of SIGKILL
    assert _program_status(b"", 9) == (None, 9)  # bwrap itself was killed
    # The launcher's report (a wait status) wins: exit(152) is an exit code, not SIGXCPU.
    def report(status):
        return status.to_bytes(4, sys.byteorder, signed=True)
    assert _program_status(report(152 << 8), 152 << 8) == (152, None)
    assert _program_status(report(24), 152 << 8) == (None, 24)
    assert _program_status(report(0), 0) == (0, None)
    assert _program_status(b"\0\0", 3 << 8) == (3, None)  # cut short: not a report


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../b", "", "a\0b", "./.."])
def test_relpath_refuses_escapes(name):
    with pytest.raises(LimitError):
        check_relpath(name)


def test_relpath_normalises():
    assert check_relpath("src//./main.c") == ["src", "main.c"]


def _argv(**kw):
    defaults = dict(workdir="/run/stockade/boxes/3", etc_dir="/gen/etc", tmp_size=8 * MiB, env={},
                    info_fd=5, block_fd=6, seccomp_fd=7)
    defaults.update(kw)
    return bw.build_argv("/usr/bin/bwrap", ["/usr/bin/python3", "-c", "pass"], **defaults)


def test_bwrap_argv_has_every_layer():
    argv = _argv()
    joined = " ".join(argv)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--cap-drop ALL", "--clearenv", "--proc /proc", "--dev /dev", "--info-fd 5", "--block-fd 6",
                 "--seccomp 7", "--ro-bind /usr /usr", "--ro-bind /gen/etc /etc", "--remount-ro /"):
        assert flag in joined, flag
    assert "--share-net" not in argv
    assert argv[argv.index("--bind") + 1:argv.index("--bind") + 3] == ["/run/stockade/boxes/3", "/box"]
    i = argv.index("--tmpfs", argv.index("--dev"))
    assert argv[i - 2:i + 2] == ["--size", str(8 * MiB), "--tmpfs", "/tmp"]
    # The program comes last, after "--", untouched.
    assert argv[-4:] == ["--", "/usr/bin/python3", "-c", "pass"]
    # No host path beyond /usr, the /lib links, the generated /etc, and the box.
    binds = [argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--ro-bind-try")]
    assert all(b.startswith(("/usr", "/run/stockade/boxes/3")) or b == "/gen/etc" for b in binds), binds
    # In the slot's own network namespace: every namespace but that one.
    joined = _argv(own_netns=False)
    assert "--unshare-all" not in joined and "--share-net" not in joined
    for flag in ("--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup"):
        assert flag in joined
    launched = _argv(launcher="/run/stockade/stockade-launch")
    assert "--ro-bind /run/stockade/stockade-launch /.stockade-launch" in " ".join(launched)



def test_bwrap_argv_with_a_prepared_dev():
    argv = _argv(dev_dir="/run/stockade/dev")
    joined = " ".join(argv)
    assert "--dev-bind /run/stockade/dev /dev" in joined and "--dev /dev" not in joined
    # No read-only remount of /dev: it would add nodev and disable the nodes (root owns them all).
    assert "--remount-ro /dev" not in joined and "--remount-ro /dev" in " ".join(_argv())
    assert f"--size {8 * MiB} --tmpfs /dev/shm" in joined


def test_bwrap_argv_with_the_root_tree():
    argv = _argv(root_dir="/run/stockade/tree-1", etc_dir="/run/stockade/tree-1/etc")
    joined = " ".join(argv)
    # The tree is bound read-only as / before anything is mounted on it...
    assert argv.index("--ro-bind") == argv.index("/run/stockade/tree-1") - 1
    assert argv[argv.index("/run/stockade/tree-1") + 1] == "/" and argv.index("/run/stockade/tree-1") < argv.index("/usr")
    # ...so the links, the /etc bind and the read-only remount of / are its already.
    assert "--symlink" not in argv and " /etc" not in joined and "--remount-ro / " not in joined + " "
    assert "--ro-bind /usr /usr" in joined and "--proc /proc" in joined and "--bind /run/stockade/boxes/3 /box" in joined

def test_bwrap_argv_environment_is_explicit():
    argv = _argv(env={"JAVA_OPTS": "-Xmx64m"})
    pairs = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}
    assert pairs["PATH"] == "/usr/bin:/bin" and pairs["HOME"] == "/box" and pairs["JAVA_OPTS"] == "-Xmx64m"
    assert not any(k in pairs for k in ("PYTHONPATH", "LD_PRELOAD", "VIRTUAL_ENV"))


def test_bwrap_argv_mounts():
    argv = _argv(mounts=[Mount("/var/cache/x", "/box/bin"), Mount("/srv/rw", "/data", writable=True)])
    joined = " ".join(argv)
    assert "--ro-bind /var/cache/x /box/bin" in joined and "--bind /srv/rw /data" in joined


def test_rlimit_argv():
    limits = Limits(cpu_time=1.2, file_size=1000, open_files=10, stack=8 * MiB)
    args = rlimit_argv(rlimits(limits, per_process_fallback=False))
    assert args[0] == "/.stockade-launch" and args[-1] == "--"
    assert "--rlimit=cpu:3:4" in args and "--rlimit=fsize:1000:1000" in args and "--rlimit=nofile:10:10" in args
    assert "--rlimit=core:1:1" in args and not any(a.startswith(("--rlimit=nproc", "--rlimit=as")) for a in args)
    fallback = rlimit_argv(rlimits(Limits(processes=5, memory=64 * MiB), per_process_fallback=True))
    # (nproc: the program's 5, and the box's own two)
    assert "--rlimit=nproc:7:7" in fallback and f"--rlimit=as:{64 * MiB}:{64 * MiB}" in fallback
    # Without the launcher, util-linux's prlimit gets the same limits.
    prlimit = rlimit_argv(rlimits(limits, per_process_fallback=False), launcher=None)
    assert prlimit[0] == "/usr/bin/prlimit" and prlimit[-1] == "--"
    assert "--cpu=3:4" in prlimit and "--nofile=10:10" in prlimit and "--core=1:1" in prlimit
    # Or before bwrap, by the launcher that becomes the slot's uid.
    ident = identity_argv(60003, 60003, "/run/stockade/stockade-launch", rlimits=[("nofile", 64, 64), ("core", 0, 0)])
    assert ident == ["/run/stockade/stockade-launch", "--rlimit=nofile:64:64", "--rlimit=core:0:0",
                     "--uid=60003", "--gid=60003", "--"]
    with pytest.raises(ValueError):
        identity_argv(60003, 60003, None, rlimits=[("core", 0, 0)])
    # And moves into the box's cgroup first, one cgroup.procs file per hierarchy.
    joined = identity_argv(60003, 60003, "/l", netns_fd=7, cgroup_procs=["/cg/freezer/b/cgroup.procs",
                                                                         "/cg/memory/b/cgroup.procs"])
    assert joined == ["/l", "--netns-fd=7", "--cgroup-procs=/cg/freezer/b/cgroup.procs",
                      "--cgroup-procs=/cg/memory/b/cgroup.procs", "--uid=60003", "--gid=60003", "--"]



def test_rlimits_set_outside_only_when_bwrap_can_build_under_them():
    from stockade.sandbox.launch import settable_outside

    # The defaults, and anything roomy: set before bwrap starts, by the launcher that switches uid.
    assert settable_outside(rlimits(Limits(), per_process_fallback=False))
    assert settable_outside(rlimits(Limits(open_files=32, stack=MiB, file_size=MiB), per_process_fallback=False))
    # Too tight for bwrap's own setup: on the program only, by the box's first program.
    for tight in (Limits(open_files=31), Limits(stack=MiB - 1), Limits(file_size=1000),
                  Limits(per_process_memory=True)):
        assert not settable_outside(rlimits(tight, per_process_fallback=False)), tight
    # Without a cgroup the memory and process limits are rlimits too (per process): inside.
    assert not settable_outside(rlimits(Limits(), per_process_fallback=True))

def test_per_process_limits():
    each = Limits(cpu_time=1.2, memory=64 * MiB, processes=8, per_process_time=True, per_process_memory=True)
    args = rlimit_argv(rlimits(each, per_process_fallback=False))
    assert "--rlimit=cpu:2:3" in args and f"--rlimit=as:{64 * MiB}:{64 * MiB}" in args
    assert each.total_memory == 8 * 64 * MiB
    assert Limits(memory=1024 * MiB, processes=64, per_process_memory=True).total_memory == 2048 * MiB
    assert Limits(memory=64 * MiB, processes=8).total_memory == 64 * MiB
    with pytest.raises(LimitError, match="per_process_time must be true or false"):
        Limits(per_process_time=1)


def test_identity_argv():
    assert identity_argv(60003, 60003, "/run/stockade/stockade-launch") == [
        "/run/stockade/stockade-launch", "--uid=60003", "--gid=60003", "--"]
    assert identity_argv(60003, 60003, "/l", netns_fd=9) == ["/l", "--netns-fd=9", "--uid=60003", "--gid=60003", "--"]
    assert identity_argv(60003, 60003, None) == [
        "/usr/bin/setpriv", "--reuid=60003", "--regid=60003", "--clear-groups", "--"]


def test_bwrap_version_parsing():
    assert bw.parse_version("bubblewrap 0.8.0\n") == (0, 8, 0)
    assert bw.parse_version("bubblewrap 0.11") == (0, 11, 0)


def test_bwrap_is_vetted():
    info = bw.find_bwrap()
    assert info.version >= (0, 8, 0)
