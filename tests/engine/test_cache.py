"""The compile cache on its own (no box): hits, failures not cached, LRU
bounds, entries in use never evicted, and one build for concurrent requests,
inside one process and across processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import stat

import pytest

from stockade.engine.cache import CompileCache, Product, cache_key
from stockade.sandbox.model import Limits, MiB


def key(n: int | str) -> str:
    return cache_key(test=n)


def product(size: int = 100, tag: bytes = b"x") -> Product:
    return Product({"main": (tag * size, 0o755), "lib/data.txt": (b"d", 0o644)}, b"warning: tag\n")


def builder(counter: list, result: Product | None, delay: float = 0.0):
    async def build():
        counter.append(1)
        await asyncio.sleep(delay)
        return result
    return build


def test_miss_then_hit(tmp_path):
    cache = CompileCache(tmp_path / "c", 1 * MiB)
    builds: list = []

    async def go():
        first = await cache.get_or_build(key(1), builder(builds, product()))
        second = await cache.get_or_build(key(1), builder(builds, product()))
        return first, second

    first, second = asyncio.run(go())
    assert len(builds) == 1 and (first.hit, second.hit) == (False, True)
    assert first.path == second.path and second.compile_output == b"warning: tag\n"
    with open(os.path.join(second.path, "main"), "rb") as fh:
        assert fh.read() == b"x" * 100
    first.close()
    second.close()
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_hit_reads_the_entry_again_only_when_it_was_stored_again(tmp_path):
    # The compile output is kept in memory by meta.json's inode: read once, and
    # again when another process has stored the entry anew (a new meta.json).
    import base64
    import json

    cache = CompileCache(tmp_path / "c", 1 * MiB)
    asyncio.run(cache.get_or_build(key(1), builder([], product()))).close()
    meta = tmp_path / "c" / "objects" / key(1) / "meta.json"
    content = json.loads(meta.read_text())
    content["compile_output"] = base64.b64encode(b"stored again\n").decode()
    os.chmod(meta, 0o644)
    with open(meta, "r+") as fh:  # the same inode: the output known is kept
        fh.write(json.dumps(content))
        fh.truncate()
    same = asyncio.run(cache.get_or_build(key(1), builder([], None)))
    assert same.compile_output == b"warning: tag\n"
    same.close()
    fresh = meta.with_name("meta.new")
    fresh.write_text(json.dumps(content))
    os.rename(fresh, meta)  # a new inode, as a new store makes
    again = asyncio.run(cache.get_or_build(key(1), builder([], None)))
    assert again.compile_output == b"stored again\n" and again.hit
    again.close()


def test_products_have_no_write_bits(tmp_path):
    cache = CompileCache(tmp_path / "c", 1 * MiB)
    lease = asyncio.run(cache.get_or_build(key(1), builder([], product())))
    main = os.stat(os.path.join(lease.path, "main"))
    data = os.stat(os.path.join(lease.path, "lib", "data.txt"))
    assert stat.S_IMODE(main.st_mode) == 0o555 and stat.S_IMODE(data.st_mode) == 0o444
    assert stat.S_IMODE(os.stat(lease.path).st_mode) == 0o755
    lease.close()


def test_a_failed_build_is_not_cached(tmp_path):
    cache = CompileCache(tmp_path / "c", 1 * MiB)
    builds: list = []
    assert asyncio.run(cache.get_or_build(key(1), builder(builds, None))) is None
    assert asyncio.run(cache.get_or_build(key(1), builder(builds, None))) is None
    assert len(builds) == 2 and not cache.contains(key(1))


def test_product_names_from_a_box_are_checked(tmp_path):
    cache = CompileCache(tmp_path / "c", 1 * MiB)
    for bad in ("../escape", "/etc/passwd", "a/../../b"):
        evil = Product({bad: (b"x", 0o644)})
        with pytest.raises(ValueError):
            asyncio.run(cache.get_or_build(key(bad), builder([], evil)))
        assert not cache.contains(key(bad))
    assert not (tmp_path / "escape").exists()
    assert os.listdir(tmp_path / "c" / "tmp") == []


def test_least_recently_used_entries_go_first(tmp_path):
    room = int(2.5 * product(1000).footprint)
    cache = CompileCache(tmp_path / "c", room)  # room for two 1000-byte products

    async def go():
        for n in (1, 2):
            (await cache.get_or_build(key(n), builder([], product(1000)))).close()
            await asyncio.sleep(0.02)
        (await cache.get_or_build(key(1), builder([], product(1000)))).close()  # 1 is now the newest
        await asyncio.sleep(0.02)
        (await cache.get_or_build(key(3), builder([], product(1000)))).close()

    asyncio.run(go())
    assert cache.contains(key(1)) and cache.contains(key(3)) and not cache.contains(key(2))
    assert cache.total_size() <= room


def test_an_entry_in_use_is_never_evicted(tmp_path):
    room = int(1.5 * product(1000).footprint)
    cache = CompileCache(tmp_path / "c", room)

    async def go():
        held = await cache.get_or_build(key(1), builder([], product(1000)))
        await asyncio.sleep(0.02)
        (await cache.get_or_build(key(2), builder([], product(1000)))).close()
        return held

    held = asyncio.run(go())
    # Over the bound, and 1 is the least recently used, but it is in use: it stays.
    assert cache.contains(key(1)) and os.path.exists(os.path.join(held.path, "main"))
    assert cache.evict() == 1  # the free one went instead
    assert cache.contains(key(1)) and not cache.contains(key(2))
    held.close()
    assert cache.total_size() <= room


def test_a_product_bigger_than_the_cache_is_used_once(tmp_path):
    cache = CompileCache(tmp_path / "c", 500)
    lease = asyncio.run(cache.get_or_build(key(1), builder([], product(1000))))
    assert os.path.exists(os.path.join(lease.path, "main")) and not cache.contains(key(1))
    path = lease.path
    lease.close()
    assert not os.path.exists(path)


def test_concurrent_identical_requests_build_once(tmp_path):
    cache = CompileCache(tmp_path / "c", 100_000)
    builds: list = []

    async def go():
        return await asyncio.gather(*(cache.get_or_build(key(7), builder(builds, product(), delay=0.2))
                                      for _ in range(5)))

    leases = asyncio.run(go())
    assert len(builds) == 1
    assert sorted(lease.hit for lease in leases) == [False, True, True, True, True]
    for lease in leases:
        lease.close()


def test_threads_sharing_the_cache_build_once(tmp_path):
    # Each thread its own event loop (an engine shared by a thread pool).
    import concurrent.futures
    import threading

    cache = CompileCache(tmp_path / "c", 100_000)
    builds: list = []
    started = threading.Barrier(4)

    def one(_):
        started.wait()
        lease = asyncio.run(asyncio.wait_for(cache.get_or_build(key(8), builder(builds, product(), delay=0.2)), 20))
        lease.close()
        return lease.hit

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        hits = list(pool.map(one, range(4)))
    assert len(builds) == 1 and sorted(hits) == [False, True, True, True]


def _build_in_child(root: str, marker_dir: str, n: int) -> None:
    async def build():
        # Count builds across processes with files (one per build).
        open(os.path.join(marker_dir, f"build-{os.getpid()}"), "x").close()
        await asyncio.sleep(0.5)
        return product()

    cache = CompileCache(root, 100_000)
    lease = asyncio.run(cache.get_or_build(key("shared"), build))
    assert lease is not None and os.path.exists(os.path.join(lease.path, "main"))
    lease.close()


def test_two_processes_compile_once(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_build_in_child, args=(str(tmp_path / "c"), str(markers), n)) for n in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert len(os.listdir(markers)) == 1


def test_keys_are_checked_and_stable(tmp_path):
    cache = CompileCache(tmp_path / "c", 1000)
    with pytest.raises(ValueError):
        asyncio.run(cache.get_or_build("../../etc", builder([], product())))
    assert cache_key(a=1, b=[1, 2]) == cache_key(b=[1, 2], a=1)
    assert cache_key(a=1) != cache_key(a=2)


def test_stale_staging_directories_are_cleaned(tmp_path):
    CompileCache(tmp_path / "c", 1000)
    stale = tmp_path / "c" / "tmp" / "leftover"
    stale.mkdir()
    os.utime(stale, (0, 0))
    CompileCache(tmp_path / "c", 1000)
    assert not stale.exists()


def test_a_product_too_big_to_keep_is_not_taken_for_stale_while_in_use(tmp_path):
    """A product bigger than the whole cache lives in tmp/ for its submission
    only. Another process's start removed it as stale once an hour had passed
    since it was built, under a judge still running its tests."""
    cache = CompileCache(tmp_path / "c", 1000)
    lease = asyncio.run(cache.get_or_build(key(1), builder([], product(size=4000))))
    assert lease.hit is False and lease.path.startswith(str(tmp_path / "c" / "tmp"))
    staging = os.path.dirname(lease.path)
    os.utime(staging, (0, 0))
    CompileCache(tmp_path / "c", 1000)  # another process starting
    assert os.path.exists(os.path.join(lease.path, "main"))
    lease.close()
    assert not os.path.exists(staging)
    # One its process left behind (killed before it closed the lease) goes.
    left = asyncio.run(cache.get_or_build(key(2), builder([], product(size=4000))))
    os.utime(os.path.dirname(left.path), (0, 0))
    os.close(left._fd)  # (the lock ends with the process that held it)
    left._fd = -1
    CompileCache(tmp_path / "c", 1000)
    assert not os.path.exists(os.path.dirname(left.path))


def disk_usage(root) -> tuple[int, int]:
    """(bytes in allocated blocks, inodes) under root."""
    blocks = inodes = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            blocks += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            inodes += 1
    return blocks, inodes


def test_many_tiny_files_count_what_they_take(tmp_path):
    # A multi-file program's compile box can leave 20000 tiny files: counted by
    # their bytes alone they took nothing, and the cache's bound never evicted
    # them. Each counts its blocks and inode now: the bound holds on disk.
    bound = 4 * MiB
    cache = CompileCache(tmp_path / "c", bound)
    tiny = [Product({f"d{i % 50}/f{i}": (b"x" if n else b"", 0o644) for i in range(500)}) for n in range(20)]

    async def go():
        for n, item in enumerate(tiny):
            (await cache.get_or_build(key(f"tiny{n}"), builder([], item))).close()

    asyncio.run(go())
    assert cache.total_size() <= bound
    blocks, inodes = disk_usage(tmp_path / "c" / "objects")
    assert blocks <= bound and inodes * 4096 <= bound
    assert tiny[0].footprint >= 500 * 4096


def test_failed_builds_leave_no_lock_files(tmp_path):
    # Every distinct failing compile used to leave locks/<key>.lock for good:
    # unbounded files on the host from submissions that cache nothing.
    cache = CompileCache(tmp_path / "c", 1 * MiB)
    locks = tmp_path / "c" / "locks"

    async def boom():
        raise RuntimeError("the build broke")

    async def go():
        for n in range(20):
            assert await cache.get_or_build(key(f"fail{n}"), builder([], None)) is None
        with pytest.raises(RuntimeError):
            await cache.get_or_build(key("raises"), boom)
        # Too big to cache: used once, nothing kept.
        (await CompileCache(tmp_path / "c", 500).get_or_build(key("big"), builder([], product(1000)))).close()
        # Concurrent requests for one failing key: each waiter still gets its answer.
        builds: list = []
        results = await asyncio.gather(*(cache.get_or_build(key("same"), builder(builds, None, delay=0.05))
                                         for _ in range(4)))
        assert results == [None] * 4 and len(builds) == 4
        lease = await cache.get_or_build(key("ok"), builder([], product()))
        lease.close()

    asyncio.run(go())
    assert os.listdir(locks) == [key("ok") + ".lock"]
    assert cache.contains(key("ok")) and not cache.contains(key("same"))


def test_the_key_covers_the_runtimes_whole_compile_setup(catalog):
    # Same source, options and toolchain version, another catalog's setup (a
    # custom languages.toml sharing the cache directory): never the same product.
    from dataclasses import replace

    from stockade.engine.pipeline import product_key
    from stockade.sandbox.workdir import File

    c = catalog.get("c")
    files = {"main.c": File(b"int main(void){return 0;}")}
    limits = Limits(cpu_time=10, memory=512 * MiB)
    base = product_key(c, ["-O2"], files, limits)
    variants = [replace(c, env={"CPATH": "/usr/include/other"}), replace(c, executables=()),
                replace(c, mounts=("/etc/alternatives",)), replace(c, products_copied=True),
                # The same version string from another binary: a Debian point update.
                replace(c, toolchain=c.toolchain + "-upgraded")]
    assert c.toolchain  # (the probed compiler's identity, read at load)
    keys = {product_key(variant, ["-O2"], files, limits) for variant in variants}
    assert base not in keys and len(keys) == len(variants)
    assert product_key(c, ["-O2"], files, limits) == base
    assert product_key(c, ["-O3"], files, limits) != base
    assert product_key(c, ["-O2"], {"main.c": File(b"int main(void){return 0;}", 0o755)}, limits) != base
    # Built under other compile limits, a compile may have left another product.
    assert product_key(c, ["-O2"], files, replace(limits, file_size=MiB)) != base


def test_the_key_is_the_compilers_argv_not_the_options_text(catalog):
    # Options that differ only by spacing or quoting give the compiler the same
    # argv (the same product); any difference in the argv is another key.
    from stockade.engine.pipeline import product_key
    from stockade.runtimes.catalog import split_words
    from stockade.sandbox.workdir import File

    c = catalog.get("c")
    files = {"main.c": File(b"int main(void){return 0;}")}
    limits = Limits(cpu_time=10, memory=512 * MiB)

    def key(options: str) -> str:
        return product_key(c, split_words(options, "compiler options"), files, limits)

    assert key("-O2  -DX='a b'") == key(" -O2\t-DX=a' 'b ") == key('-O2 "-DX=a b"')
    assert len({key("-DX='a b'"), key("-DX=a -Db"), key("-DX=ab"), key("'-DX=a b' ''")}) == 4
    # Another file with the same name in an option is another product: its content is in the key.
    other = {**files, "a.h": File(b"#define X 1\n")}
    assert product_key(c, ["-include", "a.h"], files, limits) != product_key(c, ["-include", "a.h"], other, limits)
