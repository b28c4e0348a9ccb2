"""The seccomp filter of a box: Docker's default denials plus what a judge needs.

policy() is the rule set as data (for tests and `stockade doctor`); compile_filter()
turns it into the BPF program bwrap loads from --seccomp FD. Default action: allow."""

from __future__ import annotations

import errno
import functools
import operator
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from stockade.errors import SandboxError, SandboxUnavailable

_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1

# Denied outright with EPERM. Names this arch (or this libseccomp) lacks are skipped.
_DENY = (
    # kernel keyrings: not namespaced, a long line of use-after-free exploits
    "keyctl", "add_key", "request_key",
    # eBPF, perf events, userfaultfd: verifier bugs, side channels, race widening
    "bpf", "perf_event_open", "userfaultfd",
    # io_uring: a large attack surface whose operations seccomp never sees
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # new kernels and kernel modules: run code in ring 0
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module",
    # mounts and root changes (old and new mount API): step out of bwrap's file view
    "mount", "umount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "open_tree_attr", "mount_setattr", "pivot_root", "chroot",
    # namespaces: a fresh user namespace hands root-only kernel code to the program
    "unshare", "setns",
    # file handles: open_by_handle_at walks out of a bind mount (the "shocker" escape)
    "open_by_handle_at", "name_to_handle_at",
    # host administration: power, swap, accounting, quotas, kernel log, host names, ttys
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog",
    "sethostname", "setdomainname", "vhangup",
    # clocks are host-wide: setting or slewing them breaks every other run's timing
    "settimeofday", "clock_settime", "stime", "adjtimex", "clock_adjtime",
    # NUMA placement: pin or move memory across nodes, starving other tenants
    "mbind", "set_mempolicy", "set_mempolicy_home_node", "get_mempolicy",
    "migrate_pages", "move_pages",
    # raw port I/O and obsolete interfaces nobody's program needs (old bug nests)
    "ioperm", "iopl", "vm86", "vm86old", "uselib", "ustat", "sysfs", "_sysctl",
    "nfsservctl", "lookup_dcookie", "fanotify_init",
    # host-wide writeback: sync flushes every filesystem's dirty data, syncfs that of
    # the one holding a descriptor (the host's own, through a read-only /usr): a loop
    # of them loads the host's disks, and a process inside one ignores SIGKILL until
    # it returns. (glibc's sync() ignores the error; fsync of one's own files stays.)
    "sync", "syncfs",
    # other processes: inspect or steer a process, its memory or its file descriptors
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "process_madvise",
)  # fmt: skip

# clone flags that create namespaces (CLONE_NEWTIME shares bit 0x80 with clone's exit
# signal byte; no valid signal sets it, so denying it costs nothing).
_CLONE_NEW = {
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
TIOCSTI, TIOCLINUX = 0x5412, 0x541C

# Docker's personalities: PER_LINUX (0), PER_LINUX32 (8), UNAME26 (0x20000), both,
# and 0xffffffff, which only queries. Everything else (ADDR_NO_RANDOMIZE,
# READ_IMPLIES_EXEC, ...) weakens exploit mitigations.
_PERSONA_FLAGS = 0x0008 | 0x20000
PERSONALITIES = frozenset({0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF})

_COMPARE = {
    "ne": operator.ne, "lt": operator.lt, "le": operator.le,
    "eq": operator.eq, "ge": operator.ge, "gt": operator.gt,
}  # fmt: skip


@dataclass(frozen=True)
class Cmp:
    """One comparison on a syscall argument, with libseccomp's meaning: unsigned
    64-bit, and for masked_eq `(arg & mask) == value`."""

    arg: int
    op: str
    value: int
    mask: int = _U64  # masked_eq only

    def holds(self, args: Sequence[int]) -> bool:
        x = args[self.arg] & _U64 if self.arg < len(args) else 0
        if self.op == "masked_eq":
            return x & self.mask == self.value
        return _COMPARE[self.op](x, self.value)


@dataclass(frozen=True)
class Rule:
    """`syscall` fails with `errno` when every comparison holds (none: always).
    Rules on the same syscall are alternatives: any one matching denies."""

    syscall: str
    errno: int
    when: tuple[Cmp, ...] = ()


@dataclass(frozen=True)
class Policy:
    """Everything the filter of one policy does, as data.

    >>> p = policy(network=False)
    >>> p.errno_for("socket", AF_INET) == errno.EPERM, p.errno_for("socket", AF_UNIX)
    (True, None)
    """

    arch: str  # the native ABI; every other ABI (i386, x32, arm32) kills the process
    network: bool
    socket_families: frozenset[int]  # the only families socket() may create
    personalities: frozenset[int]  # the only arguments personality() accepts
    rules: tuple[Rule, ...]
    unknown: tuple[str, ...]  # denied names this arch or libseccomp has no number for

    def denied(self) -> dict[str, int]:
        """Syscalls denied whatever their arguments, with their errno."""
        return {r.syscall: r.errno for r in self.rules if not r.when}

    def errno_for(self, syscall: str, *args: int) -> int | None:
        """What the filter answers to this call (a model of it): errno, or None if allowed."""
        for rule in self.rules:
            if rule.syscall == syscall and all(c.holds(args) for c in rule.when):
                return rule.errno
        return None


def _outside(arg: int, allowed: frozenset[int]) -> list[Cmp]:
    """Comparisons, one per rule, matching exactly the 64-bit values not in `allowed`:
    everything above the largest, and each gap below it cut into aligned blocks."""
    cmps = [Cmp(arg, "gt", max(allowed))]
    low = 0
    for high in sorted(allowed):
        while low < high:
            size = low & -low or 1 << 63  # the largest block aligned at `low`...
            while size > high - low:  # ...that still fits in the gap
                size >>= 1
            cmps.append(
                Cmp(arg, "eq", low) if size == 1 else Cmp(arg, "masked_eq", low, _U64 & -size)
            )
            low += size
        low = high + 1
    return cmps


def _personas_outside(arg: int) -> list[Cmp]:
    """Comparisons, one per rule, matching every persona but PERSONALITIES, on the low
    32 bits only (the kernel takes an unsigned int). A value is denied iff it sets a bit
    outside _PERSONA_FLAGS and is not all ones. Ring the 30 other bits: such a value
    sets some ring bit whose successor is clear, or sets all of them but a flag bit."""
    ring = [1 << b for b in range(32) if not _PERSONA_FLAGS & 1 << b]
    pairs = list(zip(ring, ring[1:] + ring[:1], strict=True))
    pairs += [(ring[0], 1 << b) for b in range(32) if _PERSONA_FLAGS & 1 << b]
    return [Cmp(arg, "masked_eq", bit, bit | clear) for bit, clear in pairs]


def _libseccomp():
    try:
        import pyseccomp
    except (ImportError, RuntimeError) as exc:  # RuntimeError: no libseccomp.so found
        raise SandboxUnavailable(f"libseccomp is not usable: {exc}") from exc
    return pyseccomp


def _native_arch(sc) -> str:
    names = {sc.Arch.X86_64: "x86_64", sc.Arch.AARCH64: "aarch64"}
    token = sc.system_arch()
    if token not in names:  # clone's flags sit elsewhere on s390; the rest is untested
        raise SandboxUnavailable(f"no seccomp policy for this architecture ({token:#x})")
    return names[token]


def policy(network: bool = False) -> Policy:
    """The rules of a box, with or without the network (AF_INET, AF_INET6)."""
    return _policy(bool(network))  # one cache entry per policy, however it is called


@functools.cache
def _policy(network: bool) -> Policy:
    sc = _libseccomp()
    arch = _native_arch(sc)
    eperm, families = errno.EPERM, frozenset({AF_UNIX})
    if network:
        families |= {AF_INET, AF_INET6}
    rules = [Rule(name, eperm) for name in _DENY]
    rules += [
        # clone3 hides its flags behind a pointer; ENOSYS makes libc fall back to clone
        Rule("clone3", errno.ENOSYS),
        # namespaces through clone, one rule per flag (unshare and setns are denied above)
        *(Rule("clone", eperm, (Cmp(0, "masked_eq", f, f),)) for f in _CLONE_NEW.values()),
        # personality: disabling ASLR or READ_IMPLIES_EXEC helps exploits
        *(Rule("personality", eperm, (c,)) for c in _personas_outside(0)),
        # TIOCSTI types into the terminal of whoever reads it; TIOCLINUX does the same
        # through the console. Match 32 bits: the kernel ignores the rest (CVE-2019-10063).
        Rule("ioctl", eperm, (Cmp(1, "masked_eq", TIOCSTI, _U32),)),
        Rule("ioctl", eperm, (Cmp(1, "masked_eq", TIOCLINUX, _U32),)),
        # socket families: AF_ALG, AF_VSOCK, AF_PACKET, AF_KEY, AF_RXRPC, netlink, ...
        # are kernel-exploit paths; the network is AF_INET/AF_INET6 and only when granted
        *(Rule("socket", eperm, (c,)) for c in _outside(0, families)),
        *(Rule("socketpair", eperm, (c,)) for c in _outside(0, frozenset({AF_UNIX}))),
    ]
    known = {r.syscall for r in rules if sc.resolve_syscall(sc.Arch.NATIVE, r.syscall) >= 0}
    return Policy(
        arch=arch,
        network=network,
        socket_families=families,
        personalities=PERSONALITIES,
        rules=tuple(r for r in rules if r.syscall in known),
        unknown=tuple(dict.fromkeys(r.syscall for r in rules if r.syscall not in known)),
    )


def compile_filter(network: bool = False) -> bytes:
    """The BPF program of policy(network), for bwrap's --seccomp FD (8 bytes per insn).
    Compiled once per policy; later calls return the same bytes object."""
    return _compiled(bool(network))


@functools.cache
def _compiled(network: bool) -> bytes:
    sc = _libseccomp()
    p = policy(network)
    ops = {name: getattr(sc, name.upper()) for name in [*_COMPARE, "masked_eq"]}
    # Only the native ABI is added. Anything else fails the filter's arch check and
    # gets the bad-arch action: that kills i386 (int 0x80), and on x86_64 also x32,
    # which shares the x86_64 audit arch: libseccomp 2.5 sends every number with
    # __X32_SYSCALL_BIT (0x40000000) to the same action (checked in the exported BPF
    # and by a real x32 call in the tests).
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    # A binary tree of the syscall numbers, not a list: every call the program
    # makes runs the filter, and in list order an allowed call (the common
    # case) walked up to 80 comparisons: 157 ns per getppid() in a box against
    # 121 bare; 147 ns as a tree.
    f.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    # CTL_NNP only matters to seccomp_load(), never called here: bwrap sets
    # no_new_privs itself before it loads the program.
    try:
        for r in p.rules:
            args = [
                sc.Arg(c.arg, ops[c.op], *((c.mask, c.value) if c.op == "masked_eq" else (c.value,)))
                for c in r.when
            ]
            f.add_rule(sc.ERRNO(r.errno), r.syscall, *args)
        with tempfile.TemporaryFile() as out:
            f.export_bpf(out)
            out.seek(0)
            return out.read()
    except OSError as exc:
        raise SandboxError(f"libseccomp rejected the {p.arch} seccomp policy: {exc}") from exc
