"""Compile-cache benchmark (not a test): C++ hello world and Java hello world,
cold (compile + run) against cached (run only, product mounted from the cache),
against the same binary run bare outside any sandbox, all in the same run.
Cached runs are measured twice: in a box built for the run (Sandbox()), and
in a warm box built ahead of time (Sandbox(warm=2), as the service runs),
which takes the product as a read-only copy. Each run, boxed or bare, is
measured on a quiet machine, the three kinds interleaved: the boxes of the
runs before it are gone (a run returns as soon as its program's result is
known; its box is removed after) and the warm boxes are built. Warm runs and
bare runs are also measured back to back (a judge's tests, one awaited after
another): each warm run then shares the machine with the removal of the box
before it and the building of the next.

    .venv/bin/python bench/compile_cache.py [--runs N]

Prints medians and ratios. Target (issue 3): a cached C++ run costs <= 1.3 x a
bare run of the same binary."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from stockade.engine import Engine, Submission, standing_mounts
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
    warm_sandbox = Sandbox(warm=2, warm_mounts=standing_mounts(catalog))
    cache_dir = tempfile.mkdtemp(prefix="stockade-bench-cache-", dir="/tmp")
    os.chmod(cache_dir, 0o755)
    engine = Engine(sandbox, catalog, cache_dir=cache_dir)
    warm_engine = Engine(warm_sandbox, catalog, cache_dir=cache_dir)
    # One event loop for everything, as in a server: warm boxes live on it.
    loop = asyncio.new_event_loop()

    def submit(eng, key, source, cached):
        return _check(loop.run_until_complete(eng.run(Submission(key, source))), cached)

    def quiet():
        # The boxes of the runs before are gone, the warm boxes built.
        async def settled():
            await sandbox.settle()
            await warm_sandbox.settle()
            await warm_sandbox.prewarm()

        loop.run_until_complete(settled())

    async def back_to_back(key, source, runs):
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            _check(await warm_engine.run(Submission(key, source)), True)
            times.append(time.perf_counter() - started)
        return times

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
                cold.append(timed(lambda v=variant, k=key: submit(engine, k, v, cached=False)))
            # Cached: the same program again and again, interleaved cold box / warm box.
            submit(engine, key, source, cached=None)
            loop.run_until_complete(warm_sandbox.prewarm())
            bare_run, lease = _bare_run(engine, loop, key, source)
            cached, warm, bare = [], [], []
            try:
                for _ in range(options.runs):
                    quiet()
                    cached.append(timed(lambda k=key, s=source: submit(engine, k, s, cached=True)))
                    quiet()
                    warm.append(timed(lambda k=key, s=source: submit(warm_engine, k, s, cached=True)))
                    quiet()
                    bare.append(timed(bare_run))
                quiet()
                series = loop.run_until_complete(back_to_back(key, source, options.runs))
                bare_series = [timed(bare_run) for _ in range(options.runs)]
            finally:
                lease.close()
            print(f"{runtime.name}")
            print(f"  cold compile+run  median {median_ms(cold):8.1f} ms  ({options.cold_runs} runs)")
            print(f"  cached run        median {median_ms(cached):8.1f} ms  ({options.runs} runs, a box built for each)")
            print(f"  cached, warm box  median {median_ms(warm):8.1f} ms  ({options.runs} runs, a box built ahead)")
            print(f"  warm, back to back median {median_ms(series):7.1f} ms  ({options.runs} runs in a row)")
            print(f"  bare run          median {median_ms(bare):8.1f} ms  (same product, no sandbox)")
            print(f"  cold / cached     {median_ms(cold) / median_ms(cached):8.2f} x")
            target = "   (target <= 1.3 for C++)" if key == "cpp" else ""
            print(f"  cached / bare     {median_ms(cached) / median_ms(bare):8.2f} x{target}")
            print(f"  warm / bare       {median_ms(warm) / median_ms(bare):8.2f} x{target}")
            print(f"  back to back / bare back to back {median_ms(series) / median_ms(bare_series):.2f} x"
                  f"  (bare {median_ms(bare_series):.1f} ms)")
            print(f"  cached - bare     {median_ms(cached) - median_ms(bare):8.1f} ms per run;"
                  f" warm - bare {median_ms(warm) - median_ms(bare):.1f} ms")
        print(f"(warm box runs {warm_sandbox.warm_runs}, cold fallbacks {warm_sandbox.cold_runs})")
    finally:
        sandbox.close()
        warm_sandbox.close()
        loop.close()
        shutil.rmtree(cache_dir, ignore_errors=True)


def _check(result, cached):
    if result.verdict.value != "ok" or result.tests[0].run.stdout != b"Hello, World!\n":
        sys.exit(f"benchmark program failed: {result}")
    if cached is not None and result.compile_cached != cached:
        sys.exit(f"expected compile_cached={cached}, got {result.compile_cached}")
    return result


def _bare_run(engine, loop, key: str, source: bytes):
    """A run of the cached product itself, with subprocess outside any box, and
    the lease to close once done with it."""
    runtime = engine.catalog.get(key)
    lease = _lease_of(engine, loop, key, source)
    argv = runtime.run_command("")
    argv = [a.replace("/box/build", lease.path) for a in argv]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

    def run():
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd=lease.path, check=True)

    return run, lease


def _lease_of(engine, loop, key, source):
    result = loop.run_until_complete(engine.run(Submission(key, source)))
    assert result.compile_cached
    objects = os.path.join(engine.cache.root, "objects")

    async def find():
        # The entry the engine used: the most recently used one.
        newest = max(os.listdir(objects), key=lambda k: os.stat(os.path.join(objects, k, "meta.json")).st_mtime)

        async def never():
            raise RuntimeError("must be cached")

        return await engine.cache.get_or_build(newest, never)

    return loop.run_until_complete(find())


if __name__ == "__main__":
    main()
