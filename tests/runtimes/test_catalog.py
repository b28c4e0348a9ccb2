"""The catalog as data: ids, lookups, argv templates, limit adjustments, and
what counts as installed. Pure (the probes run, but no box)."""

from __future__ import annotations

import os
import textwrap

import pytest

from stockade.errors import InvalidSubmission, UnknownRuntime
from stockade.runtimes import Catalog, split_words
from stockade.runtimes import catalog as catalog_module
from stockade.sandbox import Limits, MiB

# Judge0 CE 1.13.1 ids of each family Stockade ships (the spec's and the SDK's;
# 75 and 76 are 1.13.1's Clang C and C++, run by GCC here).
FAMILIES = {
    "python3": {71}, "c": {48, 49, 50, 75}, "cpp": {52, 53, 54, 76}, "java": {62}, "javascript": {63},
    "bash": {46}, "rust": {73}, "go": {60}, "ruby": {72}, "php": {68}, "perl": {85}, "lua": {64},
    "executable": {44}, "multifile": {89},
}


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load()


def write_catalog(tmp_path, text: str) -> str:
    path = tmp_path / "languages.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_every_family_id_resolves_to_its_runtime(catalog):
    for key, ids in FAMILIES.items():
        runtime = catalog.get(key)
        assert ids <= set(runtime.judge0_ids)
        for jid in ids:
            assert catalog.get(jid) is runtime and catalog.get(str(jid)) is runtime
    # The newest id of a family comes first (the API's /languages lists it).
    assert catalog.get("c").judge0_ids[0] == 50 and catalog.get("cpp").judge0_ids[0] == 54


def test_python2_is_not_python3(catalog):
    with pytest.raises(UnknownRuntime):
        catalog.get(70)


def test_lookup_by_alias_extension_and_file(catalog):
    assert catalog.get("C++").key == "cpp" and catalog.get("python").key == "python3"
    assert catalog.get("node").key == "javascript"
    assert catalog.by_extension(".CPP").key == "cpp" and catalog.by_extension("rs").key == "rust"
    assert catalog.for_file("main.java").key == "java"
    # As GCC reads them: .c is C, .C is C++; otherwise case does not matter.
    assert catalog.for_file("x.c").key == "c" and catalog.for_file("x.C").key == "cpp"
    assert catalog.for_file("X.PY").key == "python3"
    # Digits other than ASCII's are no Judge0 id: "²" passed str.isdigit and
    # int() refused it (a traceback from `stockade run -l ²`), "٧١" ran as 71.
    for bad in ("cobol", 9999, "", True, "²", "1²", "٧١"):
        with pytest.raises(UnknownRuntime):
            catalog.get(bad)
    with pytest.raises(UnknownRuntime):
        catalog.by_extension(".xyz")
    with pytest.raises(UnknownRuntime):
        catalog.for_file("Makefile")


def test_runtime_values_are_frozen_and_complete(catalog):
    for rt in catalog:
        assert rt.key and rt.name and rt.run_argv
        assert rt.is_compiled == (rt.compile_argv is not None)
        assert isinstance(rt.judge0_ids, tuple)
        with pytest.raises(AttributeError):
            rt.key = "x"  # type: ignore[misc]
    assert [rt.key for rt in catalog][:3] == ["python3", "c", "cpp"]


def test_toolchains_resolve_inside_the_system_tree(catalog):
    for rt in catalog.available():
        for argv in (rt.compile_argv, rt.run_argv):
            if argv and argv[0].startswith("/") and not argv[0].startswith("/box"):
                assert argv[0].startswith("/usr/"), (rt.key, argv[0])
                assert os.path.realpath(argv[0]) == argv[0]  # alternatives links resolved


def test_user_words_are_literal_argv_items(catalog):
    cpp = catalog.get("cpp")
    hostile = "-O2 '; rm -rf /' \"$(id)\" '{source}' 'a\nb' `uname`"
    argv = cpp.compile_command(hostile)
    assert argv[0].startswith("/usr/bin/")
    for word in ("; rm -rf /", "$(id)", "{source}", "a\nb", "`uname`"):
        assert word in argv
    assert argv.count("main.cpp") == 1  # the user's "{source}" was not expanded
    run = cpp.run_command("x 'y z' ''")
    assert run[-3:] == ["x", "y z", ""]


def test_unbalanced_quotes_are_a_user_error(catalog):
    for text in ("'open", 'a "b', "trailing\\"):
        with pytest.raises(InvalidSubmission):
            split_words(text, "program arguments")
        with pytest.raises(ValueError):  # InvalidSubmission is a LimitError is a ValueError
            catalog.get("c").compile_command(text)
    assert split_words("", "x") == [] and split_words(None, "x") == []


def test_jvm_heap_follows_the_memory_limit(catalog):
    java = catalog.get("java")
    small = java.run_command("", Limits(memory=128 * MiB))
    big = java.run_command("", Limits(memory=1024 * MiB))
    heap = lambda argv: int(next(a for a in argv if a.startswith("-Xmx"))[4:-1])  # noqa: E731
    assert heap(small) < 128 and heap(big) < 1024 and heap(big) > heap(small) * 4
    # The JVM beside its heap is about fixed: at Judge0's 125 MiB the heap is the
    # limit minus heap_reserve (28 MiB), not 60% of it; a small limit keeps the share.
    assert heap(java.run_command("", Limits(memory=125 * MiB))) == 97
    assert heap(java.run_command("", Limits(memory=48 * MiB))) == 28
    assert "-Xss65536k" in java.run_command("", Limits(stack=64 * MiB))
    # V8 checks its own stack size: 7/8 of the limit, under the rlimit with room to spare.
    assert "--stack-size=57344" in catalog.get("javascript").run_command("", Limits(stack=64 * MiB))


def test_memory_error_is_found_at_either_end_of_stderr(catalog):
    go = catalog.get("go")
    stacks = b"goroutine 7 [running]:\nmain.main()\n" * 10000  # ~300 KB of stacks after it
    assert go.is_memory_error(b"fatal error: runtime: out of memory\n\n" + stacks)
    assert go.is_memory_error(b"runtime: out of memory: cannot allocate 140737488355328-byte block"
                              b" (3964928 in use)\nfatal error: out of memory\n\n" + stacks)
    assert not go.is_memory_error(b"panic: runtime error: index out of range\n\n" + stacks)
    assert catalog.get("cpp").is_memory_error(
        b"terminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc\n")


def test_limit_minimums_raise_but_never_lower(catalog):
    java = catalog.get("java")
    low = Limits(processes=4, memory=64 * MiB)
    raised = java.adjust_compile_limits(low)
    assert raised.processes >= 64 and raised.memory >= 512 * MiB
    assert java.adjust_run_limits(low).processes == 32
    assert java.adjust_run_limits(low).memory == 64 * MiB  # the run's memory limit is the user's
    high = Limits(processes=100)
    assert java.adjust_run_limits(high) is high


def test_go_environment_is_filled_from_the_limits(catalog):
    env = catalog.get("go").environment(Limits(memory=200 * MiB))
    assert env["GOCACHE"].startswith("/tmp/") and env["GOMEMLIMIT"] == "160MiB"


def test_missing_toolchain_is_reported_not_offered(tmp_path):
    path = write_catalog(tmp_path, """
        [ghost]
        name = "Ghost ({version})"
        judge0_ids = [999]
        extensions = [".ghost"]
        source_file = "main.ghost"
        run = ["/usr/bin/ghost-language-not-installed", "{source}"]
        probe = ["/usr/bin/ghost-language-not-installed", "--version"]
        packages = ["ghost-lang"]
    """)
    ghost = Catalog.load(path).get("ghost")
    assert not ghost.available
    assert "not installed" in ghost.reason and "ghost-lang" in ghost.reason
    assert ghost.describe()["available"] is False


def test_toolchain_outside_usr_is_refused(tmp_path):
    fake = tmp_path / "python3"
    os.symlink("/usr/bin/python3", fake)  # resolves into /usr, but...
    outside = tmp_path / "tool"
    outside.write_text("#!/bin/sh\n")
    outside.chmod(0o755)
    path = write_catalog(tmp_path, f"""
        [local]
        name = "Local"
        run = ["{outside}", "{{source}}"]
        source_file = "x"
        [linked]
        name = "Linked ({{version}})"
        run = ["{fake}", "{{source}}"]
        source_file = "x"
        probe = ["{fake}", "--version"]
        version_regex = 'Python (\\S+)'
    """)
    catalog = Catalog.load(path)
    assert not catalog.get("local").available and "outside the system tree" in catalog.get("local").reason
    linked = catalog.get("linked")  # a link into /usr is fine, and resolved
    assert linked.available and linked.run_argv[0].startswith("/usr/bin/python3")


def test_failed_probe_makes_a_runtime_unavailable(tmp_path):
    path = write_catalog(tmp_path, """
        [broken]
        name = "Broken ({version})"
        source_file = "x"
        run = ["/usr/bin/false"]
        probe = ["/usr/bin/false"]
    """)
    broken = Catalog.load(path).get("broken")
    assert not broken.available and "probe" in broken.reason


def test_word_placeholders_must_be_whole_items(tmp_path):
    path = write_catalog(tmp_path, """
        [bad]
        name = "Bad"
        source_file = "x"
        run = ["/usr/bin/true", "--flag={args}"]
    """)
    with pytest.raises(ValueError, match="whole argv item"):
        Catalog.load(path)


def test_duplicate_judge0_ids_are_refused(tmp_path):
    path = write_catalog(tmp_path, """
        [a]
        name = "A"
        judge0_ids = [1]
        run = ["/usr/bin/true"]
        [b]
        name = "B"
        judge0_ids = [1]
        run = ["/usr/bin/true"]
    """)
    with pytest.raises(ValueError, match="twice"):
        Catalog.load(path)


def test_probes_are_cached_within_the_process(monkeypatch):
    Catalog.load()  # warm
    calls = []
    real = catalog_module.subprocess.run
    monkeypatch.setattr(catalog_module.subprocess, "run", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = Catalog.load()
    assert calls == [] and len(again) == len(FAMILIES)


def test_probes_outlive_the_process_in_a_file_only_we_can_write(monkeypatch, tmp_path):
    # `stockade run` starts a new process each time: without the file, every
    # one of them ran a dozen compilers and interpreters for their versions.
    cache = str(tmp_path / "state" / "probes.json")
    monkeypatch.setattr(catalog_module, "_probe_cache", {})
    first = Catalog.load(probe_cache=cache)
    assert os.path.exists(cache)
    calls = []
    real = catalog_module.subprocess.run
    monkeypatch.setattr(catalog_module.subprocess, "run", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(catalog_module, "_probe_cache", {})  # as a new process
    again = Catalog.load(probe_cache=cache)
    assert calls == []
    assert [rt.name for rt in again] == [rt.name for rt in first] and again.get("python3").version
    # A file others could have written is not believed (a version is part of the compile cache's key).
    os.chmod(cache, 0o666)
    monkeypatch.setattr(catalog_module, "_probe_cache", {})
    Catalog.load(probe_cache=cache)
    assert calls, "probed again"
