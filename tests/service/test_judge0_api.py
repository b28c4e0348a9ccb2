"""Raw HTTP against a real server: every Judge0 CE 1.13.1 endpoint, field,
format and error of the spec (../shared/specs/judge0-ce-1.13.1.md)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import socket
import subprocess
import time
import uuid
import zipfile

import httpx
import pytest
from stockade_server import ADMIN, MAX_BODY, wait_done

ALL_FIELDS = [
    "source_code", "language_id", "stdin", "expected_output", "stdout", "status_id",
    "created_at", "finished_at", "time", "memory", "stderr", "token", "number_of_runs",
    "cpu_time_limit", "cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit",
    "max_processes_and_or_threads", "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit", "max_file_size", "compile_output",
    "exit_code", "exit_signal", "message", "wall_time", "compiler_options",
    "command_line_arguments", "redirect_stderr_to_stdout", "callback_url",
    "additional_files", "enable_network", "status", "language",
]
DEFAULT_FIELDS = ["token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status"]
CONFIG_KEYS = {
    "enable_wait_result", "enable_compiler_options", "allowed_languages_for_compile_options",
    "enable_command_line_arguments", "enable_submission_delete", "enable_callbacks",
    "callbacks_max_tries", "callbacks_timeout", "enable_additional_files", "max_queue_size",
    "cpu_time_limit", "max_cpu_time_limit", "cpu_extra_time", "max_cpu_extra_time",
    "wall_time_limit", "max_wall_time_limit", "memory_limit", "max_memory_limit", "stack_limit",
    "max_stack_limit", "max_processes_and_or_threads", "max_max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit", "allow_enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit", "allow_enable_per_process_and_thread_memory_limit",
    "max_file_size", "max_max_file_size", "number_of_runs", "max_number_of_runs",
    "redirect_stderr_to_stdout", "max_extract_size", "enable_batched_submissions",
    "max_submission_batch_size", "submission_cache_duration", "use_docs_as_homepage",
    "allow_enable_network", "enable_network", "maintenance_mode",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DECIMAL = re.compile(r"^\d+\.\d+$")
PY = 71
C = 50
ADMIN_HEADERS = {"X-Auth-User": ADMIN}


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def run(http: httpx.Client, body: dict, **params) -> dict:
    """POST with wait=true and fields=*; the finished submission."""
    response = http.post("/submissions", params={"wait": "true", "fields": "*", **params}, json=body)
    assert response.status_code == 201, response.text
    return response.json()


# ---------------------------------------------------------------- information


def test_about_version_license_isolate(http):
    about = http.get("/about").json()
    assert about["version"] == "1.13.1"
    assert set(about) == {"version", "homepage", "source_code", "maintainer"}
    assert http.get("/version").text == "1.13.1"
    assert "MIT" in http.get("/license").text
    assert "bubblewrap" in http.get("/isolate").text


def test_config_info_has_exactly_the_39_keys(http):
    config = http.get("/config_info").json()
    assert set(config) == CONFIG_KEYS and len(config) == 39
    assert config["cpu_time_limit"] == 5.0 and config["max_cpu_time_limit"] == 15.0
    assert config["memory_limit"] == 128000 and config["max_memory_limit"] == 512000
    assert config["max_submission_batch_size"] == 20
    assert config["enable_submission_delete"] is True  # this server enables it
    # The box cannot offer a safe network yet: said plainly.
    assert config["allow_enable_network"] is False and config["enable_network"] is False


def test_statuses(http):
    statuses = http.get("/statuses").json()
    assert [s["id"] for s in statuses] == list(range(1, 15))
    assert statuses[2] == {"id": 3, "description": "Accepted"}
    assert statuses[10] == {"id": 11, "description": "Runtime Error (NZEC)"}


def test_languages(http):
    languages = http.get("/languages").json()
    ids = {lang["id"] for lang in languages}
    assert {71, 50, 52, 62, 63} <= ids
    assert all(set(lang) == {"id", "name"} for lang in languages)
    names = [lang["name"] for lang in languages]
    assert names == sorted(names)
    everything = http.get("/languages/all").json()
    assert all(set(lang) == {"id", "name", "is_archived"} for lang in everything)
    assert ids <= {lang["id"] for lang in everything}
    python = http.get("/languages/71").json()
    assert python["name"].startswith("Python (3.")
    assert python["source_file"] == "script.py" and python["compile_cmd"] is None
    assert "python3" in python["run_cmd"]
    assert "gcc" in http.get("/languages/50").json()["compile_cmd"]
    for missing in ("9999", "abc", "-1", "\u0667\u0661"):  # (the last: 71 in Arabic-Indic digits)
        response = http.get(f"/languages/{missing}")
        assert response.status_code == 404 and "error" in response.json()


def test_system_info_workers_statistics(http):
    assert "CPU(s)" in http.get("/system_info").json()
    workers = http.get("/workers").json()
    assert len(workers) == 1
    assert set(workers[0]) == {"queue", "size", "available", "idle", "working", "paused", "failed"}
    stats = http.get("/statistics").json()
    assert {"submissions", "languages", "statuses", "database"} <= set(stats)
    assert isinstance(stats["submissions"]["total"], int)


def test_authenticate_and_authorize(http):
    assert http.post("/authenticate").status_code == 200  # no authn tokens configured here
    response = http.post("/authorize")
    assert response.status_code == 403 and response.content == b""
    assert http.post("/authorize", headers={"X-Auth-User": "wrong"}).status_code == 403
    assert http.post("/authorize", headers=ADMIN_HEADERS).status_code == 200
    assert http.post("/authorize", params={"X-Auth-User": "other-admin"}).status_code == 200


# ---------------------------------------------------------------- create and get


def test_create_then_get_with_default_and_all_fields(http):
    response = http.post("/submissions", json={"source_code": "print('hi')", "language_id": PY})
    assert response.status_code == 201
    token = response.json()["token"]
    assert list(response.json()) == ["token"]
    assert uuid.UUID(token).version == 4
    body = wait_done(http, token)
    assert list(body) == ALL_FIELDS and len(body) == 35
    assert body["status"] == {"id": 3, "description": "Accepted"} and body["status_id"] == 3
    assert body["stdout"] == "hi\n" and body["stderr"] is None
    assert DECIMAL.match(body["time"]) and DECIMAL.match(body["wall_time"])
    assert body["cpu_time_limit"] == "5.0" and body["cpu_extra_time"] == "1.0" and body["wall_time_limit"] == "10.0"
    assert isinstance(body["memory"], int) and body["memory"] > 0
    assert body["memory_limit"] == 128000 and body["stack_limit"] == 64000
    assert body["max_processes_and_or_threads"] == 60 and body["max_file_size"] == 1024
    assert body["number_of_runs"] == 1 and body["exit_code"] == 0 and body["exit_signal"] is None
    assert TIMESTAMP.match(body["created_at"]) and TIMESTAMP.match(body["finished_at"])
    assert body["language"]["id"] == PY and body["language"]["name"].startswith("Python")
    assert body["enable_network"] is False and body["redirect_stderr_to_stdout"] is False
    default = http.get(f"/submissions/{token}").json()
    assert list(default) == DEFAULT_FIELDS
    some = http.get(f"/submissions/{token}", params={"fields": "stdout,status_id"}).json()
    assert some == {"stdout": "hi\n", "status_id": 3}


def test_numeric_string_language_id_and_loose_casts(http):
    body = run(http, {"source_code": "print(1)", "language_id": "71", "cpu_time_limit": "2",
                      "memory_limit": "256000", "redirect_stderr_to_stdout": "true"})
    assert body["status"]["id"] == 3
    assert body["cpu_time_limit"] == "2.0" and body["memory_limit"] == 256000
    assert body["redirect_stderr_to_stdout"] is True


def test_base64_both_ways_ruby_style(http):
    long_line = "x" * 100
    body = run(http, {"source_code": b64(f"import sys\nprint('{long_line}')\nsys.exit(4)"),
                      "language_id": PY, "stdin": b64("in")}, base64_encoded="true")
    # Ruby's Base64.encode64: a newline after every 60 characters and at the end.
    expected = base64.b64encode((long_line + "\n").encode()).decode()
    assert body["stdout"] == "\n".join(expected[i:i + 60] for i in range(0, len(expected), 60)) + "\n"
    assert all(len(line) <= 60 for line in body["stdout"].splitlines())
    assert base64.b64decode(body["stdin"]) == b"in"
    assert body["status"]["id"] == 11
    # message is encoded too.
    assert base64.b64decode(body["message"]) == b"Exited with error status 4"
    assert "sys.exit" in base64.b64decode(body["source_code"]).decode()


def test_non_utf8_output_without_base64(http):
    source = "import sys; sys.stdout.buffer.write(bytes([0xff, 0xfe]))"
    response = http.post("/submissions", params={"wait": "true"}, json={"source_code": source, "language_id": PY})
    assert response.status_code == 201
    answer = response.json()
    assert set(answer) == {"token", "error"}
    assert answer["error"] == ("some attributes for this submission cannot be converted to UTF-8, "
                               "use base64_encoded=true query parameter")
    response = http.get(f"/submissions/{answer['token']}")
    assert response.status_code == 400 and response.json() == {"error": answer["error"]}
    encoded = http.get(f"/submissions/{answer['token']}", params={"base64_encoded": "true"}).json()
    assert base64.b64decode(encoded["stdout"]) == b"\xff\xfe"
    # Read in a batch: Judge0's words for many.
    response = http.get("/submissions/batch", params={"tokens": answer["token"]})
    assert response.status_code == 400 and response.json() == {"error": (
        "some attributes for one or more submissions cannot be converted to UTF-8, "
        "use base64_encoded=true query parameter")}


def test_a_large_submission_is_answered_in_chunks_and_whole(http):
    # 1 MiB of NULs is 6 MiB of JSON ("\u0000" each): written as it is sent.
    stdin = bytes(1 << 20)
    token = http.post("/submissions", params={"base64_encoded": "true"},
                      json={"source_code": b64("print(1)"), "language_id": PY, "stdin": b64(stdin)}).json()["token"]
    for params in ({}, {"base64_encoded": "true"}):
        response = http.get(f"/submissions/{token}", params={"fields": "token,stdin", **params})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.headers.get("transfer-encoding") == "chunked" and "content-length" not in response.headers
        body = response.json()
        assert body["token"] == token
        assert (base64.b64decode(body["stdin"]) if params else body["stdin"].encode()) == stdin
    # A short one still goes out whole, with its length.
    response = http.get(f"/submissions/{token}", params={"fields": "token"})
    assert response.headers["content-length"] == str(len(response.content))
    wait_done(http, token)


def test_base64_only_for_the_word_true(http):
    body = run(http, {"source_code": "print('plain')", "language_id": PY}, base64_encoded="1")
    assert body["stdout"] == "plain\n"


def test_unknown_token_is_404(http):
    response = http.get(f"/submissions/{uuid.uuid4()}")
    assert response.status_code == 404 and set(response.json()) == {"error"}


def test_invalid_fields_is_400_on_get_and_create(http):
    token = http.post("/submissions", json={"source_code": "print(1)", "language_id": PY}).json()["token"]
    response = http.get(f"/submissions/{token}", params={"fields": "stdout,bogus"})
    assert response.status_code == 400 and response.json() == {"error": "invalid fields: [bogus]"}
    response = http.post("/submissions", params={"fields": "x,y"}, json={"source_code": "print(1)", "language_id": PY})
    assert response.status_code == 400 and response.json() == {"error": "invalid fields: [x, y]"}


def test_fields_that_name_nothing_are_the_default_and_star_does_not_hide_an_unknown_name(http):
    token = run(http, {"source_code": "print(1)", "language_id": PY})["token"]
    # Judge0 splits on commas: `,` names nothing, so the default set (not `{}`).
    for empty in (",", ",,"):
        response = http.get(f"/submissions/{token}", params={"fields": empty})
        assert response.status_code == 200 and list(response.json()) == DEFAULT_FIELDS, empty
    # Every name is checked, `*` or not: an unknown one is a 400, on every route that takes fields.
    for fields in ("*,bogus", "bogus,*"):
        response = http.get(f"/submissions/{token}", params={"fields": fields})
        assert response.status_code == 400 and response.json() == {"error": "invalid fields: [bogus]"}, fields
    response = http.get("/submissions/batch", params={"tokens": token, "fields": "*,bogus"})
    assert response.status_code == 400 and response.json() == {"error": "invalid fields: [bogus]"}
    response = http.post("/submissions", params={"fields": "*,bogus"}, json={"source_code": "print(1)", "language_id": PY})
    assert response.status_code == 400 and response.json() == {"error": "invalid fields: [bogus]"}


# ---------------------------------------------------------------- validation (422)


@pytest.mark.parametrize(("changes", "errors"), [
    ({"wall_time_limit": 21}, {"wall_time_limit": ["must be less than or equal to 20.0"]}),
    ({"wall_time_limit": 0.5}, {"wall_time_limit": ["must be greater than or equal to 1"]}),
    ({"cpu_time_limit": 16}, {"cpu_time_limit": ["must be less than or equal to 15.0"]}),
    ({"cpu_time_limit": -1}, {"cpu_time_limit": ["must be greater than or equal to 0"]}),
    ({"cpu_extra_time": 6}, {"cpu_extra_time": ["must be less than or equal to 5.0"]}),
    ({"memory_limit": 1000}, {"memory_limit": ["must be greater than or equal to 2048"]}),
    ({"memory_limit": 512001}, {"memory_limit": ["must be less than or equal to 512000"]}),
    ({"stack_limit": 128001}, {"stack_limit": ["must be less than or equal to 128000"]}),
    ({"max_processes_and_or_threads": 0}, {"max_processes_and_or_threads": ["must be greater than 0"]}),
    ({"number_of_runs": 0}, {"number_of_runs": ["must be greater than 0"]}),
    ({"number_of_runs": -3}, {"number_of_runs": ["must be greater than 0"]}),
    ({"max_processes_and_or_threads": 121}, {"max_processes_and_or_threads": ["must be less than or equal to 120"]}),
    ({"max_file_size": 4097}, {"max_file_size": ["must be less than or equal to 4096"]}),
    ({"number_of_runs": 21}, {"number_of_runs": ["must be less than or equal to 20"]}),
    ({"cpu_time_limit": "abc"}, {"cpu_time_limit": ["is not a number"]}),
    # (an integer past every float: float() raised, a 500)
    ({"cpu_time_limit": 10**400}, {"cpu_time_limit": ["must be less than or equal to 15.0"]}),
    ({"wall_time_limit": "9" * 400}, {"wall_time_limit": ["must be less than or equal to 20.0"]}),
    ({"cpu_extra_time": -(10**400)}, {"cpu_extra_time": ["must be greater than or equal to 0"]}),
    ({"cpu_time_limit": "\u0662"}, {"cpu_time_limit": ["is not a number"]}),  # (2 in Arabic-Indic digits)
    ({"language_id": "\u0667\u0661"}, {"language_id": ["language with id \u0667\u0661 doesn't exist"]}),
    ({"memory_limit": [1]}, {"memory_limit": ["is not a number"]}),
    ({"language_id": 9999}, {"language_id": ["language with id 9999 doesn't exist"]}),
    ({"language_id": None}, {"language_id": ["can't be blank"]}),
    ({"source_code": ""}, {"source_code": ["can't be blank"]}),
    ({"source_code": "   "}, {"source_code": ["can't be blank"]}),
    ({"source_code": "\n\t \r\n"}, {"source_code": ["can't be blank"]}),
    ({"enable_network": True}, {"enable_network": ["enabling network is not allowed"]}),
    ({"language_id": True}, {"language_id": ["language with id true doesn't exist"]}),
    ({"language_id": {"a": 1}}, {"language_id": ['language with id {"a":1} doesn\'t exist']}),
    ({"language_id": [71]}, {"language_id": ["language with id [71] doesn't exist"]}),
    ({"language_id": "abc"}, {"language_id": ["language with id abc doesn't exist"]}),
    ({"compiler_options": "-O2"}, {"compiler_options": ["setting compiler options is only allowed for compiled languages"]}),
    ({"command_line_arguments": "a" * 513}, {"command_line_arguments": ["is too long (maximum is 512 characters)"]}),
    ({"command_line_arguments": "a\nrm -rf /"}, {"command_line_arguments": ["must not contain line breaks or null bytes"]}),
    ({"callback_url": "ftp://example.com/x"}, {"callback_url": ["is not a valid URL"]}),
    ({"additional_files": b64("not a zip")}, {"additional_files": ["is not a valid zip archive"]}),
    ({"redirect_stderr_to_stdout": "maybe"}, {"redirect_stderr_to_stdout": ["is not included in the list"]}),
])
def test_out_of_range_and_invalid_values_are_422(http, changes, errors):
    body = {"source_code": "print(1)", "language_id": PY, **changes}
    response = http.post("/submissions", json=body)
    assert response.status_code == 422, response.text
    assert response.json() == errors


def test_several_errors_at_once_and_missing_everything(http):
    response = http.post("/submissions", json={})
    assert response.status_code == 422
    assert response.json() == {"language_id": ["can't be blank"], "source_code": ["can't be blank"]}
    response = http.post("/submissions", json={"source_code": "x", "language_id": PY, "cpu_time_limit": 99, "memory_limit": 1})
    assert set(response.json()) == {"cpu_time_limit", "memory_limit"}


def test_whitespace_only_base64_source_is_blank(http):
    response = http.post("/submissions", params={"base64_encoded": "true"},
                         json={"source_code": b64("  \n "), "language_id": PY})
    assert response.status_code == 422 and response.json() == {"source_code": ["can't be blank"]}


def test_bad_base64_is_422(http):
    response = http.post("/submissions", params={"base64_encoded": "true"},
                         json={"source_code": "%%% not base64 %%%", "language_id": PY, "stdin": "***"})
    assert response.status_code == 422
    assert response.json() == {"source_code": ["is not valid base64"], "stdin": ["is not valid base64"]}


def test_malformed_json_is_400(http):
    response = http.post("/submissions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "error" in response.json()
    response = http.post("/submissions", json=[1, 2])
    assert response.status_code == 422


def test_a_submission_sent_as_a_form_or_in_the_query_string_is_read_as_judge0_reads_it(http):
    # Rails' params: the body's, under the query string's; the body may be a form
    # (`curl -d`, `requests.post(data=...)`), its keys nested as Rack nests them.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = run(http, {}, source_code='print("a b", input())', language_id="71", stdin="c+d")
    assert (body["status"]["id"], body["stdout"], body["stdin"]) == (3, "a b c+d\n", "c+d")
    response = http.post("/submissions", params={"wait": "true", "fields": "stdout,stdin,language_id"},
                         content=b"source_code=print(%22a+b%22%2C+input())&language_id=71&stdin=e%26f", headers=form)
    assert response.status_code == 201, response.text
    assert response.json() == {"stdout": "a b e&f\n", "stdin": "e&f", "language_id": 71}
    # The query string wins over the body, a JSON body as a form (Rails:
    # request_parameters.merge(query_parameters)).
    body = run(http, {"source_code": "print(2)", "stdin": "x"}, source_code="print(1)", language_id=PY)
    assert (body["stdout"], body["stdin"]) == ("1\n", "x")
    response = http.post("/submissions/batch", headers=form, content=(
        b"submissions[][language_id]=71&submissions[][source_code]=print(3)"
        b"&submissions[][language_id]=9999&submissions[][source_code]=print(4)"))
    assert response.status_code == 201, response.text
    answers = response.json()
    assert set(answers[0]) == {"token"} and answers[1] == {"language_id": ["language with id 9999 doesn't exist"]}
    assert wait_done(http, answers[0]["token"])["stdout"] == "3\n"
    for content, message in ((b"source_code=%FF&language_id=71", "the request's form is not valid UTF-8"),
                             (b"stdin=1&stdin[]=2", "the parameter stdin is given both as a list and as one value"),
                             (b"a" + b"[b]" * 40 + b"=1", "a parameter is nested more than 32 levels deep")):
        response = http.post("/submissions", content=content, headers=form)
        assert (response.status_code, response.json()) == (400, {"error": message}), content
    response = http.post("/submissions", files={"source_code": b"print(1)"}, data={"language_id": "71"})
    assert (response.status_code, response.json()) == (400, {
        "error": "a multipart/form-data body is not read: send JSON or application/x-www-form-urlencoded"})


def test_base64_encoded_wait_and_fields_may_come_in_the_body_as_judge0_reads_params(http):
    """Judge0 reads `params[:base64_encoded] == "true"`, `params[:wait]` and
    `params[:fields]` from Rails' params, the body's with the query string's:
    a form (`curl -d wait=true ...`) or a JSON body may carry them."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    encoded = base64.b64encode(b"print(input() * 2)").decode()
    response = http.post("/submissions", headers=form, content=(
        f"source_code={encoded}&language_id=71&stdin=YWI%3D&base64_encoded=true&wait=true&fields=stdout,stdin"
    ).encode())
    assert response.status_code == 201, response.text
    assert response.json() == {"stdout": base64.b64encode(b"abab\n").decode() + "\n", "stdin": "YWI=\n"}
    body = {"source_code": "print(1)", "language_id": PY, "wait": "true", "fields": "stdout"}
    response = http.post("/submissions", json=body)
    assert (response.status_code, response.json()) == (201, {"stdout": "1\n"})
    # The query string's win; and only the string "true" is true (Ruby's == "true"), not JSON's true.
    response = http.post("/submissions", params={"fields": "status_id"}, json={**body, "wait": True})
    assert set(response.json()) == {"token"}, response.text
    response = http.post("/submissions", params={"fields": "status_id"}, json=body)
    assert response.json() == {"status_id": 3}, response.text
    response = http.post("/submissions", json={**body, "fields": ["stdout"]})
    assert response.status_code == 400 and response.json()["error"].startswith("invalid fields"), response.text
    response = http.post("/submissions/batch", json={"base64_encoded": "true", "submissions": [
        {"source_code": encoded, "language_id": PY, "stdin": "Y2Q="}]})
    assert response.status_code == 201, response.text
    token = response.json()[0]["token"]
    assert wait_done(http, token)["stdout"] == "cdcd\n"


def test_callback_to_internal_addresses_refused_by_default(http):
    for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data", "http://[::1]/",
                "http://10.1.2.3/", "http://localhost:8080/", "http://[::ffff:127.0.0.1]/"):
        response = http.post("/submissions", json={"source_code": "print(1)", "language_id": PY, "callback_url": url})
        assert response.status_code == 422, url
        assert "internal address" in response.json()["callback_url"][0]


def test_oversized_body_is_413(http, server):
    big = "#" * (MAX_BODY + 10)
    response = http.post("/submissions", json={"source_code": big, "language_id": PY})
    assert response.status_code == 413 and "error" in response.json()

    # Without a Content-Length (chunked), the limit is counted as the body arrives.
    def chunks():
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"#" * 65536

    response = http.post("/submissions", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


# ---------------------------------------------------------------- verdicts


C_PROGRAMS = {
    "segv": ("int main(){volatile int *p = 0; *p = 1; return 0;}", 7, "Caught fatal signal 11"),
    "fpe": ("int main(int argc, char **argv){return 100 / (argc - 1);}", 9, "Caught fatal signal 8"),
    "abrt": ("#include <stdlib.h>\nint main(){abort();}", 10, "Caught fatal signal 6"),
    "nzec": ("int main(){return 3;}", 11, "Exited with error status 3"),
    # Exit codes a shell would give for a signal are exit codes ("non-zero exit"), not signals.
    "nzec_152": ("int main(){return 152;}", 11, "Exited with error status 152"),
    "nzec_139": ("int main(){return 139;}", 11, "Exited with error status 139"),
}


@pytest.mark.parametrize("name", sorted(C_PROGRAMS))
def test_runtime_error_statuses_by_signal_and_exit(http, name):
    source, status, message = C_PROGRAMS[name]
    body = run(http, {"source_code": source, "language_id": C})
    assert body["status"]["id"] == status, body
    assert body["message"] == message  # isolate's words, as Judge0 passes them on
    if status == 11:
        assert body["exit_code"] == int(message.split()[-1]) and body["exit_signal"] is None
    else:
        assert body["exit_signal"] == int(message.split()[-1])


def test_compilation_error(http):
    body = run(http, {"source_code": "int main( { syntax error", "language_id": C})
    assert body["status"] == {"id": 6, "description": "Compilation Error"}
    assert "error" in body["compile_output"] and body["stdout"] is None
    assert body["message"] is None  # as Judge0: compile_output says it


def test_accepted_and_wrong_answer_with_judge0_trailing_whitespace_rule(http):
    source = "print(input()[::-1] + '  ')\nprint()"
    body = run(http, {"source_code": source, "language_id": PY, "stdin": "abc", "expected_output": "cba\n"})
    assert body["status"]["id"] == 3 and body["message"] is None
    body = run(http, {"source_code": source, "language_id": PY, "stdin": "abc", "expected_output": "abc"})
    assert body["status"] == {"id": 4, "description": "Wrong Answer"}
    assert body["message"] is None  # isolate says nothing of a run that ended normally: neither does Judge0


def test_time_limit(http):
    body = run(http, {"source_code": "while True: pass", "language_id": PY,
                      "cpu_time_limit": 0.5, "cpu_extra_time": 0.2, "wall_time_limit": 5})
    assert body["status"] == {"id": 5, "description": "Time Limit Exceeded"}
    assert body["message"] == "Time limit exceeded"


def test_time_over_the_limit_but_within_extra_time_is_a_time_limit(http):
    source = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\nprint('done')"
    body = run(http, {"source_code": source, "language_id": PY, "cpu_time_limit": 0.3,
                      "cpu_extra_time": 2, "wall_time_limit": 5})
    assert body["status"]["id"] == 5
    assert float(body["time"]) > 0.3


def test_a_lone_surrogate_in_arguments_is_422(http):
    for field in ("command_line_arguments", "compiler_options"):
        body = json.dumps({"language_id": 50 if field == "compiler_options" else PY, "source_code": "x",
                           field: "a \ud800 b"})  # ensure_ascii: sent as the escape \ud800
        response = http.post("/submissions", params={"wait": "true"}, content=body,
                             headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        assert "lone surrogate" in response.json()[field][0]
    # Echoed back in an error message: the same escape, never a 500.
    for field, value in (("language_id", "7\ud8001"), ("callback_url", "http://\ud800/")):
        body = json.dumps({"language_id": PY, "source_code": "x", field: value})
        response = http.post("/submissions", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and field in response.json(), response.text


def test_per_process_and_thread_limits(http):
    # Two processes, 0.6 s of CPU and 60 MB each: over the limits together, within them each.
    source = ("import os, time\npid = os.fork()\nb = bytearray(60 << 20)\nt = time.process_time()\n"
              "while time.process_time() - t < 0.6: pass\nif pid: os.waitpid(pid, 0); print('both done')")
    limits = {"cpu_time_limit": 1, "cpu_extra_time": 0, "memory_limit": 100000, "wall_time_limit": 5}
    whole = run(http, {"source_code": source, "language_id": PY, **limits})
    assert whole["status"]["id"] in (5, 11, 12), whole  # the sums are over: time or memory stops it
    each = run(http, {"source_code": source, "language_id": PY, **limits,
                      "enable_per_process_and_thread_time_limit": True,
                      "enable_per_process_and_thread_memory_limit": True})
    assert each["status"]["id"] == 3 and each["stdout"] == "both done\n", each
    assert float(each["time"]) > 1 and each["enable_per_process_and_thread_time_limit"] is True
    # Per process, one process over the memory limit still fails to get it.
    big = run(http, {"source_code": "b = bytearray(150 << 20)", "language_id": PY, "memory_limit": 100000,
                     "enable_per_process_and_thread_memory_limit": True})
    assert big["status"]["id"] == 11 and "MemoryError" in big["stderr"], big


def test_memory_limit_says_so_in_message(http):
    source = "x = bytearray(200 * 1024 * 1024)\nprint(len(x))"
    body = run(http, {"source_code": source, "language_id": PY, "memory_limit": 64000})
    assert body["status"]["id"] in (11, 12)
    assert body["message"] == "Memory limit exceeded"


def test_output_options_arguments_and_runs(http):
    # (One stream, in write order, as isolate's: stdout flushed before stderr is written.)
    source = "import sys\nprint(sys.argv[1:], flush=True)\nprint('err', file=sys.stderr)"
    body = run(http, {"source_code": source, "language_id": PY, "command_line_arguments": "a 'b c'",
                      "redirect_stderr_to_stdout": True, "number_of_runs": 2})
    assert body["stdout"] == "['a', 'b c']\nerr\n" and body["stderr"] is None
    assert body["number_of_runs"] == 2 and body["command_line_arguments"] == "a 'b c'"
    body = run(http, {"source_code": "#include <stdio.h>\nint main(){printf(\"%d\", X);}",
                      "language_id": C, "compiler_options": "-DX=42"})
    assert body["stdout"] == "42" and body["compiler_options"] == "-DX=42"


def test_executable_language_44(http, tmp_path):
    source = tmp_path / "hello.c"
    source.write_text('#include <stdio.h>\nint main(){puts("static hello"); return 0;}\n')
    binary = tmp_path / "hello"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(source)], check=True)
    body = run(http, {"source_code": b64(binary.read_bytes()), "language_id": 44}, base64_encoded="true")
    assert body["status"]["id"] == 3, body
    assert base64.b64decode(body["stdout"]) == b"static hello\n"
    body = run(http, {"source_code": b64("garbage, not a program"), "language_id": 44}, base64_encoded="true")
    assert body["status"] == {"id": 14, "description": "Exec Format Error"}


def test_multi_file_program_89(http):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("compile", "gcc -o prog main.c\n")
        zf.writestr("run", "./prog\n")
        zf.writestr("main.c", '#include <stdio.h>\nint main(){puts("multi");}\n')
    body = run(http, {"language_id": 89, "additional_files": b64(archive.getvalue())})
    assert body["status"]["id"] == 3, body
    assert body["stdout"] == "multi\n"
    assert zipfile.ZipFile(io.BytesIO(base64.b64decode(body["additional_files"]))).namelist() == ["compile", "run", "main.c"]
    response = http.post("/submissions", json={"language_id": 89})
    assert response.json() == {"additional_files": ["can't be blank"]}


def test_multi_file_compile_that_litters_its_box_is_a_compilation_error_that_says_why(http):
    # A hostile `compile` script: what it printed and why there is no program,
    # never an Internal Error.
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("compile", "echo 'main.c: warning: littering'\nfor i in $(seq 25000); do : > f$i; done\n")
        zf.writestr("run", "true\n")
    body = run(http, {"language_id": 89, "additional_files": b64(archive.getvalue())})
    assert body["status"] == {"id": 6, "description": "Compilation Error"}, body
    assert body["compile_output"] == ("main.c: warning: littering\n"
                                      "compilation failed: too many files in the box to collect\n")
    assert body["message"] is None


# ---------------------------------------------------------------- wait


def test_wait_survives_a_client_that_disconnects(http, server):
    marker = uuid.uuid4().hex
    body = json.dumps({"source_code": f"import time\ntime.sleep(1)\nprint('{marker}')",
                       "language_id": PY, "stdin": marker}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /submissions?wait=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        # ...and hang up without reading the answer.
    # Find it among the newest submissions by its stdin, and see it finish.
    deadline = time.monotonic() + 30
    token = None
    while token is None and time.monotonic() < deadline:
        page = http.get("/submissions", params={"fields": "token,stdin", "per_page": 50}, headers=ADMIN_HEADERS).json()
        token = next((s["token"] for s in page["submissions"] if s["stdin"] == marker), None)
        time.sleep(0.05)
    assert token is not None
    done = wait_done(http, token)
    assert done["status"]["id"] == 3 and done["stdout"] == marker + "\n"


# ---------------------------------------------------------------- batch


def test_batch_create_and_get(http):
    items = [
        {"source_code": "print(1)", "language_id": PY},
        {"source_code": "print(2)", "language_id": 9999},
        {"source_code": "print(3)", "language_id": PY, "stdin": "x"},
    ]
    response = http.post("/submissions/batch", json={"submissions": items})
    assert response.status_code == 201
    answers = response.json()
    assert set(answers[0]) == {"token"} and set(answers[2]) == {"token"}
    assert answers[1] == {"language_id": ["language with id 9999 doesn't exist"]}
    for answer in (answers[0], answers[2]):
        wait_done(http, answer["token"])
    unknown = str(uuid.uuid4())
    got = http.get("/submissions/batch", params={"tokens": f"{answers[2]['token']},{unknown},{answers[0]['token']}",
                                                 "fields": "stdout,stdin"}).json()
    assert got == {"submissions": [{"stdout": "3\n", "stdin": "x"}, None, {"stdout": "1\n", "stdin": None}]}
    response = http.get("/submissions/batch", params={"tokens": answers[0]["token"], "fields": "nope"})
    assert response.status_code == 400
    # An empty item keeps its place (null), as in Judge0: the answer lines up with the tokens asked.
    got = http.get("/submissions/batch", params={"tokens": f",{answers[0]['token']},,{answers[2]['token']},",
                                                 "fields": "stdout"}).json()
    assert got == {"submissions": [None, {"stdout": "1\n"}, None, {"stdout": "3\n"}]}
    for nothing in ("", ",", " , "):
        response = http.get("/submissions/batch", params={"tokens": nothing})
        assert response.status_code == 400, nothing
        assert response.json() == {"error": "there should be at least one submission in a batch"}


def test_batch_tokens_may_come_in_a_header_as_judge0_reads_them_first(http):
    token = http.post("/submissions", params={"wait": "true"},
                      json={"source_code": "print(5)", "language_id": PY}).json()["token"]
    unknown = str(uuid.uuid4())
    got = http.get("/submissions/batch", params={"fields": "stdout", "tokens": unknown},
                   headers={"tokens": f"{token},{unknown}"})
    assert got.status_code == 200, got.text
    assert got.json() == {"submissions": [{"stdout": "5\n"}, None]}
    got = http.get("/submissions/batch", headers={"tokens": ""}, params={"tokens": token})
    assert (got.status_code, got.json()) == (400, {"error": "there should be at least one submission in a batch"})


def test_batch_errors(http):
    response = http.post("/submissions/batch", json={"submissions": [{"language_id": 9999}]})
    assert response.status_code == 422
    assert response.json() == [{"language_id": ["language with id 9999 doesn't exist"], "source_code": ["can't be blank"]}]
    response = http.post("/submissions/batch", json={"submissions": []})
    assert response.status_code == 400 and "at least one" in response.json()["error"]
    response = http.post("/submissions/batch", json={"submissions": [{"source_code": "1", "language_id": PY}] * 21})
    assert response.status_code == 400
    assert response.json() == {"error": "number of submissions in a batch should be less than or equal to 20"}
    # No submissions at all (no key, null, no body, a bare list): Judge0 counts none.
    for body in ({"nope": 1}, {"submissions": None}, None, [{"source_code": "1", "language_id": PY}]):
        response = http.post("/submissions/batch", json=body)
        assert response.status_code == 400, body
        assert response.json() == {"error": "there should be at least one submission in a batch"}, body
    response = http.post("/submissions/batch", json={"submissions": {"source_code": "1", "language_id": PY}})
    assert response.status_code == 400 and response.json() == {"error": "submissions must be an array"}
    # wait is not for batches: ignored, as Judge0 does (only its create checks wait).
    response = http.post("/submissions/batch", params={"wait": "true"}, json={"submissions": [{"source_code": "1", "language_id": PY}]})
    assert response.status_code == 201 and [set(item) for item in response.json()] == [{"token"}]
    wait_done(http, response.json()[0]["token"])


def test_batch_base64(http):
    response = http.post("/submissions/batch", params={"base64_encoded": "true"},
                         json={"submissions": [{"source_code": b64("print(input())"), "language_id": PY, "stdin": b64("z")}]})
    token = response.json()[0]["token"]
    wait_done(http, token)
    got = http.get("/submissions/batch", params={"tokens": token, "base64_encoded": "true"}).json()
    assert got["submissions"][0]["stdout"] == "ego=\n"


# ---------------------------------------------------------------- list and delete (authorization)


def test_list_needs_authorization_and_pages(http):
    assert http.get("/submissions").status_code == 403
    assert http.get("/submissions", headers={"X-Auth-User": "nope"}).status_code == 403
    for _ in range(3):
        http.post("/submissions", json={"source_code": "print(1)", "language_id": PY})
    page = http.get("/submissions", params={"per_page": 2}, headers=ADMIN_HEADERS).json()
    assert len(page["submissions"]) == 2
    meta = page["meta"]
    assert set(meta) == {"current_page", "next_page", "prev_page", "total_pages", "total_count"}
    assert meta["current_page"] == 1 and meta["next_page"] == 2 and meta["prev_page"] is None
    assert meta["total_count"] >= 3 and meta["total_pages"] == -(-meta["total_count"] // 2)
    assert list(page["submissions"][0]) == DEFAULT_FIELDS
    second = http.get("/submissions", params={"per_page": 2, "page": 2}, headers=ADMIN_HEADERS).json()
    assert second["meta"]["prev_page"] == 1
    by_query = http.get("/submissions", params={"X-Auth-User": ADMIN, "per_page": 2})  # (ours: UTF-8)
    assert by_query.status_code == 200
    response = http.get("/submissions", params={"page": -4}, headers=ADMIN_HEADERS)
    assert response.status_code == 400 and response.json() == {"error": "invalid page: -4"}
    response = http.get("/submissions", params={"page": "\u0662"}, headers=ADMIN_HEADERS)  # Ruby's to_i: 0
    assert response.status_code == 400 and response.json() == {"error": "invalid page: 0"}
    response = http.get("/submissions", params={"fields": "zzz"}, headers=ADMIN_HEADERS)
    assert response.status_code == 400


def test_list_meta_counts_pages_as_will_paginate_does_for_judge0(make_server):
    srv = make_server({"STOCKADE_AUTHZ_TOKEN": ADMIN})
    with srv.client(headers=ADMIN_HEADERS) as http:
        # No submission at all: one empty page.
        body = http.get("/submissions").json()
        assert body == {"submissions": [], "meta": {"current_page": 1, "next_page": None, "prev_page": None,
                                                    "total_pages": 1, "total_count": 0}}
        for _ in range(3):  # (an Executable that is not one: Exec Format Error at once, nothing runs)
            http.post("/submissions", json={"source_code": "not a program", "language_id": 44})
        meta = http.get("/submissions", params={"per_page": 2, "page": 2}).json()["meta"]
        assert meta == {"current_page": 2, "next_page": None, "prev_page": 1, "total_pages": 2, "total_count": 3}
        # Past the last page: empty, and the previous page is still the one before.
        body = http.get("/submissions", params={"per_page": 2, "page": 5}).json()
        assert body == {"submissions": [], "meta": {"current_page": 5, "next_page": None, "prev_page": 4,
                                                    "total_pages": 2, "total_count": 3}}


def test_list_gives_as_many_as_per_page_asks(make_server):
    srv = make_server({"STOCKADE_AUTHZ_TOKEN": ADMIN})
    with srv.client(headers=ADMIN_HEADERS) as http:
        for size in (20, 20, 20, 20, 20, 5):  # (Exec Format Errors: nothing runs)
            response = http.post("/submissions/batch", json={"submissions": [
                {"source_code": "not a program", "language_id": 44}] * size})
            assert response.status_code == 201
        body = http.get("/submissions", params={"per_page": 150, "fields": "token"}).json()
        assert len(body["submissions"]) == 105
        assert body["meta"] == {"current_page": 1, "next_page": None, "prev_page": None,
                                "total_pages": 1, "total_count": 105}
        # Without per_page (or with 0): Judge0's 20.
        for params in ({}, {"per_page": 0}):
            body = http.get("/submissions", params={**params, "fields": "token"}).json()
            assert len(body["submissions"]) == 20 and body["meta"]["total_pages"] == 6


def test_delete(http):
    token = run(http, {"source_code": "print('bye')", "language_id": PY})["token"]
    assert http.delete(f"/submissions/{token}").status_code == 403
    response = http.delete(f"/submissions/{token}", headers=ADMIN_HEADERS, params={"fields": "stdout,status_id"})
    assert response.status_code == 200
    assert response.json() == {"stdout": "YnllCg==\n", "status_id": 3}  # always base64
    assert http.get(f"/submissions/{token}").status_code == 404
    assert http.delete(f"/submissions/{token}", headers=ADMIN_HEADERS).status_code == 404


def test_delete_refused_while_queued_or_running(http):
    token = http.post("/submissions", json={"source_code": "import time; time.sleep(1.5)", "language_id": PY}).json()["token"]
    response = http.delete(f"/submissions/{token}", headers=ADMIN_HEADERS)
    assert response.status_code == 400
    assert response.json()["error"] in (
        "submission cannot be deleted because its status is 1 (In Queue)",
        "submission cannot be deleted because its status is 2 (Processing)",
    )
    wait_done(http, token)


def test_unknown_route_and_method_keep_the_error_shape(http):
    response = http.get("/nothing-here")
    assert response.status_code == 404 and "error" in response.json()
    response = http.put("/languages")
    assert response.status_code == 405 and "error" in response.json()


def test_a_page_past_any_integer_is_an_empty_page(http):
    for page, number in (("922337203685477580", 922337203685477580), ("9" * 5000, 2**63 - 1)):
        response = http.get("/submissions", params={"page": page, "fields": "token"}, headers=ADMIN_HEADERS)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["submissions"] == [] and body["meta"]["next_page"] is None
        assert body["meta"]["current_page"] == number and body["meta"]["prev_page"] == number - 1
    response = http.get("/submissions", params={"per_page": "9" * 5000, "fields": "token"}, headers=ADMIN_HEADERS)
    assert response.status_code == 200
    body = response.json()
    assert len(body["submissions"]) == body["meta"]["total_count"] and body["meta"]["total_pages"] == 1
    response = http.get("/submissions", params={"page": "-" + "9" * 5000}, headers=ADMIN_HEADERS)
    assert response.status_code == 400 and response.json() == {"error": f"invalid page: {-(2**63 - 1)}"}


def test_multi_file_program_89_takes_no_source_code(http):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("run", "echo run\n")
    files = b64(archive.getvalue())
    response = http.post("/submissions", json={"language_id": 89, "source_code": "echo hi", "additional_files": files})
    assert response.status_code == 422 and response.json() == {"source_code": ["must be blank"]}
    # Blank is absent, as in Rails: accepted, and run from the zip alone.
    body = run(http, {"language_id": 89, "source_code": " \n", "additional_files": files})
    assert body["status"]["id"] == 3 and body["stdout"] == "run\n", body
    # An empty source (what the SDK sends) is shown back as sent, as Judge0 stores it.
    body = run(http, {"language_id": 89, "source_code": "", "additional_files": files})
    assert (body["status"]["id"], body["stdout"], body["source_code"]) == (3, "run\n", ""), body


def test_empty_strings_are_shown_back_as_empty_strings_and_absent_fields_as_null(http):
    # Judge0 stores "" as "" (Rails): a client reads back what it sent.
    empty = dict.fromkeys(("compiler_options", "command_line_arguments", "callback_url", "additional_files"), "")
    body = run(http, {"source_code": "int main(){return 0;}", "language_id": C, **empty})
    assert body["status"]["id"] == 3, body
    assert {name: body[name] for name in empty} == empty
    body = run(http, {"source_code": b64("print(1)"), "language_id": PY, **empty}, base64_encoded="true")
    assert body["status"]["id"] == 3 and {name: body[name] for name in empty} == empty
    body = run(http, {"source_code": "print(1)", "language_id": PY})
    assert {name: body[name] for name in empty} == dict.fromkeys(empty)


def test_cors_any_origin_by_default_as_judge0(http):
    origin = {"Origin": "https://ide.example.org"}
    preflight = http.options("/submissions", params={"base64_encoded": "true", "wait": "true"}, headers={
        **origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-auth-token"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"].split(", ")
    assert preflight.headers["access-control-allow-headers"] == "content-type,x-auth-token"
    assert preflight.headers["access-control-max-age"] == "7200"
    response = http.get("/languages", headers=origin)
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "*"
    # Errors are readable by the page too.
    response = http.get(f"/submissions/{uuid.uuid4()}", headers=origin)
    assert response.status_code == 404 and response.headers["access-control-allow-origin"] == "*"
    # Without an Origin, nothing changes.
    assert "access-control-allow-origin" not in http.get("/languages").headers


def test_a_trailing_slash_is_the_same_route(http):
    response = http.post("/submissions/", params={"wait": "true", "fields": "stdout"},
                         json={"source_code": "print('slash')", "language_id": PY})
    assert response.status_code == 201 and response.json() == {"stdout": "slash\n"}
    token = http.post("/submissions/", json={"source_code": "print(2)", "language_id": PY}).json()["token"]
    assert http.get(f"/submissions/{token}/", params={"fields": "token"}).json() == {"token": token}
    for path in ("/languages", "/languages/71", "/about", "/statuses"):
        response = http.get(path + "/")
        assert response.status_code == 200 and response.json() == http.get(path).json(), path
    response = http.get("/submissions/batch/", params={"tokens": token, "fields": "token"})
    assert response.status_code == 200 and response.json() == {"submissions": [{"token": token}]}
    response = http.get("/submissions//", params={"fields": "token"}, headers=ADMIN_HEADERS)
    assert response.status_code == 200 and "submissions" in response.json()


def test_statistics_are_cached_for_ten_minutes_as_judge0(http):
    first = http.get("/statistics").json()
    created = dt.datetime.strptime(first["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    until = dt.datetime.strptime(first["cached_until"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert until - created == dt.timedelta(minutes=10)
    days = first["submissions"]["last_30_days"]
    today = created.date()
    assert list(days) == [str(today - dt.timedelta(days=n)) for n in range(1, 31)]
    counts = [item["count"] for item in first["statuses"]]
    assert counts == sorted(counts, reverse=True)
    http.post("/submissions", json={"source_code": "print(1)", "language_id": PY})
    assert http.get("/statistics").json() == first  # the same, until cached_until
    fresh = http.get("/statistics", params={"invalidate_cache": "true"}).json()
    assert fresh["submissions"]["total"] > first["submissions"]["total"] and fresh["created_at"] != first["created_at"]


def test_head_is_answered_for_get_routes(http):
    for path in ("/about", "/languages", "/version", "/statuses"):
        got = http.get(path)
        response = http.head(path)
        assert response.status_code == 200 and response.content == b"", path
        assert response.headers["content-length"] == str(len(got.content))
        assert response.headers["content-type"] == got.headers["content-type"]
    assert http.head(f"/submissions/{uuid.uuid4()}").status_code == 404
    # The same connection goes on with a GET: no body was left on the wire.
    assert http.get("/about").json()["version"] == "1.13.1"


def test_limits_are_shown_as_given(http):
    # Judge0 stores a limit as a decimal: 2.12345 comes back as "2.12345", not rounded.
    body = run(http, {"source_code": "print(1)", "language_id": PY, "cpu_time_limit": 2.12345,
                      "wall_time_limit": 7.5, "cpu_extra_time": 0.0004})
    assert (body["cpu_time_limit"], body["wall_time_limit"], body["cpu_extra_time"]) == ("2.12345", "7.5", "0.0004")
    assert len(body["time"].split(".")[1]) <= 3  # a measured time: milliseconds
