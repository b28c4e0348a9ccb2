"""Overhead of a box: `python3 -c pass` in the sandbox vs spawned bare.

Not a test (timings never go in the suite). Prints, measured in the same run:
  sequential: median wall per run, sandboxed/bare ratio, added ms per run,
              the supervisor's own CPU per run (our process only, not bwrap's);
  parallel:   2 x cores runs at once, throughput (runs/s) sandboxed/bare;
  reference:  bare bubblewrap with the same flags minus ours, for context.
Each for a box built for the run ("cold", Sandbox()) and for a box built ahead
of time that the run takes over ("warm", Sandbox(warm=2), as the service runs);
a warm box's build happens in the background but in this process, so it is in
the supervisor CPU per run.
Usage: .venv/bin/python bench/overhead.py [N]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

from stockade.sandbox import Limits, Sandbox

ARGV = ["/usr/bin/python3", "-c", "pass"]


def bare_once() -> float:
    started = time.perf_counter()
    subprocess.run(ARGV, env={}, check=True)
    return time.perf_counter() - started


BWRAP = ["/usr/bin/bwrap", "--unshare-all", "--unshare-user", "--die-with-parent", "--ro-bind", "/usr", "/usr",
         "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/lib", "/lib", "--symlink", "usr/bin", "/bin",
         "--proc", "/proc", "--dev", "/dev", "--", *ARGV]


def bwrap_once() -> float:
    started = time.perf_counter()
    subprocess.run(BWRAP, env={}, check=True)
    return time.perf_counter() - started


async def boxed_sequential(sandbox: Sandbox, n: int) -> tuple[list[float], float]:
    walls = []
    cpu_before = time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        result = await sandbox.run(ARGV, limits=Limits(cpu_time=5))
        walls.append(time.perf_counter() - started)
        assert result.status.value == "ok", result
    return walls, (time.process_time() - cpu_before) / n


async def boxed_parallel(sandbox: Sandbox, n: int, width: int) -> float:
    queue = list(range(n))

    async def worker():
        while queue:
            queue.pop()
            result = await sandbox.run(ARGV, limits=Limits(cpu_time=5))
            assert result.status.value == "ok", result

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    return n / (time.perf_counter() - started)


def bare_parallel(n: int, width: int, argv: list[str] = ARGV) -> float:
    started = time.perf_counter()
    running: list[subprocess.Popen] = []
    for _ in range(n):
        if len(running) >= width:
            running.pop(0).wait()
        running.append(subprocess.Popen(argv, env={}))
    for proc in running:
        proc.wait()
    return n / (time.perf_counter() - started)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    cores = len(os.sched_getaffinity(0))
    width = 2 * cores
    cold = Sandbox(slots=width)
    # Its own uids: slots are host-wide, and the warm boxes this one keeps idle
    # would otherwise hold slots the cold runs wait for.
    warm = Sandbox(slots=width + 2, warm=2, first_uid=60000 + width)
    loop = asyncio.new_event_loop()
    for _ in range(10):  # warm caches (page cache, seccomp compile, imports)
        bare_once()
        loop.run_until_complete(cold.run(ARGV))
        loop.run_until_complete(warm.run(ARGV))
    # Interleave so that machine noise hits every side alike.
    bare, wrap = [], []
    boxed: dict[str, list[float]] = {"cold": [], "warm": []}
    supervisor_cpu: dict[str, list[float]] = {"cold": [], "warm": []}
    for _ in range(max(1, n // 20)):
        bare += [bare_once() for _ in range(20)]
        wrap += [bwrap_once() for _ in range(5)]
        for name, sandbox in (("cold", cold), ("warm", warm)):
            walls, cpu = loop.run_until_complete(boxed_sequential(sandbox, 20))
            boxed[name] += walls
            supervisor_cpu[name].append(cpu)
    bare_med, wrap_med = statistics.median(bare), statistics.median(wrap)
    print(f"sequential, {len(bare)} runs each (median wall):")
    print(f"  bare          {bare_med * 1000:7.2f} ms")
    print(f"  bwrap         {wrap_med * 1000:7.2f} ms   bwrap alone / bare = {wrap_med / bare_med:.2f}")
    for name in ("cold", "warm"):
        med = statistics.median(boxed[name])
        print(f"  stockade {name}  {med * 1000:7.2f} ms   sandboxed / bare = {med / bare_med:.2f}  "
              f"(+{(med - bare_med) * 1000:.2f} ms per run; {(med - wrap_med) * 1000:+.2f} ms over bare bwrap)  "
              f"supervisor CPU per run: {statistics.median(supervisor_cpu[name]) * 1000:.2f} ms")
    print(f"  (warm runs {warm.warm_runs}, cold fallbacks {warm.cold_runs})")
    bare_tp = bare_parallel(n, width)
    bwrap_tp = bare_parallel(n, width, BWRAP)
    cold_tp = loop.run_until_complete(boxed_parallel(cold, n, width))
    warm_tp = loop.run_until_complete(boxed_parallel(warm, n, width))
    print(f"parallel, {width} at once, {n} runs:")
    print(f"  bare          {bare_tp:7.1f} runs/s")
    print(f"  bwrap         {bwrap_tp:7.1f} runs/s   bwrap alone / bare = {bwrap_tp / bare_tp:.2f}")
    print(f"  stockade cold {cold_tp:7.1f} runs/s   throughput sandboxed / bare = {cold_tp / bare_tp:.2f}")
    print(f"  stockade warm {warm_tp:7.1f} runs/s   throughput sandboxed / bare = {warm_tp / bare_tp:.2f}")
    for sandbox in (cold, warm):
        sandbox.close()
    loop.close()


if __name__ == "__main__":
    main()
