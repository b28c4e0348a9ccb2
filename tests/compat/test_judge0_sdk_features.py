"""Every feature of the official Judge0 SDK (judge0==0.0.8), unchanged, against
a real Stockade server, answering as Judge0 CE 1.13.1 would. (The basics, auth
and batches of many are in test_judge0_sdk.py.)"""

from __future__ import annotations

import subprocess
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import judge0
import pytest
from judge0 import File, Filesystem, Status, Submission
from stockade_server import Server  # (tests/service: conftest.py puts it on the path)

MULTIFILE_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multifile"


@pytest.fixture(scope="module")
def client(sdk_server):
    return judge0.Client(sdk_server.url)


def filesystem(files: dict[str, str | bytes]) -> Filesystem:
    return Filesystem(content=[File(name=name, content=content) for name, content in files.items()])


def multi_file(client, files: dict[str, str | bytes], **kwargs) -> Submission:
    # The SDK always sends source_code (encode(None) raises), so a multi-file
    # program passes an empty one, which Judge0 takes as absent.
    return judge0.run(client=client, source_code="", language=judge0.MULTI_FILE,
                      additional_files=filesystem(files), **kwargs)


# ---------------------------------------------------------------- multi-file (89)


def test_multi_file_example_compiles_and_runs(client):
    files = {path.name: path.read_bytes() for path in MULTIFILE_EXAMPLE.iterdir()}
    # (Not "stockade": the SDK's Submission decodes any text that is valid base64.)
    result = multi_file(client, files, stdin="stock-ade")
    assert result.status == Status.ACCEPTED, (result.status, result.compile_output, result.stderr)
    assert result.stdout == "Hello, stock-ade!\n"


def test_multi_file_takes_judge0s_script_names(client):
    # Judge0 runs compile.sh or else compile, then run.sh or else run.
    result = multi_file(client, {"compile.sh": "echo built > made", "run.sh": "cat made"})
    assert result.status == Status.ACCEPTED and result.stdout == "built\n"
    result = multi_file(client, {"run.sh": "echo run.sh", "run": "echo run"})
    assert result.stdout == "run.sh\n"


def test_multi_file_without_a_run_script_is_a_runtime_error(client):
    # Judge0 accepts it and runs `bash run.sh`, which fails (exit 127): NZEC, not an internal error.
    result = multi_file(client, {"main.py": "print(1)"})
    assert result.status == Status.RUNTIME_ERROR_NZEC, (result.status, result.message)
    assert result.exit_code == 127 and "run.sh" in result.stderr


def test_multi_file_compile_failure(client):
    result = multi_file(client, {"compile": "echo broken; exit 2", "run": "echo never"})
    assert result.status == Status.COMPILATION_ERROR
    assert result.compile_output == "broken\n" and result.stdout is None


def test_multi_file_compile_out_of_time(client):
    # Judge0 puts its own words in compile_output. (The compile box's wall
    # clock limit is 30 s: this test waits that long, idle.)
    result = multi_file(client, {"compile": "echo started; exec sleep 600", "run": "echo never"})
    assert result.status == Status.COMPILATION_ERROR
    assert result.compile_output == "Compilation time limit exceeded." and result.message is None


# ---------------------------------------------------------------- statuses


SIGNALLED_C = {
    Status.RUNTIME_ERROR_SIGSEGV: ("int main(void){volatile int *p = 0; *p = 1; return 0;}", 11),
    Status.RUNTIME_ERROR_SIGFPE: ("int main(void){volatile int z = 0, x = 7; return x / z;}", 8),
    Status.RUNTIME_ERROR_SIGABRT: ("#include <stdlib.h>\nint main(void){abort();}", 6),
    Status.RUNTIME_ERROR_SIGXFSZ: ('#include <stdio.h>\nint main(void){FILE *f = fopen("f", "w");'
                                   ' for (int i = 0; i < 100000; i++) fputs("0123456789", f); return 0;}', 25),
    Status.RUNTIME_ERROR_OTHER: ("#include <signal.h>\nint main(void){raise(SIGTERM); return 0;}", 15),
}


@pytest.mark.parametrize("status", list(SIGNALLED_C), ids=lambda status: status.name)
def test_runtime_errors_by_signal(client, status):
    source, signal = SIGNALLED_C[status]
    result = judge0.run(client=client, source_code=source, language=judge0.C, max_file_size=64)
    assert result.status == status
    # Judge0 stores isolate's exit code "or 0": a signalled run has exit_code 0.
    assert result.exit_signal == signal and result.exit_code == 0
    # Judge0 sends `message` base64 like the outputs; the SDK does not decode it.
    assert judge0.common.decode(result.message) == f"Caught fatal signal {signal}"


def test_nzec_and_time_limit(client):
    result = judge0.run(client=client, source_code="import sys; sys.exit(3)", language=judge0.PYTHON)
    assert result.status == Status.RUNTIME_ERROR_NZEC and result.exit_code == 3 and result.exit_signal is None
    result = judge0.run(client=client, source_code="while True: pass", language=judge0.PYTHON,
                        cpu_time_limit=0.3, cpu_extra_time=0)
    assert result.status == Status.TIME_LIMIT_EXCEEDED and result.exit_code == 0
    assert judge0.common.decode(result.message) == "Time limit exceeded"


# ---------------------------------------------------------------- client, languages, info


def test_about_config_statuses(client):
    about = client.get_about()
    assert about["version"] == "1.13.1" and set(about) == {"version", "homepage", "source_code", "maintainer"}
    config = client.get_config_info()  # the SDK's Config: all 39 keys, typed
    assert config == client.config
    assert (config.cpu_time_limit, config.max_wall_time_limit, config.memory_limit) == (5.0, 20.0, 128000)
    assert config.enable_additional_files and config.enable_batched_submissions and not config.allow_enable_network
    assert {(s["id"], s["description"]) for s in client.get_statuses()} == {
        (status.value, description) for status, description in zip(Status, (
            "In Queue", "Processing", "Accepted", "Wrong Answer", "Time Limit Exceeded", "Compilation Error",
            "Runtime Error (SIGSEGV)", "Runtime Error (SIGXFSZ)", "Runtime Error (SIGFPE)",
            "Runtime Error (SIGABRT)", "Runtime Error (NZEC)", "Runtime Error (Other)", "Internal Error",
            "Exec Format Error"), strict=True)}


def test_languages_and_aliases(client):
    languages = client.get_languages()
    assert languages == client.languages and all(lang.is_archived is None for lang in languages)
    assert [lang.name for lang in languages] == sorted(lang.name for lang in languages)
    # Aliases resolve through the SDK's 1.13.1 table (the /about version).
    for alias, language_id in ((judge0.PYTHON, 71), (judge0.PYTHON3, 71), (judge0.C, 50), (judge0.C_GCC, 50),
                               (judge0.CPP, 52), (judge0.JAVA, 62), (judge0.JAVASCRIPT, 63), (judge0.BASH, 46),
                               (judge0.EXECUTABLE, 44), (judge0.MULTI_FILE, 89)):
        assert client.get_language_id(alias) == language_id
        assert client.is_language_supported(alias) and client.is_language_supported(language_id)
    python = client.get_language(71)
    assert python.name.startswith("Python (3.") and python.is_archived is False
    assert python.source_file == "script.py" and python.compile_cmd is None and "script.py" in python.run_cmd
    assert "%s" in client.get_language(50).compile_cmd  # where the compiler options go
    # Python for ML exists only on Judge0 Extra CE (the Submission's default language).
    assert not client.is_language_supported(judge0.PYTHON_FOR_ML)
    with pytest.raises(RuntimeError, match="does not support language"):
        judge0.run(client=client, submissions=Submission(source_code="print(1)"))


def test_flavor_and_implicit_client(sdk_server, monkeypatch):
    # A self-hosted CE endpoint from the environment is the CE flavor's client.
    monkeypatch.setenv("JUDGE0_CE_ENDPOINT", sdk_server.url)
    monkeypatch.setenv("JUDGE0_CE_AUTH_HEADERS", "{}")
    monkeypatch.setattr(judge0, "JUDGE0_IMPLICIT_CE_CLIENT", None)
    monkeypatch.setattr(judge0, "JUDGE0_IMPLICIT_EXTRA_CE_CLIENT", None)
    assert judge0.get_client(judge0.CE).endpoint == sdk_server.url
    assert judge0.run(client=judge0.CE, source_code="print('ce')", language=judge0.PYTHON).stdout == "ce\n"
    # Judge0Cloud takes its headers as a JSON string; any base client can point here.
    cloud = judge0.Judge0Cloud(sdk_server.url, '{"X-Auth-Token": "unused"}')
    assert judge0.run(client=cloud, source_code="print(2)", language=judge0.PYTHON).stdout == "2\n"


def test_language_commands_are_real_commands(client):
    # Judge0 shows the commands it runs; no template placeholder may show through.
    for language in client.languages:
        detail = client.get_language(language.id)
        assert detail.id == language.id and detail.name == language.name
        for command in (detail.compile_cmd, detail.run_cmd):
            assert command is None or "{" not in command, (language, command)


def test_hub_style_clients_with_their_auth_header(tmp_path_factory):
    # RapidAPI's and AllThingsDev's clients send their key in their own header;
    # a server configured with that header name takes them.
    srv = Server(tmp_path_factory.mktemp("stockade-sdk-rapid"), {
        "STOCKADE_WARM_BOXES": "0", "STOCKADE_AUTHN_HEADER": "X-RapidAPI-Key", "STOCKADE_AUTHN_TOKEN": "rapid"})
    try:
        srv.start()
        rapid = judge0.Rapid(srv.url, "judge0-ce.p.rapidapi.com", "rapid")
        assert judge0.run(client=rapid, source_code="print('rapid')", language=judge0.PYTHON).stdout == "rapid\n"
        with pytest.raises(RuntimeError, match="Authentication failed"):
            judge0.Rapid(srv.url, "judge0-ce.p.rapidapi.com", "wrong")
    finally:
        srv.stop()


# ---------------------------------------------------------------- creating and waiting


def test_async_run_then_wait(client):
    submission = judge0.async_run(client=client, source_code="print('later')", language=judge0.PYTHON)
    assert submission.token is not None and submission.status is None  # only the token so far
    assert judge0.wait(client=client, submissions=submission) is submission
    assert submission.status == Status.ACCEPTED and submission.stdout == "later\n"
    many = judge0.async_execute(client=client, submissions=[
        Submission(source_code=f"print({i} + 1)", language=judge0.PYTHON) for i in range(3)])
    judge0.wait(client=client, submissions=many)
    assert [s.stdout for s in many] == ["1\n", "2\n", "3\n"] and all(s.is_done() for s in many)


def test_retry_strategies(sdk_server):
    slow = "import time; time.sleep(1); print('slow')"
    client = judge0.Client(sdk_server.url)
    submission = judge0.async_run(client=client, source_code=slow, language=judge0.PYTHON)
    # One look, then give up: the submission is still queued or running.
    judge0.wait(client=client, submissions=submission, retry_strategy=judge0.MaxRetries(1))
    assert submission.status in (Status.IN_QUEUE, Status.PROCESSING) and not submission.is_done()
    judge0.wait(client=client, submissions=submission, retry_strategy=judge0.MaxWaitTime(60))
    assert submission.status == Status.ACCEPTED and submission.stdout == "slow\n"
    # A client's own strategy is the default of run/wait.
    patient = judge0.Client(sdk_server.url, retry_strategy=judge0.RegularPeriodRetry(0.02))
    assert judge0.run(client=patient, source_code="print(3)", language=judge0.PYTHON).stdout == "3\n"


def test_create_and_get_submissions_with_fields(client):
    one = judge0.api.create_submissions(client=client, submissions=Submission(
        source_code="print('x')", language=judge0.PYTHON))
    judge0.wait(client=client, submissions=one)
    fresh = Submission(source_code="print('x')", language=judge0.PYTHON)
    fresh.token = one.token
    judge0.api.get_submissions(client=client, submissions=fresh, fields=["stdout", "status"])
    assert fresh.stdout == "x\n" and fresh.status == Status.ACCEPTED and fresh.time is None
    two = judge0.api.create_submissions(client=client, submissions=[
        Submission(source_code="print('a')", language=judge0.PYTHON),
        Submission(source_code="print('b')", language=judge0.PYTHON)])
    judge0.wait(client=client, submissions=two)
    judge0.api.get_submissions(client=client, submissions=two, fields="stdout")
    assert [s.stdout for s in two] == ["a\n", "b\n"]
    # The SDK's post-execution filesystem is not a Judge0 CE 1.13.1 field: asking for it is an error there.
    with pytest.raises(httpx.HTTPStatusError) as caught:
        judge0.api.get_submissions(client=client, submissions=fresh, fields="post_execution_filesystem")
    assert caught.value.response.status_code == 400
    assert caught.value.response.json() == {"error": "invalid fields: [post_execution_filesystem]"}


# ---------------------------------------------------------------- test cases


def test_test_case_forms(client):
    code = "print(input().upper())"
    # One test case, in any form, gives one submission.
    for case in (("ab", "AB"), ["ab", "AB"], {"input": "ab", "expected_output": "AB"}, judge0.TestCase("ab", "AB")):
        result = judge0.run(client=client, source_code=code, language=judge0.PYTHON, test_cases=case)
        assert isinstance(result, Submission) and result.status == Status.ACCEPTED, case
    # Several: one submission each, in order; expected output compared like Judge0.
    results = judge0.run(client=client, source_code=code, language=judge0.PYTHON, test_cases=[
        ("ab", "AB  \n\n\n"),  # trailing spaces and newlines do not count
        ("cd", "XY"),
        judge0.TestCase(input="ef"),  # no expected output: accepted
    ])
    assert [r.status for r in results] == [Status.ACCEPTED, Status.WRONG_ANSWER, Status.ACCEPTED]
    assert [r.stdin for r in results] == ["ab", "cd", "ef"] and results[1].expected_output == "XY"
    # Several submissions times several test cases.
    results = judge0.run(client=client, test_cases=[("1", "1"), ("2", "2")], submissions=[
        Submission(source_code="print(input())", language=judge0.PYTHON),
        Submission(source_code="print(int(input()) * 2)", language=judge0.PYTHON)])
    assert [r.status for r in results] == [Status.ACCEPTED, Status.ACCEPTED, Status.WRONG_ANSWER, Status.WRONG_ANSWER]
    assert [r.stdout for r in results] == ["1\n", "2\n", "2\n", "4\n"]


# ---------------------------------------------------------------- submission fields


def test_every_request_field_round_trips(client):
    result = judge0.run(
        client=client, language=judge0.PYTHON,
        source_code="import sys\nprint(sys.argv[1:], input(), flush=True)\nsys.stderr.write('to stderr\\n')",
        stdin="in-put", expected_output="['a', 'b c'] in-put\nto stderr",
        command_line_arguments="a 'b c'", cpu_time_limit=2.5, cpu_extra_time=0.5, wall_time_limit=6,
        memory_limit=200000, stack_limit=32000, max_processes_and_or_threads=20, max_file_size=2048,
        enable_per_process_and_thread_time_limit=False, enable_per_process_and_thread_memory_limit=False,
        redirect_stderr_to_stdout=True, number_of_runs=2,
    )
    assert result.status == Status.ACCEPTED, (result.status, result.stdout, result.stderr)
    assert result.stdout == "['a', 'b c'] in-put\nto stderr\n" and result.stderr is None
    # fields=* gives the limits back as Judge0 stores them; the SDK reads them into its types.
    assert (result.cpu_time_limit, result.cpu_extra_time, result.wall_time_limit) == (2.5, 0.5, 6.0)
    assert (result.memory_limit, result.stack_limit, result.max_processes_and_or_threads,
            result.max_file_size, result.number_of_runs) == (200000, 32000, 20, 2048, 2)
    assert result.redirect_stderr_to_stdout is True and result.enable_network is False
    assert result.command_line_arguments == "a 'b c'" and result.compiler_options is None
    assert result.exit_code == 0 and result.exit_signal is None and result.message is None
    assert isinstance(result.time, float) and isinstance(result.wall_time, float) and result.memory > 0
    assert isinstance(result.created_at, datetime) and result.created_at <= result.finished_at
    assert uuid.UUID(str(result.token)).version == 4
    assert result.post_execution_filesystem is None and list(result) == []  # not in Judge0 CE 1.13.1


def test_defaults_come_back_from_the_server(client):
    result = judge0.run(client=client, source_code="print(1)", language=judge0.PYTHON)
    config = client.config
    assert (result.cpu_time_limit, result.cpu_extra_time, result.wall_time_limit, result.memory_limit,
            result.stack_limit, result.max_processes_and_or_threads, result.max_file_size,
            result.number_of_runs) == (
        config.cpu_time_limit, config.cpu_extra_time, config.wall_time_limit, config.memory_limit,
        config.stack_limit, config.max_processes_and_or_threads, config.max_file_size, config.number_of_runs)


def test_compiler_options_and_compile_error(client):
    source = '#include <stdio.h>\nint main(void){printf("%d\\n", ANSWER);return 0;}'
    result = judge0.run(client=client, source_code=source, language=judge0.C, compiler_options="-DANSWER=42")
    assert result.status == Status.ACCEPTED and result.stdout == "42\n"
    result = judge0.run(client=client, source_code=source, language=judge0.C)
    assert result.status == Status.COMPILATION_ERROR and "ANSWER" in result.compile_output
    # As Judge0 after a failed compile: nothing of a run.
    assert (result.stdout, result.stderr, result.time, result.memory, result.exit_code, result.message) == (
        None, None, None, None, None, None)


def test_refused_requests_raise_the_servers_answer(client):
    # Judge0 answers 422 with a field hash; the SDK raises it as an HTTPStatusError.
    for kwargs, field, message in (
        ({"enable_network": True}, "enable_network", "enabling network is not allowed"),
        ({"wall_time_limit": 21}, "wall_time_limit", "must be less than or equal to 20.0"),
        ({"compiler_options": "-O2"}, "compiler_options",
         "setting compiler options is only allowed for compiled languages"),
    ):
        with pytest.raises(httpx.HTTPStatusError) as caught:
            judge0.run(client=client, source_code="print(1)", language=judge0.PYTHON, **kwargs)
        assert caught.value.response.status_code == 422
        assert caught.value.response.json() == {field: [message]}


# ---------------------------------------------------------------- files and bytes


def test_additional_files_from_a_filesystem(client):
    files = filesystem({"data/in.txt": "from a file\n", "blob.bin": bytes(range(256))})
    result = judge0.run(client=client, language=judge0.PYTHON, additional_files=files, source_code=(
        "print(open('data/in.txt').read(), end='')\nprint(len(open('blob.bin', 'rb').read()))"))
    assert result.status == Status.ACCEPTED and result.stdout == "from a file\n256\n"
    # The SDK encodes a Filesystem as a zip; Judge0 sends additional_files back
    # base64 always, and the SDK decodes it to text (as against Judge0).
    assert isinstance(result.additional_files, str) and result.additional_files.startswith("PK")
    assert files.find("./data/in.txt").content == b"from a file\n"


def test_bytes_in_and_out(client):
    # Source as bytes (not UTF-8), and output that is not UTF-8: base64 both ways.
    result = judge0.run(client=client, language=judge0.PYTHON,
                        source_code=b"# -*- coding: latin-1 -*-\n# \xe9t\xe9\nimport sys\n"
                                    b"sys.stdout.buffer.write(bytes([0xff, 0x41, 0x0a]))\n")
    assert result.status == Status.ACCEPTED, (result.status, result.stderr)
    assert result.stdout == "\\xffA\n"  # the SDK's decoding (errors="backslashreplace")


def test_executable_language_runs_a_binary(client, tmp_path):
    source = tmp_path / "hello.c"
    source.write_text('#include <stdio.h>\nint main(void){puts("static binary");return 0;}\n')
    binary = tmp_path / "hello"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(source)], check=True)
    result = judge0.run(client=client, source_code=binary.read_bytes(), language=judge0.EXECUTABLE)
    assert result.status == Status.ACCEPTED and result.stdout == "static binary\n"
    # Not a program: Judge0's Exec Format Error.
    result = judge0.run(client=client, source_code=b"\x00\x01 not elf", language=judge0.EXECUTABLE)
    assert result.status == Status.EXEC_FORMAT_ERROR
