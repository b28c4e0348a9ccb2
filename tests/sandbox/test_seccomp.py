"""The seccomp policy as data, and the compiled filter enforced by the real kernel.

Enforcement runs without bubblewrap: a child /usr/bin/python3 sets no_new_privs, loads
the exported BPF with seccomp(2) and probes. Every probe is harmless even if the filter
let it through: invalid arguments, NULL pointers, no-ops, or a throwaway child.
"""

import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.sandbox import seccomp

pyseccomp = pytest.importorskip("pyseccomp")

PYTHON = "/usr/bin/python3"
U32, U64 = (1 << 32) - 1, (1 << 64) - 1
EPERM, ENOSYS = errno.EPERM, errno.ENOSYS
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
TIOCSTI, TIOCGWINSZ, TIOCLINUX = 0x5412, 0x5413, 0x541C
ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC = 0x0040000, 0x0400000
CLONE_NEW = {
    "CLONE_NEWTIME": 0x80, "CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x2000000,
    "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000, "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000,
}  # fmt: skip

# What the brief and DESIGN.md say is denied outright (EPERM), where the arch has it.
DENIED = """
    keyctl add_key request_key bpf perf_event_open userfaultfd
    io_uring_setup io_uring_enter io_uring_register kexec_load kexec_file_load
    init_module finit_module delete_module create_module
    mount umount umount2 fsopen fsconfig fsmount fspick move_mount open_tree mount_setattr
    pivot_root chroot setns unshare open_by_handle_at name_to_handle_at
    reboot swapon swapoff acct quotactl quotactl_fd syslog settimeofday clock_settime stime
    mbind set_mempolicy migrate_pages move_pages get_mempolicy ioperm iopl lookup_dcookie
    nfsservctl vm86 vm86old uselib ustat sysfs _sysctl fanotify_init
    ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd process_madvise
    adjtimex clock_adjtime
""".split()

# Runtimes need these: they must never be denied, whatever their arguments.
NEEDED = """
    read write openat close mmap mprotect munmap madvise brk execve exit_group wait4
    prctl arch_prctl sched_yield sched_getaffinity futex rseq statx epoll_create1
    epoll_ctl epoll_wait eventfd2 memfd_create pidfd_open getrandom vfork
    landlock_create_ruleset seccomp
""".split()

# (syscall, args) that fail or change nothing even without a filter, for every call
# the policy denies except reboot, acct and vhangup, which have no harmless form.
SAFE_PROBES = {
    "keyctl": (0xDEAD,),  # unknown operation
    "add_key": (0, 0, 0, 0, 0),  # NULL type
    "request_key": (0, 0, 0, 0),
    "bpf": (0xDEAD, 0, 0),  # unknown command
    "perf_event_open": (0, 0, -1, -1, 0),  # NULL attributes
    "userfaultfd": (0xDEAD0000,),  # unknown flags
    "io_uring_setup": (0, 0),  # no entries, NULL params
    "io_uring_enter": (-1, 0, 0, 0, 0, 0),  # bad fd
    "io_uring_register": (-1, 0, 0, 0),
    "kexec_load": (0, 0, 0, 0xDEAD0000),  # unknown flags
    "kexec_file_load": (-1, -1, 0, 0, 0xDEAD0000),
    "init_module": (0, 0, 0),  # empty image
    "finit_module": (-1, 0, 0),  # bad fd
    "delete_module": (0, 0),  # NULL name
    "create_module": (0, 0),  # gone from the kernel: ENOSYS
    "mount": (0, 0, 0, 0, 0),  # NULL target
    "umount2": (0, 0),
    "fsopen": (0, 0xDEAD0000),
    "fsconfig": (-1, 0, 0, 0, 0),
    "fsmount": (-1, 0, 0),
    "fspick": (-1, 0, 0xDEAD0000),
    "move_mount": (-1, 0, -1, 0, 0xDEAD0000),
    "open_tree": (-1, 0, 0xDEAD0000),
    "mount_setattr": (-1, 0, 0, 0, 0),
    "pivot_root": (0, 0),
    "chroot": (0,),
    "unshare": (0,),  # no flags: a no-op
    "setns": (-1, 0),
    "open_by_handle_at": (-1, 0, 0),
    "name_to_handle_at": (-1, 0, 0, 0, 0),
    "swapon": (0, 0),
    "swapoff": (0,),
    "quotactl": (0, 0, 0, 0),
    "quotactl_fd": (-1, 0, 0, 0),
    "syslog": (0xDEAD, 0, 0),
    "sethostname": (0, 4096),  # longer than any host name
    "setdomainname": (0, 4096),
    "settimeofday": (0, 0),  # NULL time and zone: sets nothing
    "clock_settime": (0xDEAD, 0),  # no such clock
    "adjtimex": (0,),
    "clock_adjtime": (0xDEAD, 0),
    "mbind": (0, 0, 0, 0, 0, 0),  # empty range
    "set_mempolicy": (0xDEAD, 0, 0),
    "set_mempolicy_home_node": (0, 0, 0, 0),
    "get_mempolicy": (0, 0, 0, 0, 0),
    "migrate_pages": (0x7FFFFFFF, 0, 0, 0),  # no such pid
    "move_pages": (0x7FFFFFFF, 0, 0, 0, 0, 0),
    "ioperm": (0, 0, 0),  # zero ports
    "iopl": (4,),  # no such level
    "vm86": (0xDEAD, 0),
    "vm86old": (0,),
    "uselib": (0,),
    "ustat": (0, 0),
    "sysfs": (0xDEAD, 0, 0),
    "_sysctl": (0,),
    "nfsservctl": (0, 0, 0),
    "lookup_dcookie": (0, 0, 0),
    "fanotify_init": (0xDEAD0000, 0),
    "ptrace": (0xDEAD, 0x7FFFFFFF, 0, 0),  # unknown request, no such pid
    "process_vm_readv": (0x7FFFFFFF, 0, 0, 0, 0, 0),
    "process_vm_writev": (0x7FFFFFFF, 0, 0, 0, 0, 0),
    "kcmp": (0x7FFFFFFF, 0x7FFFFFFF, 0xDEAD, 0, 0),
    "pidfd_getfd": (-1, 0, 0),
    "process_madvise": (-1, 0, 0, 0, 0),
    "clone3": (0, 0),  # NULL args: EINVAL
}

# Loads the filter (argv[1]) into this very process; SYS (argv[2]) maps syscall names
# to this arch's numbers. Probe bodies fill `out` with results, printed as JSON.
PRELUDE = r"""
import ctypes, json, os, resource, socket, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed probe leaves no core
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS = json.loads(sys.argv[2])

def sys_(name, *args):
    "A raw syscall: its result, or -errno."
    r = libc.syscall(ctypes.c_long(SYS[name]), *(ctypes.c_ulong(a & (2**64 - 1)) for a in args))
    return -ctypes.get_errno() if r == -1 else r

def errno_of(fn, *args):
    "0 if fn(*args) works, else the errno of its OSError."
    try:
        fn(*args)
        return 0
    except OSError as exc:
        return exc.errno

class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

bpf = open(sys.argv[1], "rb").read()
buf = ctypes.create_string_buffer(bpf, len(bpf))
prog = SockFprog(len(bpf) // 8, ctypes.addressof(buf))
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.exit("prctl: " + os.strerror(ctypes.get_errno()))
if sys_("seccomp", 1, 0, ctypes.addressof(prog)) != 0:  # SECCOMP_SET_MODE_FILTER
    sys.exit("seccomp: filter not loaded")
out = {}
"""

SYSCALL_NAMES = {"seccomp", "clone", "exit_group", "socket", "socketpair", "personality",
                 "ioctl", "ptrace", "keyctl", "unshare", *SAFE_PROBES}  # fmt: skip


def syscall_numbers() -> dict[str, int]:
    numbers = {n: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, n) for n in SYSCALL_NAMES}
    return {n: nr for n, nr in numbers.items() if nr >= 0}


def confined(tmp_path, body: str, network: bool = False, timeout: float = 60):
    """Run PRELUDE + body in a child python3 under compile_filter(network)."""
    if not os.access(PYTHON, os.X_OK):
        pytest.skip(f"{PYTHON} is needed to load the filter in a child")
    bpf = tmp_path / f"filter-{network}.bpf"
    bpf.write_bytes(seccomp.compile_filter(network))
    script = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    return subprocess.run(
        [PYTHON, "-c", script, str(bpf), json.dumps(syscall_numbers())],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
    )  # fmt: skip


def probe(tmp_path, body: str, network: bool = False) -> dict:
    proc = confined(tmp_path, body, network)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


# --- the policy as data -------------------------------------------------------


def test_named_syscalls_are_denied_with_eperm():
    p = seccomp.policy()
    denied = p.denied()
    for name in DENIED:
        if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) < 0:
            assert name not in denied and name in p.unknown, name
            continue
        assert denied.get(name) == EPERM, name
    assert denied["clone3"] == ENOSYS


def test_runtime_needs_are_never_denied():
    rules = {r.syscall for r in seccomp.policy(network=True).rules}
    assert not rules & set(NEEDED)


def test_policy_is_for_the_native_arch_only():
    p = seccomp.policy()
    assert p.arch == os.uname().machine
    assert all(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, r.syscall) >= 0 for r in p.rules)


def test_network_changes_only_socket_families():
    off, on = seccomp.policy(network=False), seccomp.policy(network=True)
    assert (off.network, on.network) == (False, True)
    assert off.socket_families == {AF_UNIX}
    assert on.socket_families == {AF_UNIX, AF_INET, AF_INET6}
    assert [r for r in off.rules if r.syscall != "socket"] == [
        r for r in on.rules if r.syscall != "socket"
    ]
    assert off.personalities == on.personalities and off.unknown == on.unknown


@pytest.mark.parametrize("network", [False, True])
def test_socket_model_allows_exactly_the_families(network):
    p = seccomp.policy(network)
    for family in [*range(64), 1 << 31, 1 << 32 | AF_UNIX, 1 << 32 | AF_NETLINK, U64]:
        denied = family not in p.socket_families
        assert (p.errno_for("socket", family, 2, 0) == EPERM) is denied, hex(family)
        assert (p.errno_for("socketpair", family, 1, 0) == EPERM) is (family != AF_UNIX)


@given(st.integers(0, U64))
def test_personality_model_allows_exactly_dockers(value):
    # The kernel reads an unsigned int: the filter too must judge the low 32 bits only.
    allowed = (value & U32) in seccomp.PERSONALITIES
    assert seccomp.policy().errno_for("personality", value) == (None if allowed else EPERM)


def test_personality_model_edge_values():
    p = seccomp.policy()
    values = [1 << b for b in range(32)] + [U32 ^ 1 << b for b in range(32)]
    values += [a | 1 << b for a in seccomp.PERSONALITIES for b in range(64)]
    for v in values:
        allowed = (v & U32) in seccomp.PERSONALITIES
        assert (p.errno_for("personality", v) is None) is allowed, hex(v)


def test_clone_model_denies_every_namespace_flag_alone_and_mixed():
    p = seccomp.policy()
    fork_flags = 0x01200011  # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
    thread_flags = 0x003D0F00  # what glibc's pthread_create passes
    assert p.errno_for("clone", fork_flags) is None
    assert p.errno_for("clone", thread_flags) is None
    for name, flag in CLONE_NEW.items():
        assert p.errno_for("clone", flag | fork_flags) == EPERM, name
        assert p.errno_for("clone", flag | 1 << 40) == EPERM, name


def test_ioctl_model_matches_the_command_on_32_bits():
    p = seccomp.policy()
    for cmd in (TIOCSTI, TIOCLINUX, 1 << 32 | TIOCSTI, 0xFFFFFFFF00000000 | TIOCLINUX):
        assert p.errno_for("ioctl", 0, cmd) == EPERM, hex(cmd)
    assert p.errno_for("ioctl", 0, TIOCGWINSZ) is None


def test_compile_filter_is_cached_per_policy():
    off = seccomp.compile_filter()
    assert off and len(off) % 8 == 0
    assert seccomp.compile_filter() is off
    assert seccomp.compile_filter(network=False) is off
    on = seccomp.compile_filter(network=True)
    assert on != off and seccomp.compile_filter(network=True) is on
    assert len(off) // 8 < 4096  # BPF_MAXINSNS


def run_bpf(program: bytes, nr: int, arch: int, args=(0,) * 6) -> tuple[int, int]:
    """Classic BPF as the kernel runs a seccomp filter, for the opcodes
    libseccomp emits: (the action returned, instructions executed)."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    insns = list(struct.iter_unpack("<HBBI", program))
    a = pc = steps = 0
    while True:
        code, jt, jf, k = insns[pc]
        steps += 1
        pc += 1
        if code == 0x20:  # ld [k]
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):  # jeq, jgt, jge, jset #k
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:  # ret #k
            return k, steps
        else:
            raise AssertionError(f"opcode {code:#x} at {pc - 1} not modelled")


@pytest.mark.parametrize("network", [False, True])
def test_filter_is_a_tree_that_allowed_calls_cross_quickly(network):
    """Every system call a program makes runs the filter: compiled as a flat
    list, each allowed one (the common case) walked all of it, ~37 ns more per
    call than bare here; as a tree (CTL_OPTIMIZE 2), a few comparisons."""
    p = seccomp.policy(network)
    program = seccomp.compile_filter(network)
    arch = pyseccomp.system_arch()  # (libseccomp's token is the AUDIT_ARCH value)
    number = {r.syscall: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, r.syscall) for r in p.rules}
    by_argument = {number[r.syscall] for r in p.rules if r.when}  # (clone, ioctl, personality...)
    denied = {number[r.syscall]: r.errno for r in p.rules if not r.when}
    walked = {}
    for nr in range(512):
        action, steps = run_bpf(program, nr, arch)
        if nr in denied:  # the tree still says what the policy says
            assert action == 0x00050000 | denied[nr], (nr, hex(action))  # SECCOMP_RET_ERRNO
        elif nr not in by_argument:
            assert action == 0x7FFF0000, (nr, hex(action))  # SECCOMP_RET_ALLOW
            walked[nr] = steps
    # (read, write, mmap, futex, getppid: what programs call most.)
    assert {0, 1, 9, 202, 110} <= walked.keys()
    assert max(walked.values()) <= 20, max(walked.values())


# --- the filter in the real kernel --------------------------------------------


def test_denied_calls_fail_with_eperm_in_the_kernel(tmp_path):
    probes = {n: a for n, a in SAFE_PROBES.items() if n in syscall_numbers()}
    out = probe(tmp_path, f"for n, a in {probes!r}.items():\n    out[n] = sys_(n, *a)\n")
    expected = {n: -seccomp.policy().errno_for(n, *a) for n, a in probes.items()}
    assert out == expected
    assert expected["clone3"] == -ENOSYS and expected["keyctl"] == -EPERM


def test_namespaces_are_denied_and_fork_still_works(tmp_path):
    body = """
        # CLONE_NEWUSER through libc; harmless here had it worked: a throwaway child
        out["unshare"] = ctypes.get_errno() if libc.unshare(0x10000000) == -1 else 0
        for name, flag in FLAGS.items():
            r = sys_("clone", flag | 17, 0, 0, 0, 0)  # | SIGCHLD
            if r == 0:
                sys_("exit_group", 0)  # the filter failed: leave at once
            if r > 0:
                os.waitpid(r, 0x40000000)  # __WALL: 0x80 | SIGCHLD is no valid exit signal
            out[name] = r if r < 0 else "created"
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    """.replace("FLAGS", repr(CLONE_NEW))
    out = probe(tmp_path, body)
    assert out.pop("unshare") == EPERM
    assert out.pop("fork") == 7
    assert out == {name: -EPERM for name in CLONE_NEW}


@pytest.mark.parametrize("network", [False, True])
def test_socket_families(tmp_path, network):
    body = """
        for fam in FAMILIES:
            r = sys_("socket", fam, 2, 0)  # SOCK_DGRAM
            if r >= 0:
                os.close(r)
            out[str(fam)] = min(r, 0)
        out["pair_unix"] = errno_of(socket.socketpair, socket.AF_UNIX)
        out["pair_inet"] = errno_of(socket.socketpair, socket.AF_INET)
        out["tcp"] = errno_of(socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    """
    # Built-in families only: an unknown one could make the kernel load a module.
    families = [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, 1 << 32 | AF_NETLINK, 1 << 32 | AF_UNIX]
    out = probe(tmp_path, body.replace("FAMILIES", repr(families)), network)
    p = seccomp.policy(network)
    assert {int(f): r for f, r in out.items() if f.isdigit()} == {
        f: -EPERM if p.errno_for("socket", f) else 0 for f in families
    }
    assert out[str(AF_NETLINK)] == -EPERM and out[str(AF_UNIX)] == 0
    assert out[str(AF_INET)] == (0 if network else -EPERM)
    assert out["pair_unix"] == 0 and out["pair_inet"] == EPERM
    assert out["tcp"] == (0 if network else EPERM)


def test_ptrace_keyctl_and_clone3(tmp_path):
    body = """
        libc.ptrace.restype = ctypes.c_long
        out["ptrace"] = ctypes.get_errno() if libc.ptrace(0, 0, None, None) == -1 else 0
        out["keyctl"] = sys_("keyctl", 0xDEAD)
        out["clone3"] = sys_("clone3", 0, 0)
    """
    assert probe(tmp_path, body) == {"ptrace": EPERM, "keyctl": -EPERM, "clone3": -ENOSYS}


def test_personality_in_the_kernel_agrees_with_the_model(tmp_path):
    values = sorted(seccomp.PERSONALITIES) + [ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, 0x40008]
    values += [1 << b for b in range(32)] + [U32 ^ 1 << b for b in range(32)]
    values += [1 << 32 | v for v in (0, 8, ADDR_NO_RANDOMIZE)]
    body = f"""
        for v in {values!r}:
            r = sys_("personality", v)
            out[str(v)] = min(r, 0)
            if r >= 0:
                sys_("personality", 0)  # back to PER_LINUX for the next probe
    """
    out = probe(tmp_path, body)
    p = seccomp.policy()
    assert out == {str(v): -(p.errno_for("personality", v) or 0) for v in values}
    assert out[str(ADDR_NO_RANDOMIZE)] == -EPERM and out[str(U32)] == 0


def test_tiocsti_and_tioclinux_denied_on_a_pty(tmp_path):
    body = """
        master, slave = os.openpty()  # our own pty, never the test's terminal
        ch = ctypes.c_char(b"x")
        winsize = ctypes.create_string_buffer(8)
        for name, cmd in CMDS.items():
            out[name] = sys_("ioctl", slave, cmd, ctypes.addressof(ch))
        out["TIOCGWINSZ"] = sys_("ioctl", slave, 0x5413, ctypes.addressof(winsize))
    """
    cmds = {"TIOCSTI": TIOCSTI, "TIOCLINUX": TIOCLINUX, "TIOCSTI_high": 1 << 32 | TIOCSTI}
    out = probe(tmp_path, body.replace("CMDS", repr(cmds)))
    assert out == {"TIOCSTI": -EPERM, "TIOCLINUX": -EPERM, "TIOCSTI_high": -EPERM, "TIOCGWINSZ": 0}


def test_python_workload_runs_under_the_filter(tmp_path):
    body = """
        import asyncio, json as j, subprocess, threading
        box = []
        t = threading.Thread(target=lambda: box.append(j.loads('{"a": [1, 2]}')))
        t.start(); t.join()
        out["thread"] = box == [{"a": [1, 2]}]
        out["true"] = subprocess.run(["/bin/true"]).returncode
        pid = os.posix_spawn("/bin/true", ["true"], {})
        out["spawn"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        async def main():
            await asyncio.sleep(0)
            return 42
        out["asyncio"] = asyncio.run(main())
        out["personality_query"] = sys_("personality", 0xFFFFFFFF)
    """
    assert probe(tmp_path, body) == {
        "thread": True, "true": 0, "spawn": 0, "asyncio": 42, "personality_query": 0,
    }  # fmt: skip


HELLO_C = '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n'
RUNTIMES = {  # argv, and what it prints (stdout or stderr) when it really ran
    "gcc": (["/bin/sh", "-c", "gcc -O2 hello.c -o hello && ./hello"], "hi"),
    "java": (["java", "-version"], "version"),
    "node": (["node", "-e", "require('child_process').execSync('true'); console.log('ok')"], "ok"),
    "go": (["go", "version"], "go version"),
    "ruby": (["ruby", "-e", "puts Thread.new { 'ok' }.value"], "ok"),
    "php": (["php", "-r", "echo 'ok';"], "ok"),
    "perl": (["perl", "-e", "print 'ok'"], "ok"),
    "lua": (["lua", "-e", "print('ok')"], "ok"),
}


@pytest.mark.slow
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_runtimes_start_under_the_filter(tmp_path, runtime):
    argv, expected = RUNTIMES[runtime]
    path = shutil.which(runtime if argv[0] == "/bin/sh" else argv[0])
    if path is None:
        pytest.skip(f"{runtime} is not installed")
    if argv[0] != "/bin/sh":
        argv = [path, *argv[1:]]
    (tmp_path / "hello.c").write_text(HELLO_C)
    proc = confined(tmp_path, f"os.execv({argv[0]!r}, {argv!r})")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout + proc.stderr


# --- other ABIs ---------------------------------------------------------------

OTHER_ABI_C = r"""
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    long r;
    if (argc > 1 && strcmp(argv[1], "i386") == 0)  /* getpid through int 0x80 */
        __asm__ volatile ("int $0x80" : "=a"(r) : "a"(20L)
                          : "r8", "r9", "r10", "r11", "memory");
    else  /* getpid with __X32_SYSCALL_BIT */
        __asm__ volatile ("syscall" : "=a"(r) : "a"(0x40000000L | 39)
                          : "rcx", "r11", "memory");
    printf("%ld\n", r);
    return 0;
}
"""


@pytest.fixture(scope="module")
def other_abi_binary(tmp_path_factory):
    if os.uname().machine != "x86_64":
        pytest.skip("i386 and x32 probes are x86_64 only (arm32 would need a cross compiler)")
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build the i386/x32 probe")
    d = tmp_path_factory.mktemp("abi")
    (d / "abi.c").write_text(OTHER_ABI_C)
    build = subprocess.run(
        [gcc, "-static", "-O0", "-o", str(d / "abi"), str(d / "abi.c")], capture_output=True
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build a static probe: {build.stderr.decode()[-300:]}")
    return str(d / "abi")


@pytest.mark.parametrize("abi", ["i386", "x32"])
def test_other_abis_kill_the_process(tmp_path, other_abi_binary, abi):
    free = subprocess.run([other_abi_binary, abi], capture_output=True, text=True, timeout=10)
    if abi == "i386" and (free.returncode != 0 or int(free.stdout) <= 0):
        pytest.skip("this kernel has no i386 emulation: int 0x80 never reaches seccomp")
    proc = confined(tmp_path, f"os.execv({other_abi_binary!r}, ['abi', {abi!r}])")
    assert proc.returncode == -signal.SIGSYS, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
