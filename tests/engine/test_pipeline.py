"""The engine with the real box: per-test verdicts, stop-at-first-failure,
judging through the pipeline, number_of_runs, the compile cache (hits, bounds,
concurrency), shell-injection attempts, additional files, and Judge0's two
pseudo-languages (44 Executable, 89 Multi-file program)."""

from __future__ import annotations

import asyncio
import io
import stat
import subprocess
import zipfile

import pytest

from stockade.engine import Submission, TestCase, Verdict
from stockade.errors import InvalidSubmission, UnknownRuntime
from stockade.sandbox import Limits, Status
from tests.conftest import leftovers
from tests.engine import support

ADD = b"""
#include <stdio.h>
int main(void) { long a, b; if (scanf("%ld %ld", &a, &b) != 2) return 7; printf("%ld\\n", a + b); return 0; }
"""

ARGV_C = b"""
#include <stdio.h>
#ifndef TAG
#define TAG "none"
#endif
int main(int argc, char **argv) {
    printf("tag=[%s]\\n", TAG);
    for (int i = 1; i < argc; i++) printf("arg=[%s]\\n", argv[i]);
    return 0;
}
"""


@pytest.fixture(autouse=True)
def clean_after(sandbox):
    yield
    assert leftovers(sandbox) == []


def add_cases():
    return (TestCase(b"1 2\n", b"3\n", "one"), TestCase(b"5 5\n", b"11\n", "two"),
            TestCase(b"x\n", b"0\n", "three"), TestCase(b"100 1", b"101", "four"))


def test_per_test_verdicts_and_stop_at_first_failure(engine):
    result = engine.run_sync(Submission("c", ADD, tests=add_cases()))
    assert result.verdict is Verdict.wrong_answer and result.message == "wrong answer"
    assert [t.verdict for t in result.tests] == [Verdict.accepted, Verdict.wrong_answer]
    assert result.tests_total == 4


def test_run_all_keeps_every_verdict(engine):
    result = engine.run_sync(Submission("c", ADD, tests=add_cases(), stop_at_first_failure=False))
    assert [t.verdict for t in result.tests] == [Verdict.accepted, Verdict.wrong_answer,
                                                 Verdict.runtime_error, Verdict.accepted]
    assert [t.name for t in result.tests] == ["one", "two", "three", "four"]
    assert result.tests[2].run.exit_code == 7
    assert result.verdict is Verdict.wrong_answer  # the first failing test's


def test_judging_rules_through_the_engine(engine):
    code = b'print("3   ")\nprint()\nprint()'
    tests = (TestCase(b"", b"3\n"),)
    assert engine.run_sync(Submission("python3", code, tests=tests)).verdict is Verdict.accepted
    assert engine.run_sync(Submission("python3", code, tests=tests, exact=True)).verdict is Verdict.wrong_answer
    exact = (TestCase(b"", b"3   \n\n\n"),)
    assert engine.run_sync(Submission("python3", code, tests=exact, exact=True)).verdict is Verdict.accepted


def test_no_expected_output_gives_ok(engine):
    result = engine.run_sync(Submission("python3", b"print(input())", tests=(TestCase(b"hi\n"),)))
    assert result.verdict is Verdict.ok and result.tests[0].run.stdout == b"hi\n"


def test_number_of_runs_repeats_and_averages(engine):
    code = b"import time\nt = time.process_time()\nwhile time.process_time() - t < 0.05: pass\nprint('x')"
    result = engine.run_sync(Submission("python3", code, number_of_runs=3))
    test = result.tests[0]
    assert test.runs == 3 and test.verdict is Verdict.ok
    assert 0.05 <= test.run.time < 1.0 and test.run.memory > 0
    # A failing run stops the repetition.
    failing = engine.run_sync(Submission("python3", b"raise SystemExit(4)", number_of_runs=5))
    assert failing.tests[0].runs == 1 and failing.tests[0].run.exit_code == 4
    with pytest.raises(InvalidSubmission):
        engine.run_sync(Submission("python3", b"", number_of_runs=0))


def test_redirect_stderr_to_stdout(engine):
    """One stream, as isolate's --stderr-to-stdout: the writes in their order
    (stderr was appended after the run: "a c b"), under one output limit."""
    code = (b"import sys\nprint('a', flush=True)\nprint('b', file=sys.stderr, flush=True)\n"
            b"print('c', flush=True)\nprint('d', file=sys.stderr)")
    result = engine.run_sync(Submission("python3", code, redirect_stderr_to_stdout=True))
    run = result.tests[0].run
    assert run.stdout == b"a\nb\nc\nd\n" and run.stderr == b""
    # 600 KiB on each stream: 1200 KiB in the one stream, past a 1 MiB output limit.
    code = b"import sys\nsys.stdout.write('o' * 614400)\nsys.stdout.flush()\nsys.stderr.write('e' * 614400)"
    limits = Limits(output=1024 * 1024)
    result = engine.run_sync(Submission("python3", code, run_limits=limits, redirect_stderr_to_stdout=True))
    run = result.tests[0].run
    assert result.verdict is Verdict.output_limit and run.stdout_truncated, run.status
    assert len(run.stdout) == 1024 * 1024 and run.stdout.endswith(b"e") and run.stderr == b""


def test_second_run_of_the_same_program_does_not_compile(engine):
    source = b"#include <iostream>\nint main(){std::cout<<\"cached " + str(id(engine)).encode() + b"\\n\";}"
    first = engine.run_sync(Submission("cpp", source))
    second = engine.run_sync(Submission("cpp", source))
    assert first.verdict is Verdict.ok and second.verdict is Verdict.ok
    assert first.compile_run is not None and not first.compile_cached
    assert second.compile_run is None and second.compile_cached
    assert first.tests[0].run.stdout == second.tests[0].run.stdout
    # Different options or additional files are a different product.
    third = engine.run_sync(Submission("cpp", source, compiler_options="-O0"))
    assert not third.compile_cached


def test_identical_concurrent_submissions_compile_once(sandbox):
    engine, path = support.make_engine(sandbox)
    try:
        source = b"int main(void) { return 0; }"

        async def go():
            return await asyncio.gather(*(engine.run(Submission("c", source)) for _ in range(4)))

        results = asyncio.run(go())
        assert all(r.verdict is Verdict.ok for r in results)
        assert engine.cache.misses == 1 and engine.cache.hits == 3
        assert sum(1 for r in results if r.compile_run is not None) == 1
    finally:
        support.remove(path)


def test_cache_stays_within_its_bound(sandbox):
    engine, path = support.make_engine(sandbox, cache_size=40_000)  # a couple of small C binaries
    try:
        for n in range(4):
            source = b"int main(void) { return %d; }" % n
            assert engine.run_sync(Submission("c", source)).verdict is (Verdict.ok if n == 0 else Verdict.runtime_error)
        assert engine.cache.total_size() <= 40_000
        # The first one was evicted: it compiles again.
        again = engine.run_sync(Submission("c", b"int main(void) { return 0; }"))
        assert not again.compile_cached
    finally:
        support.remove(path)


@pytest.mark.parametrize("options, tag", [
    ("-DTAG='\"; rm -rf /\"'", "; rm -rf /"),
    ("-DTAG='\"$(touch /box/pwned)\"' -DX=`id`", "$(touch /box/pwned)"),
    ("-DTAG='\"a && b || c > d\"'", "a && b || c > d"),
])
def test_compiler_options_are_argv_items_not_shell(engine, options, tag):
    result = engine.run_sync(Submission("c", ARGV_C, compiler_options=options))
    assert result.verdict is Verdict.ok, result.compile_output
    assert result.tests[0].run.stdout.split(b"\n")[0] == f"tag=[{tag}]".encode()


def test_a_newline_in_compiler_options_stays_inside_one_item(engine):
    # A shell would run `b"` as a second command; gcc instead sees one -D with a newline.
    result = engine.run_sync(Submission("c", ARGV_C, compiler_options="-DTAG='\"a\nb\"'"))
    assert result.verdict is Verdict.compile_error
    assert b"<command-line>" in result.compile_output and b"missing terminating" in result.compile_output


def test_arguments_with_shell_syntax_arrive_literally(engine):
    args = "'; rm -rf /' '$(id)' '`id`' '\n' '&&' 'a|b' '>out'"
    result = engine.run_sync(Submission("c", ARGV_C, arguments=args))
    lines = result.tests[0].run.stdout.decode()
    for word in ("; rm -rf /", "$(id)", "`id`", "&&", "a|b", ">out"):
        assert f"arg=[{word}]" in lines
    assert "arg=[\n]" in lines


def test_unbalanced_quotes_and_bad_requests_are_user_errors(engine):
    with pytest.raises(InvalidSubmission, match="compiler options"):
        engine.run_sync(Submission("c", ARGV_C, compiler_options="-DTAG='x"))
    with pytest.raises(InvalidSubmission, match="program arguments"):
        engine.run_sync(Submission("c", ARGV_C, arguments='"open'))
    with pytest.raises(InvalidSubmission, match="does not compile"):
        engine.run_sync(Submission("python3", b"", compiler_options="-O2"))
    with pytest.raises(UnknownRuntime):
        engine.run_sync(Submission("cobol", b""))
    with pytest.raises(UnknownRuntime):
        engine.run_sync(Submission(9999, b""))


def test_a_runtime_whose_toolchain_is_missing_is_never_run(sandbox, tmp_path):
    from stockade.engine import Engine
    from stockade.runtimes import Catalog

    path = tmp_path / "languages.toml"
    path.write_text('[ghost]\nname = "Ghost ({version})"\njudge0_ids = [999]\nsource_file = "x"\n'
                    'run = ["/usr/bin/ghost-language-not-installed", "{source}"]\n'
                    'probe = ["/usr/bin/ghost-language-not-installed", "--version"]\n')
    cache = support.cache_dir("stockade-test-ghost-")
    try:
        engine = Engine(sandbox, Catalog.load(path), cache_dir=cache)
        for runtime in ("ghost", 999):
            with pytest.raises(UnknownRuntime, match="not available here: .*not installed"):
                engine.run_sync(Submission(runtime, b"boo"))
    finally:
        support.remove(cache)


def test_judge0_ids_select_the_runtime(engine):
    for jid in (50, "52", 71):
        result = engine.run_sync(Submission(jid, b"int main(){return 0;}" if jid != 71 else b"pass"))
        assert result.verdict is Verdict.ok


def test_java_file_named_anything_runs_as_main(engine):
    source = b"public class Main { public static void main(String[] a) { System.out.println(a.length); } }"
    result = engine.run_sync(Submission(62, source, arguments="x y"))
    assert result.tests[0].run.stdout == b"2\n"


def zip_of(entries: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            entry = zipfile.ZipInfo(name)
            entry.external_attr = (stat.S_IFREG | (modes or {}).get(name, 0o644)) << 16
            archive.writestr(entry, data)
    return buffer.getvalue()


def test_additional_files_are_in_the_compile_and_run_boxes(engine):
    header = b"#define GREETING \"from the zip\"\n"
    source = b'#include "greet.h"\n#include <stdio.h>\nint main(void){FILE*f=fopen("data/in.txt","r");' \
             b'char b[64]={0};fread(b,1,63,f);printf("%s %s",GREETING,b);return 0;}'
    result = engine.run_sync(Submission("c", source, additional_files=zip_of(
        {"greet.h": header, "data/in.txt": b"and data\n"})))
    assert result.verdict is Verdict.ok, result.compile_output
    assert result.tests[0].run.stdout == b"from the zip and data\n"


def test_additional_files_change_the_cache_key(engine):
    source = b'#include "v.h"\nint main(void){return V;}'
    first = engine.run_sync(Submission("c", source, additional_files=zip_of({"v.h": b"#define V 0\n"})))
    second = engine.run_sync(Submission("c", source, additional_files=zip_of({"v.h": b"#define V 5\n"})))
    assert first.verdict is Verdict.ok
    assert second.verdict is Verdict.runtime_error and second.tests[0].run.exit_code == 5


def test_refused_zip_is_a_user_error(engine):
    evil = zip_of({"../../etc/cron.d/x": b"* * * * * root id\n"})
    with pytest.raises(InvalidSubmission, match="leaves the box"):
        engine.run_sync(Submission("python3", b"pass", additional_files=evil))


def test_executable_runs_a_binary_source(engine, tmp_path):
    src = tmp_path / "hello.c"
    src.write_text('#include <stdio.h>\nint main(int c, char **v){printf("static %d\\n", c);return 0;}\n')
    subprocess.run(["/usr/bin/gcc", "-static", "-O1", "-o", str(tmp_path / "a.out"), str(src)], check=True,
                   env={"PATH": "/usr/bin:/bin"})
    binary = (tmp_path / "a.out").read_bytes()
    result = engine.run_sync(Submission(44, binary, arguments="a b"))
    assert result.verdict is Verdict.ok and result.tests[0].run.stdout == b"static 3\n"


def test_multifile_program_compiles_and_runs_its_scripts(engine):
    files = {
        "compile": b"gcc -O2 -o prog main.c \"$@\"\n",
        "run": b"./prog \"$@\"\n",
        "main.c": b'#include <stdio.h>\nint main(int c,char**v){int x;scanf("%d",&x);printf("%d %s\\n",x*2,c>1?v[1]:"-");}',
    }
    result = engine.run_sync(Submission(89, b"", additional_files=zip_of(files), arguments="'a b'",
                                        tests=(TestCase(b"21\n", b"42 a b\n"),)))
    assert result.verdict is Verdict.accepted, (result.compile_output, result.tests)
    # Without a compile script it just runs.
    result = engine.run_sync(Submission(89, b"", additional_files=zip_of({"run": b"echo plain\n"})))
    assert result.tests[0].run.stdout == b"plain\n" and result.compile_run is None
    # Judge0's other names, preferred when both are there: compile.sh, run.sh.
    result = engine.run_sync(Submission(89, b"", additional_files=zip_of(
        {"compile.sh": b"echo sh > made\n", "compile": b"echo plain > made\n",
         "run.sh": b"cat made\n", "run": b"echo plain\n"})))
    assert result.tests[0].run.stdout == b"sh\n"
    # No run script at all: bash says so, a runtime error (Judge0 runs `bash run.sh` too).
    result = engine.run_sync(Submission(89, b"", additional_files=zip_of({"other": b""})))
    assert result.verdict is Verdict.runtime_error and result.tests[0].run.exit_code == 127
    assert b"run.sh: No such file" in result.tests[0].run.stderr


def test_compile_output_is_bounded(engine):
    # Thousands of errors (hundreds of KB of messages): the first 64 KiB, and a word that it was cut.
    source = b"int main(void) {\n" + b"".join(b"    undeclared_%d;\n" % n for n in range(3000)) + b"}\n"
    result = engine.run_sync(Submission("c", source, compiler_options="-fmax-errors=0"))
    assert result.verdict is Verdict.compile_error
    assert result.compile_output.startswith(b"main.c: In function")
    assert result.compile_output.endswith(b"\n[compile output truncated]\n")
    assert len(result.compile_output) <= 64 * 1024 + 64


def test_compile_limits_apply_to_the_compiler(engine):
    # A compile-time bomb: template recursion that takes far more than 1 s of CPU.
    source = b"""
template<int N> struct F { static const long v = F<N-1>::v + F<N-2>::v; };
template<> struct F<0> { static const long v = 0; };
template<> struct F<1> { static const long v = 1; };
int main() { return F<100000>::v; }
"""
    result = engine.run_sync(Submission("cpp", source, compiler_options="-ftemplate-depth=200000",
                                        compile_limits=Limits(cpu_time=1, wall_time=5)))
    assert result.verdict is Verdict.compile_error
    assert result.compile_run.status in (Status.time_limit, Status.runtime_error, Status.memory_limit)


def test_progress_is_reported(engine):
    seen = []
    engine.run_sync(Submission("python3", b"print(1)", tests=(TestCase(), TestCase(), TestCase())),
                    progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_programs_may_reopen_dev_stdin(engine):
    # Common in judge solutions: JavaScript's readFileSync("/dev/stdin").
    code = b'const s = require("fs").readFileSync("/dev/stdin", "utf8"); console.log(s.trim().length)'
    result = engine.run_sync(Submission("javascript", code, tests=(TestCase(b"abcd\n", b"4\n"),)))
    assert result.verdict is Verdict.accepted
