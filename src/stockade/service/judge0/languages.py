"""Judge0's language table, read from the runtime catalog: every Judge0 id a
runtime accepts is a language; a runtime whose toolchain is missing shows as
archived (listed in /languages/all, refused on submission)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stockade.runtimes import Runtime


def _command(argv: Iterable[str] | None, source_file: str, scripts: tuple[str, ...] = ()) -> str | None:
    """A display form of an argv template, in Judge0's style (`%s` for options;
    a script tried under several names shows its plain one, the last)."""
    if argv is None:
        return None
    words = []
    for item in argv:
        if item == "{options}":
            words.append("%s")
        elif item == "{args}":
            continue
        else:
            words.append(item.replace("{source}", source_file).replace("{build}", "/box/build")
                         .replace("{script}", scripts[-1] if scripts else ""))
    return " ".join(words)


class Languages:
    """Judge0 ids -> runtimes."""

    def __init__(self, catalog: Iterable[Runtime]):
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
            "compile_cmd": _command(runtime.compile_argv, runtime.source_file, runtime.compile_scripts),
            "run_cmd": _command(runtime.run_argv, runtime.source_file, runtime.run_scripts),
        }
