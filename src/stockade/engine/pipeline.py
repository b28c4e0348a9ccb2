"""One submission: files -> compile (once, cached, in its own box) -> run each
test in a fresh box with the product mounted read-only -> judge -> verdict.

Knows the sandbox and the runtime catalog; never the service (DESIGN.md)."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace

from stockade.engine.archive import ArchiveLimits, extract
from stockade.engine.cache import DEFAULT_SIZE, CompileCache, Lease, Product, cache_key, digest
from stockade.engine.judging import PASSING, overall_verdict, verdict_of
from stockade.engine.model import (
    LIMIT_TEXT,
    Submission,
    SubmissionResult,
    TestCase,
    TestResult,
    Verdict,
)
from stockade.errors import CollectError, InvalidSubmission, SandboxError, UnknownRuntime
from stockade.runtimes.catalog import BUILD_DIR, Catalog, Runtime, split_words
from stockade.sandbox.model import KiB, Limits, Mount, RunResult, Status
from stockade.sandbox.workdir import File, check_relpath

log = logging.getLogger("stockade.engine")

Progress = Callable[[int, int], None]

MAX_NUMBER_OF_RUNS = 20
COMPILE_OUTPUT_LIMIT = 64 * KiB
# What execve takes (one item under MAX_ARG_STRLEN, 128 KiB) and bubblewrap
# (at most 9000 arguments, its own included): beyond, the box cannot start.
MAX_WORD = 128 * KiB - 1
MAX_WORDS = 4096
MAX_WORDS_BYTES = 1024 * KiB
# The longest path of a product file, relative to /box: the cache stores and
# reads products by full host path (cache dir + key + this), under PATH_MAX.
MAX_PRODUCT_PATH = 1024
# Where a run box has the compiled product, relative to /box.
_BUILD = BUILD_DIR.removeprefix("/box/")


def default_cache_dir() -> str:
    """/var/cache/stockade/compile as root, else under the user's cache home."""
    if os.geteuid() == 0:
        return "/var/cache/stockade/compile"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "stockade", "compile")


@dataclass
class _Compiled:
    """What the compile step gave: a product lease, or the failure."""

    lease: Lease | None = None
    run: RunResult | None = None
    output: bytes = b""
    failure: str = ""  # why there is no product (compile_error)
    error: Verdict | None = None


class Engine:
    """Compiles and runs submissions against their tests.

    >>> engine = Engine(Sandbox(), Catalog.load(), cache_dir="/var/cache/stockade/compile")
    >>> result = await engine.run(Submission("cpp", source=b"int main(){}"))
    >>> result.verdict
    <Verdict.ok: 'ok'>

    `cache_size` bounds the compile cache in bytes (least recently used products
    go first). engine.run raises UnknownRuntime (no such runtime, or not
    installed) and InvalidSubmission (malformed options, arguments or zip);
    everything the program does is in the returned SubmissionResult.
    """

    def __init__(self, sandbox, catalog: Catalog, cache_dir: str | os.PathLike | None = None,
                 cache_size: int = DEFAULT_SIZE, *, archive_limits: ArchiveLimits | None = None,
                 compile_output_limit: int = COMPILE_OUTPUT_LIMIT):
        self.sandbox = sandbox
        self.catalog = catalog
        cache_dir = os.fspath(cache_dir or default_cache_dir())
        try:
            os.makedirs(cache_dir, mode=0o755, exist_ok=True)
            _check_traversable(cache_dir)
            self.cache = CompileCache(cache_dir, cache_size)
        except OSError as exc:
            raise SandboxError(f"cannot use the compile cache at {cache_dir}: {exc.strerror or exc}") from None
        self.archive_limits = archive_limits or ArchiveLimits()
        self.compile_output_limit = compile_output_limit

    async def run(self, submission: Submission, progress: Progress | None = None) -> SubmissionResult:
        """Compile (if needed) and run every test; see SubmissionResult."""
        runtime = self.runtime_for(submission)
        options = split_words(submission.compiler_options, "compiler options")
        args = split_words(submission.arguments, "program arguments")
        if not 1 <= submission.number_of_runs <= MAX_NUMBER_OF_RUNS:
            raise InvalidSubmission(f"number_of_runs must be between 1 and {MAX_NUMBER_OF_RUNS}")
        if options and not runtime.is_compiled:
            raise InvalidSubmission(f"{runtime.name} does not compile: compiler options are not allowed")
        _check_words(options, "compiler options")
        _check_words(args, "program arguments")
        tests = tuple(submission.tests) or (TestCase(),)
        files = await self._input_files(runtime, submission)

        compiled = _Compiled()
        compiles = runtime.compiles(files)
        if compiles and not runtime.products_copied:
            # The product is mounted (or copied) there in every run box: a file of
            # the submission's in its place made the box fail (a sandbox_error),
            # or was hidden from the program.
            clash = sorted(name for name in files if check_relpath(name)[0] == _BUILD)
            if clash:
                raise InvalidSubmission(f"additional files: {clash[0]!r} is refused: /box/{_BUILD} is where "
                                        f"the compiled program goes")
        if compiles:
            compiled = await self._compile(runtime, submission, files, options)
            if compiled.lease is None:
                verdict = compiled.error or Verdict.compile_error
                result = SubmissionResult(verdict=verdict, compile_output=compiled.output,
                                          compile_run=compiled.run, message=compiled.failure,
                                          runtime=runtime.key, tests_total=len(tests))
                self._log(result)
                return result
        try:
            results = await self._run_tests(runtime, submission, files, compiled.lease, args, tests, progress)
        finally:
            if compiled.lease is not None:
                compiled.lease.close()
        verdict = overall_verdict(results)
        failing = next((t for t in results if t.verdict not in PASSING), None)
        result = SubmissionResult(
            verdict=verdict,
            compile_output=compiled.output,
            compile_run=compiled.run,
            tests=tuple(results),
            message=failing.message if failing else "",
            runtime=runtime.key,
            compile_cached=bool(compiled.lease and compiled.lease.hit),
            tests_total=len(tests),
        )
        self._log(result)
        return result

    def run_sync(self, submission: Submission, progress: Progress | None = None) -> SubmissionResult:
        """`run` for callers without an event loop."""
        return asyncio.run(self.run(submission, progress))

    def runtime_for(self, submission: Submission) -> Runtime:
        """The submission's runtime; UnknownRuntime if unknown or not installed."""
        runtime = self.catalog.get(submission.runtime)
        if not runtime.available:
            raise UnknownRuntime(f"{runtime.name} is not available here: {runtime.reason}")
        return runtime

    # -- steps -----------------------------------------------------------------

    async def _input_files(self, runtime: Runtime, submission: Submission) -> dict[str, File]:
        files: dict[str, File] = {}
        if submission.additional_files:
            files.update(await extract(self.sandbox, submission.additional_files, self.archive_limits))
        if runtime.source_file:
            # The submitted source wins over a same-named file of the zip.
            files[runtime.source_file] = File(bytes(submission.source), runtime.source_mode)
        elif submission.source:
            raise InvalidSubmission(f"{runtime.name} takes no source code, only additional files")
        return files

    async def _compile(self, runtime: Runtime, submission: Submission, files: Mapping[str, File],
                       options: list[str]) -> _Compiled:
        compiled = _Compiled()
        limits = runtime.adjust_compile_limits(submission.compile_limits)
        key = product_key(runtime, options, files, limits)

        async def build() -> Product | None:
            argv = runtime.compile_command(options, limits, files)
            try:
                run = await self.sandbox.run(argv, files=files, limits=limits, env=runtime.environment(limits),
                                             mounts=_mounts(runtime), collect=runtime.products or ())
            except CollectError as exc:  # products bigger than the collect cap, too many files
                run = exc.result
                compiled.run = replace(run, files={})
                compiled.output = _bounded(run.stdout + run.stderr, self.compile_output_limit)
                compiled.failure = f"compilation failed: {exc}"
                return None
            except SandboxError as exc:  # the box itself, not the compiler
                compiled.error = Verdict.sandbox_error
                compiled.failure = f"the compile box failed: {exc}"
                return None
            compiled.run = replace(run, files={})
            compiled.output = _bounded(run.stdout + run.stderr, self.compile_output_limit)
            if run.status is Status.sandbox_error:
                compiled.error = Verdict.sandbox_error
                compiled.failure = run.message or "the compile box failed"
                return None
            if run.status is not Status.ok:
                compiled.failure = _compile_failure(run)
                return None
            products = {name: (content, _product_mode(runtime, name, files))
                        for name, content in run.files.items() if runtime.is_product(name)}
            if any(len(os.fsencode(name)) > MAX_PRODUCT_PATH for name in products):
                # (Directories nested 20 deep with 250-byte names made storing it an
                # OSError, "File name too long", out of the engine.)
                compiled.failure = f"compilation failed: a product's path is longer than {MAX_PRODUCT_PATH} bytes"
                return None
            if not products and not runtime.products_copied:
                compiled.failure = "the compiler produced no program"
                return None
            return Product(products, compiled.output)

        lease = await self.cache.get_or_build(key, build)
        if lease is not None:
            compiled.lease = lease
            compiled.output = lease.compile_output
        return compiled

    async def _run_tests(self, runtime: Runtime, submission: Submission, files: Mapping[str, File],
                         lease: Lease | None, args: list[str], tests: tuple[TestCase, ...],
                         progress: Progress | None) -> list[TestResult]:
        limits = runtime.adjust_run_limits(submission.run_limits)
        env = runtime.environment(limits)
        mounts = _mounts(runtime)
        run_files: dict[str, File] = dict(files)
        if lease is not None:
            if runtime.products_copied:
                # Judge0 runs a multi-file program where its compile script left it:
                # the product is copied into each fresh box, writable like the rest.
                # (In a thread: up to 20,000 files to read, as the box writes them.)
                run_files = await asyncio.to_thread(_read_tree, lease.path)
            else:
                # Read-only: a program cannot change what the next run (or the next
                # submission with the same hash) executes.
                # (A warm box gets a root-owned copy instead: just as unchangeable.)
                mounts.append(Mount(lease.path, BUILD_DIR, writable=False, copy=True))
        argv = runtime.run_command(args, limits, run_files)
        results: list[TestResult] = []
        if progress:
            progress(0, len(tests))
        for index, test in enumerate(tests):
            runs: list[RunResult] = []
            for _ in range(submission.number_of_runs):
                run = await self.sandbox.run(argv, files=run_files, stdin=test.stdin, limits=limits,
                                             env=env, mounts=mounts,
                                             stderr_to_stdout=submission.redirect_stderr_to_stdout)
                run = _classify(runtime, run, submission.redirect_stderr_to_stdout)
                runs.append(run)
                if run.status is not Status.ok:
                    break
            run = _average(runs)
            verdict = verdict_of(run, test.expected_output, exact=submission.exact)
            results.append(TestResult(verdict, run, name=test.name or str(index + 1), runs=len(runs)))
            if progress:
                progress(index + 1, len(tests))
            if verdict not in PASSING and submission.stop_at_first_failure:
                break
        return results

    def _log(self, result: SubmissionResult) -> None:
        last = result.last_run
        log.info("submission runtime=%s verdict=%s tests=%d/%d cached=%s cpu=%.3f wall=%.3f memory=%d",
                 result.runtime, result.verdict.value, len(result.tests), result.tests_total,
                 result.compile_cached, last.time if last else 0.0, last.wall_time if last else 0.0,
                 last.memory if last else 0)


# -- helpers ------------------------------------------------------------------


def product_key(runtime: Runtime, options: list[str], files: Mapping[str, File], limits: Limits) -> str:
    """The compile cache key: everything that decides what the compile box
    leaves and how it is stored, so two catalogs sharing a cache directory (the
    CLI and the service, as root) never take each other's products.

    The compile limits too: a compile step can succeed under tight limits with
    another product (a multi-file script whose file was cut at the file size
    limit, whose second compiler could not fork), and the same sources under
    other limits must not get it."""
    inputs = sorted((name, digest(f.content), f.mode) for name, f in files.items())
    # (Made once per runtime object and inputs: the same program run again, a
    # judge's every submission of it, skips the JSON and its hash.)
    memo = (id(runtime), tuple(options), tuple(inputs), limits)
    known = _KEYS.get(memo)
    if known is not None and known[0] is runtime:
        return known[1]
    key = cache_key(
        runtime=runtime.key, version=runtime.version, toolchain=runtime.toolchain,
        compile=list(runtime.compile_argv or ()),
        products=list(runtime.products), executables=list(runtime.executables),
        copied=runtime.products_copied, env=sorted(runtime.env.items()), mounts=list(runtime.mounts),
        options=options, files=inputs, limits=asdict(limits),
    )
    if len(_KEYS) >= _KEYS_KEPT:
        _KEYS.clear()
    _KEYS[memo] = (runtime, key)
    return key


# product_key's memo: (id(runtime), options, inputs, limits) -> (runtime, key).
# The runtime is kept so that its id, checked with it, cannot be another's.
_KEYS: dict[tuple, tuple[Runtime, str]] = {}
_KEYS_KEPT = 256


def _mounts(runtime: Runtime) -> list[Mount]:
    return [Mount(path, path, writable=False) for path in runtime.mounts]


def standing_mounts(catalog: Catalog) -> list[Mount]:
    """Every available runtime's own read-only paths (/etc/php, the JDK's /etc
    directory): give them to Sandbox(warm_mounts=...) and every run can take a
    warm box, whatever its language."""
    return list(dict.fromkeys(mount for runtime in catalog.available() for mount in _mounts(runtime)))


def _product_mode(runtime: Runtime, name: str, inputs: Mapping[str, File]) -> int:
    # The compiled program is executable whatever stood in its place before: an
    # additional file named `main` (0644) made gcc's fresh output a program that
    # could not start (exit status 126).
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in runtime.executables):
        return 0o755
    if name in inputs:
        return inputs[name].mode  # (a multi-file program's own files keep theirs)
    return 0o755 if runtime.is_executable_product(name) else 0o644


def _read_tree(root: str) -> dict[str, File]:
    """The files of a cache entry (ours, root-owned, never touched by a box)."""
    out: dict[str, File] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                continue
            with open(path, "rb") as fh:
                content = fh.read()
            out[os.path.relpath(path, root)] = File(content, 0o755 if st.st_mode & 0o111 else 0o644)
    return out


def _check_words(words: list[str], what: str) -> None:
    """InvalidSubmission for argv items no box could start with."""
    sizes = [len(word.encode("utf-8", "surrogatepass")) for word in words]
    if len(words) > MAX_WORDS:
        raise InvalidSubmission(f"{what}: more than {MAX_WORDS} words")
    if sizes and max(sizes) > MAX_WORD:
        raise InvalidSubmission(f"{what}: a word longer than {MAX_WORD} bytes")
    if sum(sizes) > MAX_WORDS_BYTES:
        raise InvalidSubmission(f"{what}: more than {MAX_WORDS_BYTES} bytes")


def _bounded(data: bytes, limit: int) -> bytes:
    if len(data) <= limit:
        return data
    return data[:limit] + b"\n[compile output truncated]\n"


def _compile_failure(run: RunResult) -> str:
    if run.status is Status.ok or run.status is Status.runtime_error:
        if run.signal is not None:
            return f"the compiler was killed by signal {run.signal}"
        return f"compilation failed (exit code {run.exit_code})"
    if run.status.value in LIMIT_TEXT:
        return "compilation " + LIMIT_TEXT[run.status.value]
    return f"compilation failed ({run.status.value})"


def _classify(runtime: Runtime, run: RunResult, one_stream: bool) -> RunResult:
    """Runtime-specific reading of a run: a managed heap that refused to grow
    (Java's OutOfMemoryError, Node's heap limit) is a memory_limit. With one
    stream (redirect_stderr_to_stdout), what the runtime said on stderr is in
    stdout, read as stderr is (Go says it first, before every goroutine's stack)."""
    stderr = run.stdout if one_stream else run.stderr
    if run.status is Status.runtime_error and runtime.is_memory_error(stderr, run.stdout):
        run = replace(run, status=Status.memory_limit, message=run.message or "memory limit exceeded (heap)")
    return run


def _average(runs: list[RunResult]) -> RunResult:
    """The reported run: the failing one (else the last), with time, wall time
    and memory averaged over every run made (Judge0's number_of_runs)."""
    base = runs[-1]
    if len(runs) == 1:
        return base
    n = len(runs)
    return replace(base, time=sum(r.time for r in runs) / n, wall_time=sum(r.wall_time for r in runs) / n,
                   memory=sum(r.memory for r in runs) // n)


def _check_traversable(path: str) -> None:
    """Boxes bind cache entries as the slot's uid: every parent directory must
    let others through (x), or bwrap cannot reach the entry."""
    if os.geteuid() != 0:
        return  # rootless: bwrap runs as us
    current = os.path.abspath(path)
    while True:
        mode = os.stat(current).st_mode
        if not mode & stat.S_IXOTH:
            raise SandboxError(f"compile cache {path}: {current} is not traversable by the box users "
                               "(mode o+x needed); choose another cache directory")
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent
