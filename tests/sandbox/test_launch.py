"""stockade-launch (launch.c): the static helper that becomes the slot's uid
outside the box and sets the rlimits inside it. Run for real, on harmless
programs; and the Sandbox's fallback to setpriv + prlimit without it."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from stockade.errors import SandboxUnavailable
from stockade.sandbox import Limits, Sandbox, Status, launch
from stockade.sandbox.box import _split_report

LAUNCHER = launch.DEFAULT_LAUNCHER
PY = "/usr/bin/python3"
# Line 1: identity; line 2: the rlimits set (nofile, cpu, core).
SHOW = ("import os, resource as r; print(os.getresuid(), os.getresgid(), os.getgroups());"
        " print(r.getrlimit(r.RLIMIT_NOFILE), r.getrlimit(r.RLIMIT_CPU), r.getrlimit(r.RLIMIT_CORE))")


def test_launcher_is_built():
    # `make setup` builds it; without it every box pays two dynamic execs more.
    assert os.access(LAUNCHER, os.X_OK), f"{LAUNCHER} missing: run `make setup`"
    st = os.stat(LAUNCHER)
    assert not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def run(*args: str, pass_fds=()) -> subprocess.CompletedProcess:
    return subprocess.run([LAUNCHER, *args], capture_output=True, text=True, env={}, timeout=30, check=False,
                          pass_fds=pass_fds)


def test_sets_rlimits_then_execs():
    done = run("--rlimit=nofile:20:30", "--rlimit=cpu:5:6", "--rlimit=core:0:0", "--", PY, "-c", SHOW)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "(20, 30) (5, 6) (0, 0)"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch to another uid")
def test_drops_to_uid_without_groups_for_good():
    done = run("--uid=65534", "--gid=65534", "--", PY, "-c",
               SHOW + "\ntry:\n    os.setuid(0)\nexcept PermissionError:\n    print('no way back')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "(65534, 65534, 65534) (65534, 65534, 65534) []"
    assert done.stdout.rstrip().endswith("no way back")


@pytest.mark.parametrize("args, message", [
    (["--uid=0", "--gid=0"], "refusing to run as uid or gid 0"),
    (["--uid=65534"], "--uid and --gid go together"),
    (["--rlimit=bogus:1:1"], "unknown resource"),
    (["--rlimit=nofile:9:8"], "bad limits"),
    (["--rlimit=nofile:-1:8"], "not a number"),
    (["--rlimit=nofile:1x:8"], "not a number"),
    (["--rlimit=nofile:1"], "expected NAME:SOFT:HARD"),
    (["--rlimit=nofile:1:2:3"], "bad limits"),
    (["--frobnicate"], "unknown option"),
])
def test_refuses_bad_options_before_running_anything(args, message):
    done = run(*args, "--", PY, "-c", "print('ran')")
    assert done.returncode == 127 and message in done.stderr and done.stdout == ""


def test_needs_a_program():
    assert run("--rlimit=core:0:0").returncode == 127
    assert run("--rlimit=core:0:0", "--").returncode == 127


def test_a_missing_program_is_reported():
    done = run("--", "/nonexistent/program")
    assert done.returncode == 127 and "cannot run /nonexistent/program" in done.stderr


def test_arguments_pass_through_untouched():
    hostile = ["; rm -rf /", "$(id)", "a\nb", "--uid=0", "--"]
    done = run("--", PY, "-c", "import sys; print(sys.argv[1:])", *hostile)
    assert done.stdout.strip() == repr(hostile)


def test_install_vets_and_copies(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    copy = launch.install(LAUNCHER, str(state))
    assert copy == str(state / "stockade-launch")
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o755
    with open(copy, "rb") as a, open(LAUNCHER, "rb") as b:
        assert a.read() == b.read()
    writable = tmp_path / "writable-launch"
    shutil.copyfile(LAUNCHER, writable)
    os.chmod(writable, 0o777)
    with pytest.raises(SandboxUnavailable, match="writable by group or others"):
        launch.install(str(writable), str(state))
    if os.geteuid() == 0:
        os.chmod(writable, 0o755)
        os.chown(writable, 65534, 65534)
        with pytest.raises(SandboxUnavailable, match="owned by uid 65534"):
            launch.install(str(writable), str(state))
    # No launcher at all: None, and the Sandbox uses setpriv and prlimit.
    assert launch.install(str(tmp_path / "missing"), str(state)) is None
    assert launch.install(None, str(state)) is None


def test_install_copies_once_and_many_processes_may_install_at_once(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    code = f"from stockade.sandbox import launch; print(launch.install({LAUNCHER!r}, {str(state)!r}))"
    starts = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(12)]
    outcomes = [(p.wait(timeout=60), *p.communicate()) for p in starts]
    copy = str(state / "stockade-launch")
    assert [rc for rc, _, _ in outcomes] == [0] * 12, outcomes
    assert {out.decode().strip() for _, out, _ in outcomes} == {copy}
    assert os.listdir(state) == ["stockade-launch"]  # no temporary file left
    with open(copy, "rb") as a, open(LAUNCHER, "rb") as b:
        assert a.read() == b.read()
    # The same build again: the copy is kept as it is.
    inode = os.stat(copy).st_ino
    assert launch.install(LAUNCHER, str(state)) == copy and os.stat(copy).st_ino == inode
    # A copy that is not the build's (another size) is replaced.
    with open(copy, "ab") as f:
        f.write(b"\0")
    launch.install(LAUNCHER, str(state))
    assert os.stat(copy).st_size == os.stat(LAUNCHER).st_size and os.stat(copy).st_ino != inode


def test_sandbox_without_launcher_still_applies_every_limit():
    with tempfile.TemporaryDirectory(prefix="stockade-nolaunch-", dir="/run" if os.geteuid() == 0 else None) as state:
        box = Sandbox(slots=2, state_dir=state, launcher=None)
        try:
            assert box.launcher is None
            # (/.stockade-launch is only the root tree's empty mountpoint: nothing is bound there.)
            result = box.run_sync(["/bin/sh", "-c", "ulimit -n; ulimit -c; id -u; wc -c < /.stockade-launch"],
                                  limits=Limits(open_files=23))
            assert result.status is Status.ok, result
            nofile, core, uid, launcher_size = result.stdout.decode().split()
            assert (nofile, core, uid, launcher_size) == ("23", "0", "1000", "0")
            hog = box.run_sync([PY, "-c", "while True: pass"], limits=Limits(cpu_time=0.3))
            assert hog.status is Status.time_limit
        finally:
            box.close()
            if os.geteuid() == 0:
                for mount in ("boxes", "dev"):  # the tmpfs mounts a root Sandbox makes in its state dir
                    subprocess.run(["umount", os.path.join(state, mount)], check=False, capture_output=True)


def test_sandbox_with_launcher_applies_limits_inside(sandbox):
    assert sandbox.launcher is not None and sandbox.launcher.startswith(sandbox.state_dir)
    result = sandbox.run_sync([PY, "-c", SHOW], limits=Limits(open_files=17, cpu_time=1.5))
    assert result.status is Status.ok, result
    # Inside the box: uid 1000 in the box's own user namespace, the limits set.
    identity, limits = result.stdout.decode().splitlines()
    assert identity.startswith("(1000, 1000, 1000) (1000, 1000, 1000)")
    assert limits == "(17, 17) (3, 4) (1, 1)"



# Line 1: the size of /.stockade-launch (0: the root tree's empty mountpoint,
# nothing bound there); line 2: the rlimits.
ROOT_AND_LIMITS = ("import resource as r; a = open('/proc/1/cmdline').read().split(chr(0)); print(a[1:a.index('--')]);"
                   " print([r.getrlimit(getattr(r, 'RLIMIT_' + n)) for n in"
                   " ('NOFILE', 'CPU', 'CORE', 'FSIZE', 'STACK', 'MEMLOCK')])")


def test_cold_box_rlimits_are_set_before_bwrap_unless_too_tight(sandbox):
    # As root: by the step that becomes the slot's uid and execs bwrap, so bwrap
    # and the box inherit them; the box's pid 1 (the launcher, which reports the
    # program's status) sets none of its own.
    assert sandbox.is_root and sandbox.launcher
    roomy = Limits(open_files=40, cpu_time=1.5, file_size=2 * 1024 * 1024, stack=8 * 1024 * 1024)
    result = sandbox.run_sync([PY, "-c", ROOT_AND_LIMITS], limits=roomy)
    assert result.status is Status.ok, result
    launcher_options, limits = result.stdout.decode().splitlines()
    assert re.fullmatch(r"\['--status-fd=\d+', '--cpu-fd=\d+'\]", launcher_options), launcher_options
    assert limits == f"[(40, 40), (3, 4), (1, 1), ({2 << 20}, {2 << 20}), ({8 << 20}, {8 << 20}), (0, 0)]"
    # Tighter than bwrap itself can build under: the launcher sets them on the program.
    tight = sandbox.run_sync([PY, "-c", ROOT_AND_LIMITS], limits=Limits(open_files=12, cpu_time=1.5))
    assert tight.status is Status.ok, tight
    launcher_options, limits = tight.stdout.decode().splitlines()
    assert "'--rlimit=nofile:12:12'" in launcher_options and limits.startswith("[(12, 12), (3, 4), (1, 1), ")
    # And the limit set from outside holds: a CPU hog is stopped (the cgroup
    # watch first; the rlimit is its backstop), descriptors run out at 40.
    hog = sandbox.run_sync([PY, "-c", "while True: pass"], limits=Limits(cpu_time=0.3))
    assert hog.status is Status.time_limit
    fds = sandbox.run_sync([PY, "-c", "import os\nlast = 0\ntry:\n    while True: last = os.open('/dev/null', 0)\n"
                                      "except OSError as e: print(last, e.errno)"], limits=roomy)
    assert fds.stdout == b"39 24\n", fds  # fd 39 is the last one; then EMFILE

def exec_fd(message: bytes, *options: str) -> subprocess.CompletedProcess:
    r, w = os.pipe()
    os.write(w, message)
    os.close(w)
    try:
        return subprocess.run([LAUNCHER, *options, f"--exec-fd={r}"], pass_fds=[r], capture_output=True,
                              text=True, env={}, timeout=30, check=False)
    finally:
        os.close(r)


def test_exec_fd_takes_the_run_from_the_pipe():
    code = "import os; print(os.getcwd(), sorted(os.environ.items())); print(sorted(os.listdir('/proc/self/fd')))"
    done = exec_fd(b"Rnofile:20:30\0Rcpu:5:6\0EPATH=/usr/bin\0EKEY=a=b\0C/tmp\0Apython3\0A-c\0A" + code.encode()
                   + b"\0A$(id); rm -rf /\0")
    assert done.returncode == 0, done.stderr
    cwd_env, fds = done.stdout.splitlines()
    assert cwd_env.startswith("/tmp [('KEY', 'a=b'), ") and "('PATH', '/usr/bin')" in cwd_env
    assert fds == "['0', '1', '2', '3']"  # the run's pipe is closed; 3 is the listdir
    limits = exec_fd(b"Rnofile:20:30\0Rcpu:5:6\0EPATH=/usr/bin\0Apython3\0A-c\0A" + SHOW.encode() + b"\0")
    assert limits.stdout.splitlines()[1].startswith("(20, 30) (5, 6) ")


@pytest.mark.parametrize("message, error", [
    (b"", "no program in the run"),
    (b"Atrue", "not NUL-terminated"),
    (b"Xwhat\0Atrue\0", "bad item"),
    (b"Atrue\0Rcore:0:0\0", "bad item"),  # limits come before the program
    (b"Rbogus:1:1\0Atrue\0", "unknown resource"),
    (b"C/nonexistent\0A/bin/true\0", "/nonexistent"),
    (b"A/nonexistent/program\0", "cannot run /nonexistent/program"),
])
def test_exec_fd_refuses_a_bad_run(message, error):
    done = exec_fd(message)
    assert done.returncode == 127 and error in done.stderr and done.stdout == ""


def test_exec_fd_takes_nothing_else():
    done = subprocess.run([LAUNCHER, "--exec-fd=5", "--", "/bin/true"], capture_output=True, text=True, check=False)
    assert done.returncode == 127 and "no --uid, no --netns-fd, no --cgroup-procs, no program" in done.stderr
    assert exec_fd(b"A/bin/true\0", "--uid=65534", "--gid=65534").returncode == 127
    assert exec_fd(b"A/bin/true\0", "--netns-fd=9").returncode == 127
    assert exec_fd(b"A/bin/true\0", "--cgroup-procs=/dev/null").returncode == 127


@pytest.mark.skipif(os.geteuid() != 0, reason="only root writes the host's cgroup.procs files")
def test_cgroup_procs_moves_the_launcher_before_it_execs(sandbox):
    if sandbox.cgroups.kind == "none":
        pytest.skip(f"no usable cgroup hierarchy here: {sandbox.cgroups.reason}")
    group = sandbox.cgroups.create("launch-test-" + str(os.getpid()), memory=64 << 20, pids=8)
    try:
        files = group.procs_files()
        assert files and all(path.endswith("/cgroup.procs") for path in files)
        code = "print(open('/proc/self/cgroup').read())"
        done = subprocess.run([LAUNCHER, *(f"--cgroup-procs={path}" for path in files), "--uid=65534",
                               "--gid=65534", "--", PY, "-c", code], capture_output=True, text=True, env={},
                              timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        # Every hierarchy of the group (v1: memory, pids, cpuacct, freezer; v2: one line).
        lines = [line for line in done.stdout.splitlines() if line.endswith("/stockade/" + group.name)]
        assert len(lines) == len(files), done.stdout
        # A file that is not there: an error before anything runs, nothing moved.
        missing = subprocess.run([LAUNCHER, "--cgroup-procs=/sys/fs/cgroup/no-such-group/cgroup.procs",
                                  "--uid=65534", "--gid=65534", "--", "/bin/echo", "ran"],
                                 capture_output=True, text=True, env={}, timeout=30, check=False)
        assert missing.returncode == 127 and missing.stdout == "" and "no-such-group" in missing.stderr
    finally:
        group.remove()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make and join a network namespace")
def test_make_netns_and_join_it():
    fd = launch.make_netns(LAUNCHER)
    try:
        ours = os.readlink("/proc/self/ns/net")
        seen = []
        for _ in range(2):
            done = run(f"--netns-fd={fd}", "--uid=65534", "--gid=65534", "--", PY, "-c",
                       "import os, socket; print(os.readlink('/proc/self/ns/net'));"
                       "print(sorted(n for _, n in socket.if_nameindex())); print(os.listdir('/proc/self/fd'))",
                       pass_fds=[fd])
            assert done.returncode == 0, done.stderr
            netns, interfaces, fds = done.stdout.splitlines()
            assert netns != ours and interfaces == "['lo']" and fds == "['0', '1', '2', '3']"
            seen.append(netns)
        assert seen[0] == seen[1]  # the same namespace, joined twice
    finally:
        os.close(fd)


def test_make_netns_needs_no_other_option():
    done = run("--make-netns", "--uid=65534")
    assert done.returncode == 127 and "unknown option" in done.stderr


def launch_report(*argv: str, exec_message: bytes | None = None, cpu_fd: int | None = None):
    """Run the launcher with --status-fd (and --cpu-fd=cpu_fd): (its report,
    split as the supervisor splits it: CPU ns at the start, the wait status
    record, CPU ns at the end; its own exit code)."""
    r, w = os.pipe()
    passed, options = [w], [f"--status-fd={w}"]
    if cpu_fd is not None:
        passed.append(cpu_fd)
        options.append(f"--cpu-fd={cpu_fd}")
    if exec_message is not None:
        er, ew = os.pipe()
        os.write(ew, exec_message)
        os.close(ew)
        passed.append(er)
        options.append(f"--exec-fd={er}")
    try:
        done = subprocess.run([LAUNCHER, *options, *argv], pass_fds=passed, capture_output=True, env={},
                              timeout=30, check=False)
        os.close(w)
        if exec_message is not None:
            os.close(passed[-1])
        report = os.read(r, 64)
    finally:
        os.close(r)
    return _split_report(report), done.returncode


def status_report(*argv: str, exec_message: bytes | None = None) -> tuple[int | None, int]:
    """Run the launcher with --status-fd: (the wait status it reported, its own exit code)."""
    report, code = launch_report(*argv, exec_message=exec_message)
    return (int.from_bytes(report.outcome, sys.byteorder, signed=True) if len(report.outcome) == 4 else None), code


def test_status_fd_reports_the_programs_wait_status():
    # bwrap folds a signal into an exit code (128 + N); the launcher's report does not.
    status, code = status_report("--", "/usr/bin/python3", "-c", "import sys; sys.exit(152)")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 152 and code == 152
    status, code = status_report("--", "/bin/sh", "-c", "kill -XCPU $$")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU and code == 128 + signal.SIGXCPU
    status, code = status_report("--", "/nonexistent/program")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 127 and code == 127
    # Its own failure before the program runs is reported as -1, which no wait status is.
    status, code = status_report("--rlimit=nofile:99999999:99999999", "--", "/bin/true")
    assert status == -1 and code == 127
    # The warm-box form: the run from --exec-fd, the report on --status-fd.
    status, code = status_report(exec_message=b"EPATH=/usr/bin:/bin\0Ash\0A-c\0Aexit 3\0")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3 and code == 3


def test_report_has_the_programs_cpu_and_wall_time_not_what_ran_before():
    # Without --cpu-fd: the program's rusage (and its reaped orphans'), none of ours.
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"
    report, code = launch_report("--", "/usr/bin/python3", "-c", burn)
    assert code == 0 and len(report.outcome) == 4 and report.started_cpu == 0
    assert 0.2e9 <= report.ended_cpu < 5e9, report  # (the program's own clock says it burnt 0.2 s)
    # Its wall time, on the host's monotonic clock, from its start to its end.
    before = time.monotonic_ns()
    report, code = launch_report("--", "/bin/sleep", "0.3")
    after = time.monotonic_ns()
    assert code == 0 and before < report.started_at and report.ended_at < after, (before, report, after)
    assert 0.3e9 <= report.ended_at - report.started_at < after - before, report
    # With --cpu-fd: the counter read just before the program starts and once it
    # has ended, in both of the kernel's forms (cgroup v1 in ns, v2 in us).
    for text, ns in ((b"123456789\n", 123456789), (b"usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n", 1234000)):
        with tempfile.TemporaryFile() as counter:
            counter.write(text)
            counter.flush()
            report, code = launch_report("--", "/bin/true", cpu_fd=counter.fileno())
        assert code == 0 and report.started_cpu == report.ended_cpu == ns, report
        assert os.WIFEXITED(int.from_bytes(report.outcome, sys.byteorder))
    # A counter it cannot read or parse: unknown (the supervisor then reads the cgroup).
    for text in (b"", b"12x\n", b"usage_usec\n", b"99999999999999999999999\n"):
        with tempfile.TemporaryFile() as counter:
            counter.write(text)
            counter.flush()
            report, code = launch_report("--", "/bin/true", cpu_fd=counter.fileno())
        assert code == 0 and report.started_cpu is None and report.ended_cpu is None, (text, report)
        assert len(report.outcome) == 4 and report.started_at < report.ended_at, (text, report)


def test_cpu_fd_is_not_passed_to_the_program():
    r, w = os.pipe()
    with tempfile.TemporaryFile() as counter:
        high = fcntl.fcntl(counter.fileno(), fcntl.F_DUPFD, 60)
        try:
            done = subprocess.run([LAUNCHER, f"--status-fd={w}", f"--cpu-fd={high}", "--", "/bin/ls", "/proc/self/fd"],
                                  pass_fds=[w, high], capture_output=True, text=True, env={}, timeout=30, check=False)
        finally:
            for fd in (high, r, w):
                os.close(fd)
    assert done.returncode == 0, done.stderr
    assert str(high) not in done.stdout.split(), done.stdout


def test_as_pid_1_it_waits_for_the_supervisors_kill_after_its_report():
    # In a box the report comes first, and the launcher's exit, which tears the
    # box's namespaces down, only once the supervisor kills it. (Not as pid 1,
    # the tests above: it exits with the program's code.)
    r, w = os.pipe()
    outer = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", LAUNCHER, f"--status-fd={w}", "--",
                              "/bin/sh", "-c", "exit 7"], pass_fds=[w], stdout=subprocess.DEVNULL, env={})
    os.close(w)
    try:
        report = b""
        deadline = time.monotonic() + 30
        while len(report) < 44 and time.monotonic() < deadline:
            report += os.read(r, 64)
        report = _split_report(report)
        assert os.WIFEXITED(int.from_bytes(report.outcome, sys.byteorder)), report
        assert os.WEXITSTATUS(int.from_bytes(report.outcome, sys.byteorder)) == 7 and report.peak_rss
        time.sleep(0.2)
        assert outer.poll() is None  # its pid 1 is still there
        with open(f"/proc/{outer.pid}/task/{outer.pid}/children") as f:
            (launcher,) = map(int, f.read().split())
        os.kill(launcher, signal.SIGKILL)
        outer.wait(timeout=30)  # and then it is gone (TimeoutExpired otherwise)
    finally:
        outer.kill()
        outer.wait()
        os.close(r)


def test_status_fd_is_not_passed_to_the_program():
    r, w = os.pipe()
    high = fcntl.fcntl(w, fcntl.F_DUPFD, 50)  # (a number ls's own descriptors never take)
    os.close(w)
    try:
        done = subprocess.run([LAUNCHER, f"--status-fd={high}", "--", "/bin/ls", "/proc/self/fd"], pass_fds=[high],
                              capture_output=True, text=True, env={}, timeout=30, check=False)
    finally:
        os.close(high)
        os.close(r)
    assert done.returncode == 0, done.stderr
    assert str(high) not in done.stdout.split(), done.stdout


@pytest.mark.parametrize("options", [["--status-fd=2"], ["--status-fd=5", "--exec-fd=5"],
                                     ["--status-fd=5", "--uid=60000", "--gid=60000"],
                                     ["--cpu-fd=5"], ["--status-fd=5", "--cpu-fd=5"], ["--status-fd=5", "--cpu-fd=1"]])
def test_status_fd_misuse_is_refused(options):
    done = subprocess.run([LAUNCHER, *options, "--", "/bin/true"], capture_output=True, text=True, env={},
                          timeout=30, check=False)
    assert done.returncode == 127 and re.search(r"--(status|cpu)-fd", done.stderr), done
