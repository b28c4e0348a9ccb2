"""One command in one box: every isolation layer, limits, accounting, teardown.

Knows nothing of runtimes, the engine or the service (DESIGN.md)."""

from stockade.sandbox import bwrap, seccomp
from stockade.sandbox.box import File, Sandbox
from stockade.sandbox.model import GiB, KiB, Limits, MiB, Mount, RunResult, Status, parse_size

__all__ = ["File", "bwrap", "seccomp", "GiB", "KiB", "Limits", "MiB", "Mount", "RunResult", "Sandbox", "Status", "parse_size"]
