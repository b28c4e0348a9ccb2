"""The CLI commands of the engine: `stockade languages`, `stockade run` for a
compiled language (--compiler-options, --args, compile_output) and
`stockade judge`. Run as real processes, as other tools drive them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine import support
from tests.runtimes import available
from tests.runtimes.test_conformance import CASES, RUNTIMES, TRICKY_ARGS, TRICKY_ARGV

STOCKADE = str(Path(sys.executable).with_name("stockade"))


@pytest.fixture(scope="module")
def env():
    path = support.cache_dir("stockade-cli-cache-")
    yield {**os.environ, "STOCKADE_CACHE_DIR": path}
    support.remove(path)


def stockade(env, *args, stdin: bytes = b""):
    return subprocess.run([STOCKADE, *args], input=stdin, capture_output=True, env=env, timeout=120)


def test_languages_json(env):
    proc = stockade(env, "languages", "--json")
    assert proc.returncode == 0
    listing = json.loads(proc.stdout)
    by_key = {item["key"]: item for item in listing}
    assert {"python3", "c", "cpp", "java", "javascript", "bash", "rust", "go", "ruby", "php", "perl",
            "lua"} <= set(by_key)
    for item in listing:
        assert {"id", "name", "extensions", "available", "reason"} <= set(item)
        assert isinstance(item["available"], bool)
    assert by_key["cpp"]["id"] == 54 and 52 in by_key["cpp"]["judge0_ids"]
    table = stockade(env, "languages")
    assert table.returncode == 0 and b"C++ (GCC" in table.stdout


def test_run_a_java_file_with_any_name(env, tmp_path):
    source = tmp_path / "solution.java"
    source.write_text("public class Main { public static void main(String[] a) {"
                      " System.out.println(new java.util.Scanner(System.in).nextInt() * 2 + \" \""
                      " + String.join(\",\", a)); } }")
    proc = stockade(env, "run", str(source), "--stdin", "-", "--args", "x 'y z'", "--json", stdin=b"21\n")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["stdout"] == "42 x,y z\n"
    assert set(result) == {"status", "exit_code", "signal", "stdout", "stderr", "stdout_truncated",
                           "stderr_truncated", "time", "wall_time", "memory", "compile_output"}


@pytest.mark.parametrize("key", RUNTIMES)
def test_run_works_for_every_runtime(env, tmp_path, catalog, key):
    # The conformance suite drives the engine; this drives `stockade run` as a
    # user does: the language from FILE's extension, FILE named otherwise than
    # the runtime's source file, compiled first where needed, --args split as
    # a shell would split them.
    available(catalog, key)
    (case,) = (CASES / key).glob("argv.*")
    program = tmp_path / f"solution{case.suffix}"
    program.write_bytes(case.read_bytes())
    proc = stockade(env, "run", str(program), "--args", TRICKY_ARGS, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["stdout"] == "|".join(TRICKY_ARGV) + "\n", result


def test_run_with_compiler_options_and_a_compile_error(env, tmp_path):
    source = tmp_path / "prog.cpp"
    source.write_text('#include <cstdio>\nint main(){ std::printf("%s\\n", MSG); }\n')
    ok = stockade(env, "run", str(source), "--compiler-options", "-DMSG='\"hi; rm -rf /\"'", "--json")
    assert json.loads(ok.stdout)["stdout"] == "hi; rm -rf /\n"
    broken = stockade(env, "run", str(source), "--json")
    result = json.loads(broken.stdout)
    assert broken.returncode == 0
    assert result["status"] == "compile_error" and "MSG" in result["compile_output"]
    assert result["stdout"] == "" and result["exit_code"] not in (0, None)
    plain = stockade(env, "run", str(source))
    assert plain.returncode == 0 and b"status=compile_error" in plain.stderr and b"MSG" in plain.stderr
    # A compile that succeeds with warnings shows them too, before the program's output.
    warned = tmp_path / "warned.c"
    warned.write_text('#include <stdio.h>\nint main(void){ int unused; puts("hi"); return 0; }\n')
    plain = stockade(env, "run", str(warned), "--compiler-options", "-Wall")
    assert plain.returncode == 0 and plain.stdout == b"hi\n"
    assert plain.stderr.startswith(b"main.c: In function") and b"unused variable" in plain.stderr, plain.stderr
    assert plain.stderr.count(b"\n[stockade] status=ok ") == 1


def test_run_keeps_the_sandbox_contract(env, tmp_path):
    source = tmp_path / "x.py"
    source.write_text("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n")
    proc = stockade(env, "run", str(source))
    assert proc.returncode == 0 and proc.stdout == b"out\n"
    assert proc.stderr.startswith(b"err\n") and b"status=runtime_error" in proc.stderr
    for bad in (["run", str(source), "--language", "cobol"], ["run", str(tmp_path / "missing.c")],
                ["run", str(source), "--args", "'unbalanced"], ["run", str(source), "--memory", "lots"]):
        proc = stockade(env, *bad)
        assert proc.returncode == 2 and proc.stderr.startswith(b"stockade: "), bad


def test_judge_a_directory_of_tests(env, tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    for name, stdin, out in (("1", "1 2\n", "3\n"), ("2", "2 2\n", "4\n"), ("10", "7 1\n", "8  \n\n")):
        (tests / f"{name}.in").write_text(stdin)
        (tests / f"{name}.out").write_text(out)
    good = tmp_path / "add.c"
    good.write_text('#include <stdio.h>\nint main(void){long a,b;scanf("%ld %ld",&a,&b);printf("%ld\\n",a+b);}\n')
    proc = stockade(env, "judge", str(good), "--tests", str(tests))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(b"accepted") >= 3 and b"3/3 accepted" in proc.stdout
    bad = tmp_path / "mul.c"
    bad.write_text('#include <stdio.h>\nint main(void){long a,b;scanf("%ld %ld",&a,&b);printf("%ld\\n",a*b);}\n')
    proc = stockade(env, "judge", str(bad), "--tests", str(tests), "--json")
    assert proc.returncode != 0
    report = json.loads(proc.stdout)
    assert [t["name"] for t in report["tests"]] == ["1", "2", "10"]  # natural order
    assert [t["verdict"] for t in report["tests"]] == ["wrong_answer", "accepted", "wrong_answer"]
    assert [t["message"] for t in report["tests"]] == ["wrong answer", "", "wrong answer"]
    assert report["verdict"] == "wrong_answer"
    assert stockade(env, "judge", str(good), "--tests", str(tmp_path / "nope")).returncode == 2
    # The limits `stockade run` takes, per test.
    proc = stockade(env, "judge", str(good), "--tests", str(tests), "--processes", "0")
    assert proc.returncode == 2 and proc.stderr.startswith(b"stockade: --processes must be between 1 and "), proc.stderr
    proc = stockade(env, "judge", str(good), "--tests", str(tests), "--output", "1", "--json")
    assert proc.returncode == 3 and json.loads(proc.stdout)["verdict"] == "output_limit", proc.stdout


def test_usage_errors_are_one_line(env, tmp_path):
    # What the option parser itself refuses, too: one line, exit 2, no usage block or panel.
    source = tmp_path / "x.py"
    source.write_text("print('x')\n")
    for bad, words in ((["run", str(source), "--cpu-time", "abc"], b"'--cpu-time'"),
                       (["run", str(source), "--processes", "1.5"], b"'--processes'"),
                       (["run"], b"Missing argument"),
                       (["run", str(source), "--bogus"], b"No such option: --bogus"),
                       (["judge", str(source)], b"Missing option '--tests'"),
                       (["bogus"], b"No such command 'bogus'"),
                       (["run", str(source), "--stdin", ""], b"--stdin needs a file name")):
        proc = stockade(env, *bad)
        assert proc.returncode == 2 and proc.stdout == b"", (bad, proc)
        assert proc.stderr.startswith(b"stockade: ") and proc.stderr.count(b"\n") == 1, (bad, proc.stderr)
        assert words in proc.stderr, (bad, proc.stderr)
    assert stockade(env, "run", "--help").returncode == 0
    # A limit out of range is named as the option that set it.
    proc = stockade(env, "run", str(source), "--cpu-time", "-1")
    assert proc.returncode == 2 and proc.stderr == b"stockade: --cpu-time must be a positive number of seconds, got -1.0\n"
    # Too long is said as such (it said "a positive number" of 100000.0).
    proc = stockade(env, "run", str(source), "--wall-time", "100000")
    assert proc.returncode == 2 and proc.stderr == b"stockade: --wall-time must be at most 86400 seconds (a day), got 100000.0\n"
    proc = stockade(env, "run", str(source), "--output", "2G")
    assert proc.returncode == 2 and proc.stderr.startswith(b"stockade: --output must be at most 1 GiB"), proc.stderr


def test_output_that_cannot_be_written_is_one_line_and_exit_1(env, tmp_path):
    source = tmp_path / "x.py"
    source.write_text("print('x')\n")
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([STOCKADE, "run", str(source), "--json"], stdout=full, stderr=subprocess.PIPE,
                              env=env, timeout=120)
    assert proc.returncode == 1 and proc.stderr == b"stockade: cannot write the output: No space left on device\n"
    # The same for the other commands' tables and JSON (they were tracebacks).
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "1.in").write_text("")
    (tests / "1.out").write_text("x\n")
    for command in (["judge", str(source), "--tests", str(tests)], ["judge", str(source), "--tests", str(tests), "--json"],
                    ["languages"], ["languages", "--json"]):
        with open("/dev/full", "wb") as full:
            proc = subprocess.run([STOCKADE, *command], stdout=full, stderr=subprocess.PIPE, env=env, timeout=120)
        assert proc.returncode == 1, (command, proc.stderr)
        assert proc.stderr == b"stockade: cannot write the output: No space left on device\n", (command, proc.stderr)
    # No stdin at all (closed by the caller) with --stdin -: a usage error, not a traceback.
    proc = subprocess.run([STOCKADE, "run", str(source), "--stdin", "-"], stdin=subprocess.DEVNULL,
                          capture_output=True, env=env, timeout=120, preexec_fn=lambda: os.close(0))
    assert proc.returncode == 2 and proc.stderr == b"stockade: cannot read stdin: Bad file descriptor\n"


def test_a_non_blocking_stdout_gets_all_of_the_output(env, tmp_path):
    # Some parents (node) hand out non-blocking pipes: a lone write kept 64 KiB of it.
    source = tmp_path / "big.py"
    source.write_text("import sys\nsys.stdout.write('x' * 3_000_000)\n")
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        proc = subprocess.Popen([STOCKADE, "run", str(source), "--output", "10M"], stdout=w,
                                stderr=subprocess.PIPE, env=env)
        os.close(w)
        w = -1
        time.sleep(1)  # (let it find the pipe full)
        with os.fdopen(r, "rb") as out:
            r = -1
            data = out.read()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
        assert data == b"x" * 3_000_000
    finally:
        for fd in (r, w):
            if fd != -1:
                os.close(fd)


def test_languages_piped_shows_every_status_whole(env):
    # Piped (not a terminal), nothing is cut to fit 80 columns: the status says
    # "available", or what is missing, in full.
    listed = json.loads(stockade(env, "languages", "--json").stdout)
    lines = stockade(env, "languages").stdout.decode().splitlines()
    for runtime in listed:
        line = next(line for line in lines if f"  {runtime['key']}  " in line)
        expected = "available" if runtime["available"] else f"unavailable: {runtime['reason']}"
        assert line.rstrip().endswith(expected), (line, expected)


def test_bad_settings_are_one_line_naming_the_variable(env, tmp_path):
    source = tmp_path / "x.py"
    source.write_text("print('x')\n")
    proc = stockade({**env, "STOCKADE_CACHE_SIZE": "lots"}, "run", str(source))
    assert proc.returncode == 2 and proc.stderr == (
        b"stockade: invalid settings: cache_size (STOCKADE_CACHE_SIZE): Input should be a valid integer,"
        b" unable to parse string as an integer, got 'lots'\n")
    missing = tmp_path / "nope.toml"
    proc = stockade({**env, "STOCKADE_CONFIG_FILE": str(missing)}, "run", str(source))
    assert proc.returncode == 2 and proc.stderr == f"stockade: invalid settings: config file {missing} does not exist\n".encode()
    proc = stockade({**env, "STOCKADE_CONFIG_FILE": str(tmp_path)}, "run", str(source))
    assert proc.returncode == 2 and proc.stderr == f"stockade: invalid settings: config file {tmp_path} is not a file\n".encode()
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    proc = stockade({**env, "STOCKADE_CONFIG_FILE": str(broken)}, "run", str(source))
    assert proc.returncode == 2 and proc.stderr == (f"stockade: invalid settings: config file {broken} is not valid"
                                                    " TOML: Invalid value (at line 1, column 8)\n").encode()
    # A bad value from the file is named as the file's (STOCKADE_CACHE_SIZE was never set).
    config = tmp_path / "stockade.toml"
    config.write_text('cache_size = "lots"\n')
    proc = stockade({**env, "STOCKADE_CONFIG_FILE": str(config)}, "run", str(source))
    assert proc.returncode == 2 and proc.stderr == (
        f"stockade: invalid settings: cache_size (cache_size in {config}): Input should be a valid integer,"
        " unable to parse string as an integer, got 'lots'\n").encode()
    # ...unless the variable overrides it: then the variable is what is wrong.
    proc = stockade({**env, "STOCKADE_CONFIG_FILE": str(config), "STOCKADE_CACHE_SIZE": "many"}, "run", str(source))
    assert proc.returncode == 2 and b"cache_size (STOCKADE_CACHE_SIZE): " in proc.stderr and b"'many'" in proc.stderr


def test_judge_shows_a_progress_bar_on_a_terminal(env, tmp_path):
    # On stderr, and only when it is a terminal: piped, redraws would fill a log.
    tests = tmp_path / "tests"
    tests.mkdir()
    for n in (1, 2, 3):
        (tests / f"{n}.in").write_text(f"{n}\n")
        (tests / f"{n}.out").write_text(f"{n}\n")
    source = tmp_path / "echo.py"
    source.write_text("print(input())\n")
    master, slave = os.openpty()  # our own pty, never the test's terminal
    try:
        proc = subprocess.Popen([STOCKADE, "judge", str(source), "--tests", str(tests)], stdout=subprocess.PIPE,
                                stderr=slave, env=env)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: stockade, the pty's last user, has closed it
                break
            if not chunk:
                break
            shown += chunk
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(master)
    assert proc.returncode == 0, shown
    assert b"judging" in shown and b"3/3" in shown, shown
    assert b"3/3 accepted" in out and b"judging" not in out
    piped = stockade(env, "judge", str(source), "--tests", str(tests))
    assert piped.returncode == 0 and piped.stderr == b""


def test_judge_sorts_any_test_names(env, tmp_path):
    # "²" is a digit to str.isdigit but no run of \d: the natural sort took
    # it for a number, and int() refused it (a traceback).
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ("10", "2", "²", "1²"):
        (tests / f"{name}.in").write_text(f"{name}\n")
        (tests / f"{name}.out").write_text(f"{name}\n")
    source = tmp_path / "echo.py"
    source.write_text("print(input())\n")
    proc = stockade(env, "judge", str(source), "--tests", str(tests), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [t["name"] for t in json.loads(proc.stdout)["tests"]] == ["1²", "2", "10", "²"]


def test_judge_json_names_a_non_utf8_test_in_utf8(env, tmp_path):
    # As stdout and stderr are: invalid bytes replaced. The name went out as
    # "\udce9", a lone surrogate that strict JSON parsers refuse.
    tests = tmp_path / "tests"
    tests.mkdir()
    for suffix in (".in", ".out"):
        (tests / os.fsdecode(b"caf\xe9" + suffix.encode())).write_text("x\n")
    source = tmp_path / "echo.py"
    source.write_text("print(input())\n")
    proc = stockade(env, "judge", str(source), "--tests", str(tests), "--json")
    assert proc.returncode == 0, proc.stderr
    assert b"\\ud" not in proc.stdout
    assert [t["name"] for t in json.loads(proc.stdout)["tests"]] == ["caf\ufffd"]


def test_judge_skips_no_test_without_a_word(env, tmp_path):
    source = tmp_path / "x.py"
    source.write_text("print(input())\n")

    def judge_dir(*files, links=()):
        tests = tmp_path / f"tests{len(list(tmp_path.iterdir()))}"
        tests.mkdir()
        for name in files:
            (tests / name).write_text("1\n")
        for name in links:
            (tests / name).symlink_to(tests / "nowhere")
        return stockade(env, "judge", str(source), "--tests", str(tests))

    orphan = judge_dir("1.in", "1.out", "2.out")
    assert orphan.returncode == 2 and orphan.stderr == b"stockade: no input for 2.out (need NAME.in)\n"
    broken = judge_dir("1.in", "1.out", "2.out", links=["2.in"])
    assert broken.returncode == 2
    assert broken.stderr == b"stockade: not a regular file (a directory, or a link to nothing?): 2.in\n"
    assert judge_dir("1.in", "1.out").returncode == 0
    # A file named just .in is a test without a name (it asked for ".in.out").
    nameless = judge_dir(".in", ".out", "1.in", "1.out")
    assert nameless.returncode == 2 and nameless.stderr.startswith(b"stockade: .in and .out in ")
    assert nameless.stderr.endswith(b": a test file needs a name before its extension (NAME.in, NAME.out)\n")


def test_judge_says_why_a_box_failed(env, tmp_path, monkeypatch, capfd):
    # Nothing a program does makes its box fail: the engine's answer is made up here.
    from stockade.cli import judge, main
    from stockade.engine.model import SubmissionResult, TestResult, Verdict
    from stockade.sandbox import RunResult, Status

    source = tmp_path / "x.py"
    source.write_text("print(input())\n")
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ("1", "2"):
        (tests / f"{name}.in").write_text("1\n")
        (tests / f"{name}.out").write_text("1\n")
    failed = RunResult(Status.sandbox_error, message="bwrap: cannot mount /box")
    outcome = SubmissionResult(Verdict.sandbox_error, message="bwrap: cannot mount /box", tests=(
        TestResult(Verdict.accepted, RunResult(Status.ok), name="1"),
        TestResult(Verdict.sandbox_error, failed, name="2")))
    monkeypatch.setattr(judge, "_run_with_progress", lambda *args, **kwargs: outcome)
    monkeypatch.setenv("STOCKADE_CACHE_DIR", env["STOCKADE_CACHE_DIR"])
    for extra in ((), ("--json",)):
        monkeypatch.setattr(sys, "argv", ["stockade", "judge", str(source), "--tests", str(tests), *extra])
        with pytest.raises(SystemExit) as exit:
            main()
        out, err = capfd.readouterr()
        assert exit.value.code == 1
        if extra:
            assert [t["message"] for t in json.loads(out)["tests"]] == ["", "bwrap: cannot mount /box"]
        else:
            assert "sandbox_error" in out
            assert err == "stockade: sandbox failure in test 2: bwrap: cannot mount /box\n", err
    # The compile box failed: no test ran.
    monkeypatch.setattr(judge, "_run_with_progress", lambda *args, **kwargs: SubmissionResult(
        Verdict.sandbox_error, message="the compile box failed"))
    monkeypatch.setattr(sys, "argv", ["stockade", "judge", str(source), "--tests", str(tests)])
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 1
    assert capfd.readouterr().err == "stockade: sandbox failure while compiling: the compile box failed\n"


def test_judge_piped_prints_names_and_compiler_lines_whole(env, tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    name = "a-very-long-test-name-" + "that-goes-on-" * 6 + "[bold]x"  # longer than 80 columns, and markup
    (tests / f"{name}.in").write_text("hi\n")
    (tests / f"{name}.out").write_text("hi\n")
    source = tmp_path / "echo.py"
    source.write_text("print(input())\n")
    proc = stockade(env, "judge", str(source), "--tests", str(tests))
    assert proc.returncode == 0 and name.encode() in proc.stdout, proc.stdout
    broken = tmp_path / "bad.c"
    broken.write_text("int main( {" + " " * 100 + "\n")
    proc = stockade(env, "judge", str(broken), "--tests", str(tests))
    assert proc.returncode == 3
    assert b"main.c:1:11: error: expected declaration specifiers or \xe2\x80\x98...\xe2\x80\x99 before \xe2\x80\x98{\xe2\x80\x99 token\n" in proc.stderr


def test_an_unusable_cache_directory_is_a_usage_error(env, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    source = tmp_path / "ok.c"
    source.write_text("int main(void){return 0;}\n")
    proc = stockade({**env, "STOCKADE_CACHE_DIR": str(private / "cache")}, "run", str(source))
    assert proc.returncode == 2 and proc.stderr.startswith(b"stockade: compile cache ")
    assert proc.stderr.endswith(b"(set STOCKADE_CACHE_DIR)\n"), proc.stderr


def test_run_says_why_the_compile_box_failed(env, tmp_path, monkeypatch, capfd):
    # The engine's answer when the compile box itself failed (Sandbox.run raised):
    # sandbox_error, no compile run, no test. It was an AttributeError traceback.
    from stockade.cli import main
    from stockade.cli import run as run_module
    from stockade.engine.model import SubmissionResult, Verdict

    source = tmp_path / "x.py"
    source.write_text("print(1)\n")
    outcome = SubmissionResult(Verdict.sandbox_error, message="the compile box failed: cgroup gone")

    def engine_run(coro):
        coro.close()
        return outcome

    monkeypatch.setattr(run_module, "run_cancellable", engine_run)
    monkeypatch.setenv("STOCKADE_CACHE_DIR", env["STOCKADE_CACHE_DIR"])
    for extra in ((), ("--json",)):
        monkeypatch.setattr(sys, "argv", ["stockade", "run", str(source), *extra])
        with pytest.raises(SystemExit) as exit:
            main()
        out, err = capfd.readouterr()
        assert exit.value.code == 1
        if extra:  # (still exactly one JSON object)
            assert json.loads(out)["status"] == "sandbox_error" and err == ""
        else:
            assert out == "" and err.endswith("(the compile box failed: cgroup gone)\n"
                                              "stockade: sandbox failure: the compile box failed: cgroup gone\n"), err
