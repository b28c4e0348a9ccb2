"""Judge0's language table, read from the runtime catalog: every Judge0 id a
runtime accepts is a language; a runtime whose toolchain is missing shows as
archived (listed in /languages/all, refused on submission)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stockade.engine.model import COMPILE_LIMITS
from stockade.runtimes import Runtime
from stockade.sandbox.model import Limits


class Languages:
    """Judge0 ids -> runtimes."""

    def __init__(self, catalog: Iterable[Runtime], run_limits: Limits | None = None):
        # The run limits a language's commands are shown with (the default ones:
        # a JVM's heap and stack sizes follow them), as Judge0 shows real commands.
        self.run_limits = run_limits or Limits()
        self.by_id: dict[int, Runtime] = {}
        for runtime in catalog:
            for judge0_id in runtime.judge0_ids:
                self.by_id.setdefault(int(judge0_id), runtime)

    def get(self, judge0_id: int) -> Runtime | None:
        return self.by_id.get(judge0_id)

    def name(self, judge0_id: int) -> str | None:
        runtime = self.by_id.get(judge0_id)
        return runtime.name if runtime else None

    def active(self) -> list[dict[str, Any]]:
        """GET /languages: usable languages, sorted by name."""
        items = [(rt.name, jid) for jid, rt in self.by_id.items() if rt.available]
        return [{"id": jid, "name": name} for name, jid in sorted(items)]

    def all(self) -> list[dict[str, Any]]:
        """GET /languages/all: every language, with archived ones (toolchain missing)."""
        items = sorted((rt.name, jid, not rt.available) for jid, rt in self.by_id.items())
        return [{"id": jid, "name": name, "is_archived": archived} for name, jid, archived in items]

    def detail(self, judge0_id: int) -> dict[str, Any] | None:
        """GET /languages/{id}."""
        runtime = self.by_id.get(judge0_id)
        if runtime is None:
            return None
        return {
            "id": judge0_id,
            "name": runtime.name,
            "is_archived": not runtime.available,
            "source_file": runtime.source_file or None,
            "compile_cmd": _compile_cmd(runtime),
            "run_cmd": " ".join(runtime.run_command(
                [], runtime.adjust_run_limits(self.run_limits), runtime.run_scripts[-1:])),
        }


def _compile_cmd(runtime: Runtime) -> str | None:
    """Judge0's style: `%s` where the compiler options go; a script tried under
    several names shows its plain one (the last)."""
    if not runtime.is_compiled:
        return None
    limits = runtime.adjust_compile_limits(COMPILE_LIMITS)
    return " ".join(runtime.compile_command(["%s"], limits, runtime.compile_scripts[-1:]))
