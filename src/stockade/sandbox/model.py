"""Values of the sandbox layer: what a run may use (Limits), what it did
(RunResult) and the verdict (Status). Seconds are floats, sizes int bytes."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from stockade.errors import LimitError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


class Status(enum.StrEnum):
    """How a run ended, from the sandbox's point of view."""

    ok = "ok"
    runtime_error = "runtime_error"
    time_limit = "time_limit"
    wall_time_limit = "wall_time_limit"
    memory_limit = "memory_limit"
    output_limit = "output_limit"
    sandbox_error = "sandbox_error"


# Verdict precedence when several things happened in one run (DESIGN.md):
# the first matching one wins.
PRECEDENCE = (
    Status.sandbox_error,
    Status.memory_limit,
    Status.output_limit,
    Status.time_limit,
    Status.wall_time_limit,
    Status.runtime_error,
    Status.ok,
)


def decide(events: set[Status]) -> Status:
    """The verdict among everything that happened during a run."""
    for status in PRECEDENCE:
        if status in events:
            return status
    return Status.ok


# With per-process memory limits, the whole run still stops here (memory x
# processes could be tens of GiB).
PER_PROCESS_TOTAL_MEMORY = 2 * GiB
# Processes of the box's own in its cgroup, besides the program's: bwrap's
# monitor and the box's pid 1 (stockade-launch, reporting the program's status;
# without the launcher, bwrap's own reaper).
OWN_PROCESSES = 2
MAX_PROCESSES = (1 << 22) - OWN_PROCESSES  # the kernel's PID_MAX_LIMIT, in all
# stdout and stderr are each held in the supervisor's memory, up to `output`.
MAX_OUTPUT = 1 * GiB
MAX_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Limits:
    """What one run may use. Every field has a safe default.

    >>> Limits(cpu_time=1.0, memory=64 * MiB)
    Limits(cpu_time=1.0, wall_time=10.0, memory=67108864, ...)

    cpu_time    CPU seconds over all processes of the run (default 2 s)
    wall_time   real seconds from start to end (default 10 s)
    memory      bytes of RAM, page cache and tmpfs together; no swap (256 MiB)
    processes   processes and threads alive at once (64)
    output      bytes of stdout and of stderr, each (1 MiB, at most 1 GiB); past it: killed
    file_size   largest file the program may write (16 MiB)
    open_files  file descriptors per process (64)
    stack       stack size per process (64 MiB)
    tmp_size    size of the box's /tmp tmpfs (16 MiB)
    per_process_time    cpu_time bounds each process, not their sum (Judge0's
                        enable_per_process_and_thread_time_limit): an rlimit,
                        so in whole seconds; wall_time still bounds the run
    per_process_memory  memory bounds each process's address space, not their
                        sum (..._memory_limit); the run's total stays capped at
                        memory x processes, and never above 2 GiB (or memory)
    """

    cpu_time: float = 2.0
    wall_time: float = 10.0
    memory: int = 256 * MiB
    processes: int = 64
    output: int = 1 * MiB
    file_size: int = 16 * MiB
    open_files: int = 64
    stack: int = 64 * MiB
    tmp_size: int = 16 * MiB
    per_process_time: bool = False
    per_process_memory: bool = False

    def __post_init__(self) -> None:
        for name in ("cpu_time", "wall_time"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise LimitError(f"{name} must be a positive number of seconds, got {value!r}")
            if value > MAX_SECONDS:
                raise LimitError(f"{name} must be at most {MAX_SECONDS} seconds (a day), got {value!r}")
        for name in ("memory", "processes", "output", "file_size", "open_files", "stack", "tmp_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise LimitError(f"{name} must be a non-negative integer, got {value!r}")
        if self.memory < 4 * MiB:
            raise LimitError(f"memory must be at least 4 MiB, got {self.memory}")
        if not 1 <= self.processes <= MAX_PROCESSES:
            raise LimitError(f"processes must be between 1 and {MAX_PROCESSES}, got {self.processes}")
        if self.output > MAX_OUTPUT:
            raise LimitError(f"output must be at most 1 GiB (stdout and stderr are each held in memory), "
                             f"got {self.output}")
        if self.open_files < 4:
            raise LimitError("open_files must be at least 4 (stdin, stdout, stderr and one more)")
        for name in ("per_process_time", "per_process_memory"):
            if not isinstance(getattr(self, name), bool):
                raise LimitError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def box_processes(self) -> int:
        """The pids limit of the run's cgroup: the program's `processes`, and
        the box's own two (bwrap's monitor and the box's pid 1, the launcher)."""
        return self.processes + OWN_PROCESSES

    @property
    def total_memory(self) -> int:
        """What the whole run may use (the cgroup's limit)."""
        if not self.per_process_memory:
            return self.memory
        return min(self.memory * self.processes, max(self.memory, PER_PROCESS_TOTAL_MEMORY))


@dataclass(frozen=True)
class RunResult:
    """What one run did. `exit_code` is None when a signal ended the program,
    `signal` None when it exited. Times in seconds, memory in bytes."""

    status: Status
    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    time: float = 0.0
    wall_time: float = 0.0
    memory: int = 0
    oom_killed: bool = False
    message: str = ""
    files: dict[str, bytes] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The CLI's --json object (stdout/stderr as UTF-8, invalid bytes replaced)."""
        return {
            "status": self.status.value,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stderr": self.stderr.decode("utf-8", "replace"),
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "time": round(self.time, 6),
            "wall_time": round(self.wall_time, 6),
            "memory": self.memory,
        }


@dataclass(frozen=True)
class Mount:
    """An extra host path made visible in the box (read-only unless writable).

    `copy`: a small read-only tree (a compiled program) that may be copied into
    the box instead of bound, owned by root so the box's user cannot change it;
    this lets a run with it take a warm box, which cannot take new mounts."""

    source: str
    target: str
    writable: bool = False
    copy: bool = False


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kKmMgG])(?:i?[bB])?|[bB]?)\s*$")  # 64M, 64MiB, 64MB, 100B
_UNITS = {"": 1, "k": KiB, "m": MiB, "g": GiB}


def parse_size(text: str) -> int:
    """'1048576', '512K', '64M', '1.5G' -> bytes (powers of 1024)."""
    match = _SIZE.match(str(text))
    if not match:
        raise LimitError(f"invalid size {text!r}: use bytes or a number with K, M or G")
    number, unit = match.groups()
    unit = unit or ""
    value = float(number) * _UNITS[unit.lower()]
    if unit == "" and "." in number:
        raise LimitError(f"invalid size {text!r}: a byte count must be a whole number")
    return int(value)
