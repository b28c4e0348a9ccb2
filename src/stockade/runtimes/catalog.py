"""The runtime catalog: languages.toml turned into `Runtime` values, with the
installed toolchain's real version probed on the host.

Knows nothing of the engine or the service; builds argv lists from templates and
never a shell string. Toolchains are accepted only from the system under /usr."""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import math
import os
import re
import shlex
import stat
import subprocess
import tempfile
import threading
import tomllib
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from stockade.errors import InvalidSubmission, UnknownRuntime
from stockade.sandbox.model import Limits, MiB, parse_size

DEFAULT_CATALOG = Path(__file__).with_name("languages.toml")

# Where a toolchain binary may live once links are resolved: the distribution's
# tree only, never /usr/local, a user's home or a pyenv shim (those escape packaging).
SYSTEM_PREFIXES = ("/usr/", "/bin/", "/lib/", "/lib64/", "/sbin/")

# Where the compiled product is mounted (read-only) in every run box.
BUILD_DIR = "/box/build"

_WORD_PLACEHOLDERS = ("{options}", "{args}")
_LIMIT_FIELDS = ("cpu_time", "wall_time", "memory", "processes", "output", "file_size",
                 "open_files", "stack", "tmp_size")
_SIZE_FIELDS = ("memory", "output", "file_size", "stack", "tmp_size")


def split_words(text: str | None, what: str) -> list[str]:
    """Split user text into argv items the way a shell splits words, without a
    shell ever running it: `"a b" c` -> ["a b", "c"]; `; rm -rf /` stays literal.

    >>> split_words("-O2 -DX='a b'", "compiler options")
    ['-O2', '-DX=a b']
    """
    if not text:
        return []
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError as exc:  # unbalanced quotes, trailing backslash
        raise InvalidSubmission(f"cannot split {what} {text!r}: {exc}") from None


@dataclass(frozen=True)
class Runtime:
    """One language entry of the catalog.

    >>> rt = Catalog.load().get("cpp")
    >>> rt.name, rt.judge0_ids[0], rt.is_compiled
    ('C++ (GCC 12.2.0)', 54, True)
    """

    key: str
    name: str
    judge0_ids: tuple[int, ...]
    extensions: tuple[str, ...]
    source_file: str
    compile_argv: tuple[str, ...] | None
    run_argv: tuple[str, ...]
    available: bool = True
    reason: str = ""
    version: str = ""
    # The probed binary's identity (inode, mtime, size): a Debian point update
    # keeps the version string ("12.2.0") but not this, and the compile cache's
    # key holds both, so an upgraded compiler builds anew.
    toolchain: str = ""
    source_mode: int = 0o644
    products: tuple[str, ...] = ()
    executables: tuple[str, ...] = ()
    products_copied: bool = False
    # Script names tried in order (Judge0's multi-file program: run.sh, then run);
    # the first present in the box is {script}. No compile script: no compile
    # step; no run script: the first name, and bash says it is missing.
    compile_scripts: tuple[str, ...] = ()
    run_scripts: tuple[str, ...] = ()
    heap_fraction: float = 0.5
    heap_reserve: int = 0
    # False for a VM that reserves far more address space than it uses (the JVM,
    # V8, Go's runtime): under a per-process limit, which is one on address
    # space (RLIMIT_AS), it cannot even start, so its memory is limited as a whole.
    per_process_memory: bool = True
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    compile_limits: Mapping[str, float | int] = field(default_factory=dict)
    run_limits: Mapping[str, float | int] = field(default_factory=dict)
    memory_error: str = ""
    packages: tuple[str, ...] = ()

    @property
    def is_compiled(self) -> bool:
        """True when the runtime has a compile step before running."""
        return self.compile_argv is not None

    @property
    def judge0_id(self) -> int | None:
        """The preferred (newest) Judge0 id of the family."""
        return self.judge0_ids[0] if self.judge0_ids else None

    def compiles(self, files: Collection[str] = ()) -> bool:
        """Whether a box holding these files has a compile step."""
        return self.is_compiled and (not self.compile_scripts or any(name in files for name in self.compile_scripts))

    def compile_command(self, options: str | Sequence[str] = "", limits: Limits | None = None,
                        files: Collection[str] = ()) -> list[str]:
        """The compile argv for these options (a string is shlex-split) in a
        box holding `files` (their names choose {script})."""
        if self.compile_argv is None:
            raise ValueError(f"{self.key} does not compile")
        words = split_words(options, "compiler options") if isinstance(options, str) else list(options)
        values = {**self._values(limits), "{script}": _first_present(self.compile_scripts, files)}
        return expand(self.compile_argv, values, {"{options}": words, "{args}": []})

    def run_command(self, args: str | Sequence[str] = "", limits: Limits | None = None,
                    files: Collection[str] = ()) -> list[str]:
        """The run argv for these program arguments (a string is shlex-split) in
        a box holding `files` (their names choose {script})."""
        words = split_words(args, "program arguments") if isinstance(args, str) else list(args)
        values = {**self._values(limits), "{script}": _first_present(self.run_scripts, files)}
        return expand(self.run_argv, values, {"{options}": [], "{args}": words})

    def environment(self, limits: Limits | None = None) -> dict[str, str]:
        """The runtime's environment variables, placeholders filled from the limits."""
        values = self._values(limits)
        return {name: fill(value, values) for name, value in self.env.items()}

    def adjust_compile_limits(self, limits: Limits) -> Limits:
        """Raise the compile limits to this runtime's minimums (javac needs threads)."""
        return raise_limits(limits, self.compile_limits)

    def adjust_run_limits(self, limits: Limits) -> Limits:
        """Raise the run limits to this runtime's minimums (a JVM needs threads);
        for a runtime that cannot run under a per-process (address space) memory
        limit, the memory limit applies to the run as a whole."""
        if limits.per_process_memory and not self.per_process_memory:
            limits = replace(limits, per_process_memory=False)
        return raise_limits(limits, self.run_limits)

    def is_memory_error(self, stderr: bytes, stdout: bytes = b"") -> bool:
        """Whether the runtime said its memory was exhausted (the JVM says it on
        stdout, the others on stderr; only the ends are looked at: Go says it
        first, then prints every goroutine's stack)."""
        if not self.memory_error:
            return False
        head = stderr[:4096] + b"\n" if len(stderr) > 65536 else b""
        text = (stdout[-4096:] + b"\n" + head + stderr[-65536:]).decode("utf-8", "replace")
        return re.search(self.memory_error, text) is not None

    def is_product(self, relpath: str) -> bool:
        return any(fnmatch.fnmatchcase(relpath, pattern) for pattern in self.products)

    def is_executable_product(self, relpath: str) -> bool:
        return self.products_copied or any(
            fnmatch.fnmatchcase(relpath, pattern) for pattern in self.executables)

    def describe(self) -> dict:
        """The `stockade languages --json` object."""
        return {
            "key": self.key,
            "id": self.judge0_id,
            "judge0_ids": list(self.judge0_ids),
            "name": self.name,
            "version": self.version,
            "extensions": list(self.extensions),
            "source_file": self.source_file,
            "compiled": self.is_compiled,
            "compile_cmd": list(self.compile_argv) if self.compile_argv else None,
            "run_cmd": list(self.run_argv),
            "available": self.available,
            "reason": self.reason,
        }

    def _values(self, limits: Limits | None) -> dict[str, str]:
        limits = limits or Limits()
        memory_mib = limits.memory // MiB
        heap_mib = math.floor(memory_mib * self.heap_fraction)
        if self.heap_reserve:
            # A runtime's own memory beside its heap is about fixed (the JVM's
            # code, metaspace, GC tables: ~20 MiB), not a share of the limit.
            heap_mib = max(heap_mib, memory_mib - self.heap_reserve // MiB)
        return {
            "{source}": self.source_file,
            "{build}": BUILD_DIR,
            "{memory_mib}": str(memory_mib),
            "{heap_mib}": str(max(8, heap_mib)),
            "{stack_kib}": str(max(256, limits.stack // 1024)),
            # What an interpreter may take for its own frames, leaving an eighth of
            # the stack to the native code under them (its overflow check stays first).
            "{stack_usable_kib}": str(max(256, limits.stack // 1024 * 7 // 8)),
            # The same, in bytes (Ruby's VM stack: its own, beside the machine stack).
            "{stack_usable_bytes}": str(max(256, limits.stack // 1024 * 7 // 8) * 1024),
        }


def _first_present(candidates: Sequence[str], files: Collection[str]) -> str:
    return next((name for name in candidates if name in files), candidates[0] if candidates else "")


def fill(item: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        item = item.replace(name, value)
    return item


def expand(template: Sequence[str], values: Mapping[str, str],
           words: Mapping[str, list[str]]) -> list[str]:
    """Expand an argv template: word placeholders become 0..n items, inline ones are
    substituted. User words are never scanned for placeholders (they stay literal)."""
    argv: list[str] = []
    for item in template:
        if item in words:
            argv.extend(words[item])
        else:
            argv.append(fill(item, values))
    return argv


def raise_limits(limits: Limits, minimums: Mapping[str, float | int]) -> Limits:
    changes = {name: minimum for name, minimum in minimums.items() if getattr(limits, name) < minimum}
    return replace(limits, **changes) if changes else limits


# --- loading and probing -------------------------------------------------------------

_probe_cache: dict[tuple, tuple[str, str]] = {}
_probe_lock = threading.Lock()
_PROBE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}


def _system_binary(path: str) -> tuple[str | None, str]:
    """(resolved path, "") if path is an executable of the system tree, else (None, why)."""
    if not os.path.isabs(path):
        return None, f"{path} is not an absolute path"
    if not os.path.exists(path):
        return None, f"{path} not installed"
    real = os.path.realpath(path)
    if not real.startswith(SYSTEM_PREFIXES):
        return None, f"{path} resolves to {real}, outside the system tree"
    if not os.access(real, os.X_OK) or not os.path.isfile(real):
        return None, f"{path} is not an executable file"
    return real, ""


def default_probe_cache() -> str:
    """Where probe results outlive the process: every `stockade run` would
    otherwise start a dozen compilers and interpreters to learn their versions
    (~0.3 s). Root's under the state directory (/run: gone at reboot)."""
    if os.geteuid() == 0:
        return "/run/stockade/probes.json"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stockade", "probes.json")


def _load_probes(path: str) -> None:
    """Probe results another process saved, if the file is ours and nobody
    else could have written it (a version is part of the compile cache's key)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        st, parent = os.fstat(fd), os.stat(os.path.dirname(path))
        for owned in (st, parent):
            if owned.st_uid != os.geteuid() or owned.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return
        with os.fdopen(fd, "rb", closefd=False) as fh:
            entries = json.load(fh)
        loaded = {(tuple(e["argv"]), e["regex"], e["ino"], e["mtime_ns"], e["size"]): (e["version"], e["why"])
                  for e in entries}
    except (OSError, ValueError, TypeError, KeyError):
        return  # unreadable or not ours: probe again
    finally:
        os.close(fd)
    with _probe_lock:
        for identity, result in loaded.items():
            _probe_cache.setdefault(identity, result)


def _save_probes(path: str) -> None:
    with _probe_lock:
        entries = [{"argv": list(argv), "regex": regex, "ino": ino, "mtime_ns": mtime, "size": size,
                    "version": version, "why": why}
                   for (argv, regex, ino, mtime, size), (version, why) in _probe_cache.items()
                   if version]  # (a failure, maybe a timeout under load, is tried again)
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".probes.", dir=os.path.dirname(path))
    except OSError:
        return  # (a cache: without it, the next process probes again)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(entries, out)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic: processes saving at once leave one whole file
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _file_identity(path: str) -> tuple[int, int, int]:
    """(inode, mtime, size) of a binary, links followed: an upgrade changes it."""
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


def _probe(argv: tuple[str, ...], regex: str) -> tuple[str, str]:
    """(version, "") or ("", why). Cached per binary identity (its inode, mtime
    and size: an upgrade probes again)."""
    try:
        identity = (argv, regex, *_file_identity(argv[0]))
    except OSError as exc:
        return "", f"{argv[0]}: {exc.strerror}"
    with _probe_lock:
        if identity in _probe_cache:
            return _probe_cache[identity]
    try:
        # The probe runs a system binary with fixed arguments and an empty
        # environment: no user input reaches it, so it needs no box.
        proc = subprocess.run(list(argv), env=_PROBE_ENV, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=20, cwd="/")
        text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        match = re.search(regex, text)
        if proc.returncode != 0 or not match:
            result = ("", f"version probe {shlex.join(argv)} failed (exit {proc.returncode})")
        else:
            result = (match.group(1), "")
    except (OSError, subprocess.TimeoutExpired) as exc:
        result = ("", f"version probe {shlex.join(argv)} failed: {exc}")
    with _probe_lock:
        _probe_cache[identity] = result
    return result


def _limit_minimums(table: Mapping[str, object], where: str) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for name, value in table.items():
        if name not in _LIMIT_FIELDS:
            raise ValueError(f"{where}: unknown limit {name!r}")
        if name in _SIZE_FIELDS:
            out[name] = parse_size(value) if isinstance(value, str) else int(value)
        elif name in ("cpu_time", "wall_time"):
            out[name] = float(value)
        else:
            out[name] = int(value)
    return out


def _resolve_argv0(template: list[str] | None) -> tuple[tuple[str, ...] | None, str]:
    """Replace argv[0] by its resolved system path (e.g. /usr/bin/java is an
    /etc/alternatives link); placeholders like {build}/main are left alone."""
    if template is None:
        return None, ""
    if not template or template[0].startswith("{") or template[0].startswith("/box/"):
        return tuple(template), ""
    real, why = _system_binary(template[0])
    if real is None:
        return tuple(template), why
    return (real, *template[1:]), ""


def _build(key: str, entry: Mapping, probe: bool) -> Runtime:
    where = f"languages.toml [{key}]"
    compile_argv, why_compile = _resolve_argv0(entry.get("compile"))
    run_argv, why_run = _resolve_argv0(entry["run"])
    reasons = [why for why in (why_compile, why_run) if why]
    for path in entry.get("requires", ()):
        real, why = _system_binary(path)
        if real is None:
            reasons.append(why)
    mounts: list[str] = []
    for pattern in entry.get("mounts", ()):
        found = sorted(glob.glob(pattern))
        if not found:
            reasons.append(f"{pattern} missing")
        mounts.extend(found)
    version = toolchain = ""
    if not reasons and entry.get("probe") and probe:
        probe_argv = list(entry["probe"])
        real, why = _system_binary(probe_argv[0])
        if real is None:
            reasons.append(why)
        else:
            version, why = _probe(tuple(probe_argv), entry.get("version_regex", r"(\S+)"))
            if why:
                reasons.append(why)
            with contextlib.suppress(OSError):
                toolchain = ":".join(map(str, _file_identity(real)))
    packages = tuple(entry.get("packages", ()))
    reason = ""
    if reasons:
        reason = "; ".join(reasons)
        if packages:
            reason += f" (Debian package{'s' if len(packages) > 1 else ''} {' '.join(packages)}: run `make runtimes`)"
    name_template = entry["name"]
    name = name_template.replace("{version}", version or "not installed") if "{version}" in name_template else name_template
    for word in _WORD_PLACEHOLDERS:
        for argv in (entry.get("compile") or [], entry["run"]):
            for item in argv:
                if word in item and item != word:
                    raise ValueError(f"{where}: {word} must be a whole argv item")
    return Runtime(
        key=key,
        name=name,
        judge0_ids=tuple(int(i) for i in entry.get("judge0_ids", ())),
        extensions=tuple(entry.get("extensions", ())),  # (as written: GCC's .C is C++, .c is C)
        source_file=entry.get("source_file", ""),
        compile_argv=compile_argv,
        run_argv=run_argv,
        available=not reasons,
        reason=reason,
        version=version,
        toolchain=toolchain,
        source_mode=int(entry.get("source_mode", 0o644)),
        products=tuple(entry.get("products", ())),
        executables=tuple(entry.get("executables", ())),
        products_copied=bool(entry.get("products_copied", False)),
        compile_scripts=tuple(entry.get("compile_scripts", ())),
        run_scripts=tuple(entry.get("run_scripts", ())),
        heap_fraction=float(entry.get("heap_fraction", 0.5)),
        heap_reserve=parse_size(str(entry.get("heap_reserve", 0))),
        per_process_memory=bool(entry.get("per_process_memory", True)),
        env=dict(entry.get("env", {})),
        mounts=tuple(mounts),
        compile_limits=_limit_minimums(entry.get("compile_limits", {}), where),
        run_limits=_limit_minimums(entry.get("run_limits", {}), where),
        memory_error=entry.get("memory_error", ""),
        packages=packages,
    )


class Catalog:
    """Every runtime of languages.toml, with what is installed.

    >>> catalog = Catalog.load()
    >>> catalog.get(52).key, catalog.get("52").key, catalog.by_extension(".py").key
    ('cpp', 'cpp', 'python3')
    """

    def __init__(self, runtimes: Sequence[Runtime]):
        self._runtimes = tuple(runtimes)
        self._by_key = {rt.key: rt for rt in self._runtimes}
        self._by_id: dict[int, Runtime] = {}
        self._by_ext: dict[str, Runtime] = {}
        for rt in self._runtimes:
            for jid in rt.judge0_ids:
                if jid in self._by_id:
                    raise ValueError(f"Judge0 id {jid} appears twice ({self._by_id[jid].key}, {rt.key})")
                self._by_id[jid] = rt
            for ext in rt.extensions:
                self._by_ext.setdefault(ext, rt)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, probe: bool = True,
             probe_cache: str | None = "") -> Catalog:
        """Read the catalog file and probe installed versions (in parallel,
        once per binary: results are kept in `probe_cache`, a file, by default
        default_probe_cache(); None keeps them for this process only)."""
        with open(path or DEFAULT_CATALOG, "rb") as fh:
            data = tomllib.load(fh)
        keys = list(data)
        cache_file = default_probe_cache() if probe_cache == "" else probe_cache
        if probe and cache_file:
            _load_probes(cache_file)
        with _probe_lock:
            known = len(_probe_cache)
        with ThreadPoolExecutor(max_workers=8) as pool:
            runtimes = list(pool.map(lambda k: _build(k, data[k], probe), keys))
        with _probe_lock:
            probed = len(_probe_cache) != known
        if probed and cache_file:
            _save_probes(cache_file)
        return cls(runtimes)

    def __iter__(self) -> Iterator[Runtime]:
        return iter(self._runtimes)

    def __len__(self) -> int:
        return len(self._runtimes)

    def __contains__(self, key: object) -> bool:
        try:
            self.get(key)  # type: ignore[arg-type]
        except UnknownRuntime:
            return False
        return True

    def available(self) -> list[Runtime]:
        """The runtimes whose toolchain is installed."""
        return [rt for rt in self._runtimes if rt.available]

    def get(self, key: str | int) -> Runtime:
        """A runtime by catalog key ("cpp"), Judge0 id (52 or "52"), or a common
        alias ("python", "c++", "node"). Raises UnknownRuntime."""
        if isinstance(key, bool):
            raise UnknownRuntime(f"unknown runtime {key!r}")
        if isinstance(key, int):
            if key in self._by_id:
                return self._by_id[key]
            raise UnknownRuntime(f"no runtime with Judge0 id {key}")
        text = str(key).strip().lower()
        if text.isascii() and text.isdigit():  # (isdigit alone takes "²", which int() refuses)
            return self.get(int(text))
        text = _ALIASES.get(text, text)
        if text in self._by_key:
            return self._by_key[text]
        raise UnknownRuntime(f"unknown runtime {key!r} (known: {', '.join(self._by_key)})")

    def by_extension(self, extension: str) -> Runtime:
        """The runtime for a file extension (".cpp" or "cpp"). Raises UnknownRuntime."""
        ext = extension if extension.startswith(".") else "." + extension
        # Exactly as written first (.C is C++, as GCC reads it), then in any case (.PY).
        for candidate in (ext, ext.lower()):
            if candidate in self._by_ext:
                return self._by_ext[candidate]
        raise UnknownRuntime(f"no runtime for extension {extension!r}")

    def for_file(self, filename: str) -> Runtime:
        """The runtime for a file name by its extension. Raises UnknownRuntime."""
        suffix = Path(filename).suffix
        if not suffix:
            raise UnknownRuntime(f"cannot tell the language of {filename!r}: no extension (use --language)")
        return self.by_extension(suffix)


_ALIASES = {
    "python": "python3", "py": "python3", "c++": "cpp", "cxx": "cpp", "g++": "cpp",
    "gcc": "c", "js": "javascript", "node": "javascript", "nodejs": "javascript",
    "sh": "bash", "rs": "rust", "golang": "go", "rb": "ruby", "pl": "perl",
    "lua5.4": "lua", "multi-file": "multifile",
}
