"""Hostile programs in compiled languages, through the whole engine: contained,
judged, and leaving nothing behind (no process, cgroup or box directory; the
compile cache unchanged; the next run fine). Programs are data in hostile/."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from stockade.engine import Submission, Verdict
from stockade.errors import InvalidSubmission
from stockade.sandbox import Limits, MiB
from tests.conftest import leftovers
from tests.engine import support

HOSTILE = Path(__file__).with_name("hostile")


def program(name: str) -> bytes:
    return (HOSTILE / name).read_bytes()


def tree_digest(root: str) -> dict[str, str]:
    """Every entry under root: kind, mode and content hash (lstat: links are seen as links)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            entry = f"{stat.S_IFMT(st.st_mode):o}:{stat.S_IMODE(st.st_mode):o}"
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    entry += ":" + hashlib.sha256(fh.read()).hexdigest()
            out[os.path.relpath(path, root)] = entry
    return out


@pytest.fixture
def fresh_engine(sandbox):
    engine, path = support.make_engine(sandbox, prefix="stockade-hostile-")
    yield engine
    support.remove(path)


@pytest.fixture(autouse=True)
def contained(sandbox, engine):
    yield
    assert leftovers(sandbox) == []
    # The engine still works after every hostile program.
    after = engine.run_sync(Submission("python3", b"print('still fine')"))
    assert after.tests[0].run.stdout == b"still fine\n"


def test_c_fork_bomb_is_contained(engine):
    limits = Limits(cpu_time=1, wall_time=4, processes=32)
    result = engine.run_sync(Submission("c", program("fork_bomb.c"), run_limits=limits))
    assert result.verdict in (Verdict.time_limit, Verdict.wall_time_limit), result


def test_c_memory_bomb_is_contained(engine):
    limits = Limits(cpu_time=5, wall_time=10, memory=64 * MiB)
    result = engine.run_sync(Submission("c", program("memory_bomb.c"), run_limits=limits))
    assert result.verdict is Verdict.memory_limit, result
    assert result.tests[0].run.memory <= 64 * MiB + 4 * MiB


def test_c_blocked_syscalls_all_fail(engine):
    result = engine.run_sync(Submission("c", program("blocked_syscalls.c")))
    assert result.verdict is Verdict.ok, (result.compile_output, result.tests)
    out = result.tests[0].run.stdout.decode()
    assert out.endswith("done\n") and "ALLOWED" not in out, out
    assert out.count("denied") == 18


def test_a_program_cannot_write_into_the_compile_cache(fresh_engine):
    engine = fresh_engine
    source = program("write_into_cache.c")
    first = engine.run_sync(Submission("c", source))
    assert first.verdict is Verdict.ok, first
    out = first.tests[0].run.stdout.decode()
    assert "CHANGED" not in out and out.endswith("done\n"), out
    objects = os.path.join(engine.cache.root, "objects")
    (entry,) = os.listdir(objects)
    before = tree_digest(os.path.join(objects, entry))
    # Run it again from the cache: same product, still refused, nothing changed on the host.
    second = engine.run_sync(Submission("c", source))
    assert second.compile_cached and "CHANGED" not in second.tests[0].run.stdout.decode()
    assert tree_digest(os.path.join(objects, entry)) == before
    assert set(before) == {"meta.json", "product", "product/main"}
    # The cache root is ours and closed to writes by anyone else.
    for path in (engine.cache.root, objects, os.path.join(objects, entry)):
        st = os.lstat(path)
        assert st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_links_planted_by_a_compile_step_are_never_followed(fresh_engine, tmp_path):
    engine = fresh_engine
    secret = tmp_path / "host-secret"
    secret.write_text("HOST SECRET")
    # The multi-file compile script is user code run in the compile box: it plants
    # every kind of link for the engine to follow when it collects the product.
    compile_script = f"""
        ln -s /etc/shadow shadow-link
        ln -s {secret} secret-link
        ln -s / root-link
        ln -s .. up-link
        mkdir -p deep && ln -s /etc deep/etc-link
        mkfifo fifo
        ln run hard-run || true
        echo built > real-product
    """.encode()
    run_script = b"ls -A; cat real-product"
    result = engine.run_sync(Submission(89, b"", additional_files=zip_of(
        {"compile": compile_script, "run": run_script})))
    assert result.verdict is Verdict.ok, (result.compile_output, result.tests)
    listing = result.tests[0].run.stdout.decode().split()
    assert "real-product" in listing and "built" in listing
    for planted in ("shadow-link", "secret-link", "root-link", "up-link", "fifo"):
        assert planted not in listing
    # The cached product holds regular files and directories only, and no host content.
    (entry,) = os.listdir(os.path.join(engine.cache.root, "objects"))
    for dirpath, dirnames, filenames in os.walk(os.path.join(engine.cache.root, "objects", entry)):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), name
            if stat.S_ISREG(st.st_mode):
                with open(os.path.join(dirpath, name), "rb") as fh:
                    assert b"HOST SECRET" not in fh.read()


def test_a_product_that_is_a_link_is_no_product(fresh_engine, tmp_path):
    # gcc's -wrapper runs a command of the user's choice instead of each compiler
    # stage (in the compile box): it leaves `main` as a link to a host file.
    secret = tmp_path / "secret"
    secret.write_text("HOST SECRET")
    options = f"-wrapper /usr/bin/bash,-c,ln\\ -sf\\ {secret}\\ main"
    result = fresh_engine.run_sync(Submission("c", b"int main(void){return 0;}", compiler_options=options))
    assert result.verdict is Verdict.compile_error
    assert result.message == "the compiler produced no program"
    assert b"HOST SECRET" not in result.compile_output
    assert os.listdir(os.path.join(fresh_engine.cache.root, "objects")) == []


def test_a_cached_program_in_a_warm_box_cannot_change_its_product():
    # A warm box takes the cached product as a root-owned copy instead of a bind.
    from stockade.sandbox import Sandbox

    warm = Sandbox(slots=4, warm=2)
    engine, path = support.make_engine(warm, prefix="stockade-hostile-warm-")
    try:
        source = program("write_into_cache.c")

        async def twice():
            first = await engine.run(Submission("c", source))
            await warm.prewarm()
            before = warm.warm_runs
            second = await engine.run(Submission("c", source))
            return first, second, warm.warm_runs - before

        first, second, warm_runs = asyncio.run(twice())
        assert first.verdict is Verdict.ok and second.compile_cached, (first, second)
        assert warm_runs == 1  # the cached run took a warm box
        out = second.tests[0].run.stdout.decode()
        assert "CHANGED" not in out and out.endswith("done\n"), out
        objects = os.path.join(engine.cache.root, "objects")
        (entry,) = os.listdir(objects)
        assert set(tree_digest(os.path.join(objects, entry))) == {"meta.json", "product", "product/main"}
    finally:
        warm.close()
        support.remove(path)


@pytest.mark.parametrize("entries", [{"build": b"a file where the product goes"},
                                     {"build/main": b"#!/bin/sh\necho not the compiled program\n"}])
def test_additional_files_cannot_take_the_products_place(engine, entries):
    # /box/build is where a run box gets the compiled product: a file there made
    # bubblewrap fail (a sandbox_error, an internal error for the service), a
    # directory was hidden in a cold box and failed in a warm one.
    with pytest.raises(InvalidSubmission, match="compiled program"):
        engine.run_sync(Submission("c", b"int main(void){return 0;}", additional_files=zip_of(entries)))
    # Not compiled, nothing is mounted there: the same files are fine.
    fine = engine.run_sync(Submission("python3", b"import os; print(os.path.exists('build'))",
                                      additional_files=zip_of(entries)))
    assert fine.verdict is Verdict.ok and fine.tests[0].run.stdout == b"True\n", fine


@pytest.mark.parametrize("field, value", [("arguments", "x" * 200_000),
                                          ("compiler_options", " ".join(["-DX"] * 10_000)),
                                          ("arguments", " ".join(["y" * 1000] * 2000))])
def test_argv_no_box_can_start_with_is_refused(engine, field, value):
    runtime = "c" if field == "compiler_options" else "python3"
    source = b"int main(void){return 0;}" if runtime == "c" else b"print(1)"
    with pytest.raises(InvalidSubmission, match="compiler options|program arguments"):
        engine.run_sync(Submission(runtime, source, **{field: value}))


def test_a_product_built_under_tighter_compile_limits_is_not_anyone_elses(fresh_engine):
    # A multi-file compile script that ignores its errors succeeds under a tiny
    # file size limit with a cut product. The same zip under the usual limits
    # (another user's submission of a public program) must not get it from the cache.
    files = zip_of({"compile": b"head -c 2000000 /dev/zero > data\necho built\n", "run": b"wc -c < data\n"})
    tight = Submission(89, additional_files=files).compile_limits
    tight = Limits(cpu_time=tight.cpu_time, wall_time=tight.wall_time, memory=tight.memory,
                   processes=tight.processes, file_size=MiB)
    poisoned = fresh_engine.run_sync(Submission(89, additional_files=files, compile_limits=tight))
    assert poisoned.verdict is Verdict.ok and poisoned.tests[0].run.stdout == b"1048576\n", poisoned
    victim = fresh_engine.run_sync(Submission(89, additional_files=files))
    assert not victim.compile_cached
    assert victim.verdict is Verdict.ok and victim.tests[0].run.stdout == b"2000000\n", victim


def test_a_failed_compile_that_leaves_many_files_keeps_its_message(fresh_engine):
    # The compile box is read back only when the compile succeeded: a failed one
    # that littered /box is a compile error with the compiler's own words, not
    # "too many files to collect" (which hid a time limit the same way).
    files = zip_of({"compile": b"for i in $(seq 25000); do : > f$i; done\n"
                               b"echo 'main.c:1:1: error: expected declaration' >&2; exit 1\n",
                    "run": b"true\n"})
    result = fresh_engine.run_sync(Submission(89, additional_files=files))
    assert result.verdict is Verdict.compile_error, result
    assert result.message == "compilation failed (exit code 1)"
    assert result.compile_output == b"main.c:1:1: error: expected declaration\n"


def test_a_compile_that_leaves_too_much_keeps_its_output(fresh_engine):
    # It succeeded, but left what no product may be: a compile error that says
    # why, with what the compiler printed (it was dropped with the files).
    files = zip_of({"compile": b"echo 'main.c:3:5: warning: unused variable'\n"
                               b"for i in $(seq 25000); do : > f$i; done\n",
                    "run": b"true\n"})
    result = fresh_engine.run_sync(Submission(89, additional_files=files))
    assert result.verdict is Verdict.compile_error, result
    assert result.message == "compilation failed: too many files in the box to collect"
    assert result.compile_output == b"main.c:3:5: warning: unused variable\n"
    assert result.compile_run is not None and result.compile_run.files == {}
    assert os.listdir(os.path.join(fresh_engine.cache.root, "objects")) == []


def test_an_additional_file_in_the_programs_place_does_not_make_it_unrunnable(fresh_engine):
    # gcc writes over a `main` of the zip: the product is the compiled program,
    # executable, not the zip's file mode (0644: exit status 126).
    result = fresh_engine.run_sync(Submission("c", b'#include <stdio.h>\nint main(void){puts("compiled");}\n',
                                              additional_files=zip_of({"main": b"a stale file"})))
    assert result.verdict is Verdict.ok and result.tests[0].run.stdout == b"compiled\n", result


def test_a_product_whose_path_the_host_cannot_store_is_a_compile_error(fresh_engine):
    # 20 directories of 250-byte names, made one by one in the compile box: the
    # cache could not store the product (ENAMETOOLONG, an engine exception).
    script = (b'd=$(printf "a%.0s" $(seq 250)); for i in $(seq 20); do mkdir $d; cd $d; done\n'
              b'echo deep > f; echo made\n')
    result = fresh_engine.run_sync(Submission(89, additional_files=zip_of({"compile": script, "run": b"true\n"})))
    assert result.verdict is Verdict.compile_error, result
    assert result.message == "compilation failed: a product's path is longer than 1024 bytes"
    assert result.compile_output == b"made\n"
    cache = fresh_engine.cache.root
    assert os.listdir(os.path.join(cache, "objects")) == [] and os.listdir(os.path.join(cache, "tmp")) == []


def test_a_copied_product_is_read_off_the_event_loop(fresh_engine, on_loop_thread):
    # A multi-file program's compiled tree (up to 20,000 files) is read from the
    # cache for each submission: not on the loop that supervises every other box.
    from stockade.engine import pipeline

    readers = on_loop_thread(pipeline, "_read_tree")
    files = zip_of({"compile": b"for i in $(seq 300); do echo $i > f$i; done\n", "run": b"cat f300\n"})
    result = fresh_engine.run_sync(Submission(89, additional_files=files))
    assert result.verdict is Verdict.ok and result.tests[0].run.stdout == b"300\n", result
    assert readers == [False]
