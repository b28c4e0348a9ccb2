"""The official Judge0 Python SDK, unchanged, against Stockade: the client
must not notice it is not talking to Judge0 CE 1.13.1."""

from __future__ import annotations

import json

import judge0
import pytest
from judge0 import Status, Submission

AUTH_TOKEN = "sdk-secret"  # as in conftest.py

HELLO = {
    judge0.PYTHON: 'print("hello from python")',
    judge0.C: '#include <stdio.h>\nint main(void) { puts("hello from c"); return 0; }',
    judge0.CPP: '#include <iostream>\nint main() { std::cout << "hello from c++" << std::endl; }',
    judge0.JAVA: 'public class Main { public static void main(String[] a) { System.out.println("hello from java"); } }',
    judge0.JAVASCRIPT: 'console.log("hello from javascript")',
}
EXPECTED = {
    judge0.PYTHON: "hello from python\n",
    judge0.C: "hello from c\n",
    judge0.CPP: "hello from c++\n",
    judge0.JAVA: "hello from java\n",
    judge0.JAVASCRIPT: "hello from javascript\n",
}


@pytest.fixture
def client(sdk_server):
    return judge0.Client(sdk_server.url)


@pytest.mark.parametrize("language", list(HELLO), ids=lambda lang: lang.name)
def test_run_hello_world(client, language):
    result = judge0.run(client=client, source_code=HELLO[language], language=language)
    assert result.status == Status.ACCEPTED, (result.status, result.stderr, result.compile_output)
    assert result.stdout == EXPECTED[language]
    assert result.time is not None and result.memory is not None and result.finished_at is not None


def test_stdin_and_expected_output(client):
    results = judge0.run(
        client=client,
        source_code="print(input().upper())",
        language=judge0.PYTHON,
        test_cases=[("abc", "ABC"), ("xyz", "nope")],
    )
    assert [r.status for r in results] == [Status.ACCEPTED, Status.WRONG_ANSWER]
    assert [r.stdout for r in results] == ["ABC\n", "XYZ\n"]


def test_compile_error(client):
    result = judge0.run(client=client, source_code="int main( { return 0; }", language=judge0.C)
    assert result.status == Status.COMPILATION_ERROR
    assert "error" in result.compile_output


def test_time_limit(client):
    result = judge0.run(client=client, source_code="while True:\n    pass", language=judge0.PYTHON,
                        cpu_time_limit=0.5, cpu_extra_time=0.2)
    assert result.status == Status.TIME_LIMIT_EXCEEDED


def test_batch_of_30(client):
    submissions = [Submission(source_code=f"print({i} * {i})", language=judge0.PYTHON) for i in range(30)]
    results = judge0.run(client=client, submissions=submissions)
    assert len(results) == 30
    assert all(r.status == Status.ACCEPTED for r in results)
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(30)]


def test_about_config_and_languages_parse(client):
    assert client.version == "1.13.1"
    assert client.config.max_submission_batch_size == 20
    assert client.is_language_supported(judge0.PYTHON) and client.is_language_supported(judge0.JAVA)
    assert client.get_language(71).source_file == "script.py"
    assert len(client.get_statuses()) == 14


def test_authentication_on(sdk_auth_server, monkeypatch):
    client = judge0.Client(sdk_auth_server.url, {"X-Auth-Token": AUTH_TOKEN})
    result = judge0.run(client=client, source_code="print(6 * 7)", language=judge0.PYTHON)
    assert result.status == Status.ACCEPTED and result.stdout == "42\n"
    with pytest.raises(RuntimeError, match="Authentication failed"):
        judge0.Client(sdk_auth_server.url)
    with pytest.raises(RuntimeError, match="Authentication failed"):
        judge0.Client(sdk_auth_server.url, {"X-Auth-Token": "wrong"})
    # The SDK's other way in: its environment variables, no client argument.
    monkeypatch.setenv("JUDGE0_CE_ENDPOINT", sdk_auth_server.url)
    monkeypatch.setenv("JUDGE0_CE_AUTH_HEADERS", json.dumps({"X-Auth-Token": AUTH_TOKEN}))
    monkeypatch.setattr(judge0, "JUDGE0_IMPLICIT_CE_CLIENT", None)
    monkeypatch.setattr(judge0, "JUDGE0_IMPLICIT_EXTRA_CE_CLIENT", None)
    result = judge0.run(source_code="print('implicit')", language=judge0.PYTHON)
    assert result.stdout == "implicit\n"


def test_authentication_off_needs_no_header(sdk_server):
    client = judge0.Client(sdk_server.url)
    assert judge0.run(client=client, source_code="print(1)", language=judge0.PYTHON).stdout == "1\n"
