"""Compile-cache benchmark (not a test): C++ hello world and Java hello world,
cold (compile + run) against cached (run only, product mounted from the cache),
against the same binary run bare outside any sandbox, all in the same run.

    .venv/bin/python bench/compile_cache.py [--runs N]

Prints medians and ratios. Target (issue 3): a cached C++ run costs <= 1.3 x a
bare run of the same binary."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from stockade.engine import Engine, Submission
from stockade.runtimes import Catalog
from stockade.sandbox import Sandbox

CPP = b'#include <iostream>\nint main() { std::cout << "Hello, World!" << std::endl; }\n'
JAVA = b'public class Main { public static void main(String[] a) { System.out.println("Hello, World!"); } }\n'


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="samples per measurement (default 30)")
    parser.add_argument("--cold-runs", type=int, default=5, help="cold compiles per language (default 5)")
    options = parser.parse_args()

    catalog = Catalog.load()
    sandbox = Sandbox()
    cache_dir = tempfile.mkdtemp(prefix="stockade-bench-cache-", dir="/tmp")
    os.chmod(cache_dir, 0o755)
    engine = Engine(sandbox, catalog, cache_dir=cache_dir)
    try:
        for key, source in (("cpp", CPP), ("java", JAVA)):
            runtime = catalog.get(key)
            if not runtime.available:
                print(f"{key}: not available ({runtime.reason})")
                continue
            # Cold: a different program each time (a comment makes a new cache key).
            cold = []
            for n in range(options.cold_runs):
                variant = source + f"// cold {n} {time.time_ns()}\n".encode()
                cold.append(timed(lambda v=variant, k=key: _check(engine.run_sync(Submission(k, v)), cached=False)))
            # Cached: the same program again and again.
            _check(engine.run_sync(Submission(key, source)), cached=None)
            cached = [timed(lambda k=key, s=source: _check(engine.run_sync(Submission(k, s)), cached=True))
                      for _ in range(options.runs)]
            bare = _bare_runs(engine, key, source, options.runs)
            print(f"{runtime.name}")
            print(f"  cold compile+run  median {median_ms(cold):8.1f} ms  ({options.cold_runs} runs)")
            print(f"  cached run        median {median_ms(cached):8.1f} ms  ({options.runs} runs)")
            print(f"  bare run          median {median_ms(bare):8.1f} ms  (same product, no sandbox)")
            print(f"  cold / cached     {median_ms(cold) / median_ms(cached):8.2f} x")
            print(f"  cached / bare     {median_ms(cached) / median_ms(bare):8.2f} x"
                  + ("   (target <= 1.3 for C++)" if key == "cpp" else ""))
            print(f"  cached - bare     {median_ms(cached) - median_ms(bare):8.1f} ms per run")
    finally:
        sandbox.close()
        shutil.rmtree(cache_dir, ignore_errors=True)


def _check(result, cached):
    if result.verdict.value != "ok" or result.tests[0].run.stdout != b"Hello, World!\n":
        sys.exit(f"benchmark program failed: {result}")
    if cached is not None and result.compile_cached != cached:
        sys.exit(f"expected compile_cached={cached}, got {result.compile_cached}")
    return result


def _bare_runs(engine, key: str, source: bytes, runs: int) -> list[float]:
    """The cached product itself, run with subprocess outside any box."""
    runtime = engine.catalog.get(key)
    lease = _lease_of(engine, key, source)
    try:
        argv = runtime.run_command("")
        argv = [a.replace("/box/build", lease.path) for a in argv]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        return [timed(lambda: subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                                             cwd=lease.path, check=True)) for _ in range(runs)]
    finally:
        lease.close()


def _lease_of(engine, key, source):
    import asyncio

    result = engine.run_sync(Submission(key, source))
    assert result.compile_cached
    objects = os.path.join(engine.cache.root, "objects")

    async def find():
        # The entry the engine used: the most recently used one.
        newest = max(os.listdir(objects), key=lambda k: os.stat(os.path.join(objects, k, "meta.json")).st_mtime)

        async def never():
            raise RuntimeError("must be cached")

        return await engine.cache.get_or_build(newest, never)

    return asyncio.run(find())


if __name__ == "__main__":
    main()
