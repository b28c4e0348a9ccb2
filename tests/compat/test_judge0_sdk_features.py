"""Every feature of the official Judge0 SDK (judge0==0.0.8), unchanged, against
a real Stockade server, answering as Judge0 CE 1.13.1 would. (The basics, auth
and batches of many are in test_judge0_sdk.py.)"""

from __future__ import annotations

from pathlib import Path

import judge0
import pytest
from judge0 import File, Filesystem, Status, Submission

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
