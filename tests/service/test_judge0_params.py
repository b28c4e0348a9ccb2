"""Forms and query strings read as Rails reads Judge0's params (params.py):
what an untrusted body may make of them."""

from __future__ import annotations

import asyncio
import sys

import pytest
from starlette.requests import Request

from stockade.service.judge0.params import MAX_NAME, MAX_PAIRS, BadBody, form_params, request_params


def test_a_form_is_bounded_as_racks_and_read_as_rack_reads_it():
    """A form (or query string) past Rack's bounds is a 400 before any pair is
    parsed, in Python, on the event loop: a 32 MiB form of `a[]=&` (6.7 million
    pairs) took 4.9 s and 1.6 GB; a 32 MiB name nested 32 levels deep, 1 GB."""
    # A full batch in a form: 20 submissions of every field, 300 pairs.
    fields = ("language_id", "source_code", "stdin", "expected_output", "cpu_time_limit", "cpu_extra_time",
              "wall_time_limit", "memory_limit", "stack_limit", "max_processes_and_or_threads",
              "enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit",
              "max_file_size", "redirect_stderr_to_stdout", "callback_url")
    batch = b"&".join(b"submissions[][%s]=1" % name.encode() for name in fields * 20)
    assert len(form_params(batch, "the form")["submissions"]) == 20
    assert len(form_params(b"a[]=1&" * (MAX_PAIRS - 1), "the form")["a"]) == MAX_PAIRS - 1
    for data, message in ((b"a[]=1&" * MAX_PAIRS, f"the form holds more than {MAX_PAIRS} parameters"),
                          (b"a" * (MAX_NAME + 1) + b"=1", f"the form holds a parameter name longer than {MAX_NAME} bytes"),
                          (b"a" + b"[b]" * 31 + b"[" + b"c" * 10**6 + b"]=1",
                           f"the form holds a parameter name longer than {MAX_NAME} bytes"),
                          # (Rack: "invalid %-encoding", a 400 in Rails; urllib kept it as it was)
                          (b"source_code=100%", "the form holds a % not followed by two hexadecimal digits"),
                          (b"stdin=%zz", "the form holds a % not followed by two hexadecimal digits"),
                          (b"stdin=%FF", "the form is not valid UTF-8"),
                          (b"stdin=\xff", "the form is not valid UTF-8")):
        with pytest.raises(BadBody) as caught:
            form_params(data, "the form")
        assert str(caught.value) == message, data
    # Rack's unescape: `+` a space before the escapes are read, any byte escaped.
    assert form_params(b"a=%2B+b%5Cx41\\x41%5c%25%26%3D%E2%82%AC&b=a=b&c&&=x", "the form") == {
        "a": "+ b\\x41\\x41\\%&=\u20ac", "b": "a=b", "c": ""}


def test_a_forms_escapes_are_decoded_at_c_speed():
    """urllib's unquote decodes each %XX in Python: a 32 MiB value of `%41`
    (11 million escapes, one pair) held the event loop 5.8 s. The Python
    calls made do not grow with the number of escapes."""
    def calls(data: bytes) -> int:
        count = 0

        def profile(_frame, event, _arg):
            nonlocal count
            count += event in ("call", "c_call")

        sys.setprofile(profile)
        try:
            form_params(data, "the form")
        finally:
            sys.setprofile(None)
        return count

    few, many = (b"source_code=" + b"%41a%E2%82%AC" * n for n in (10, 10_000))
    assert form_params(many, "the form")["source_code"] == "Aa\u20ac" * 10_000
    assert calls(many) == calls(few)


def test_a_parameter_given_two_ways_is_named_with_both():
    """`a[b]=1&a[]=2` said 'given both as a list and as one value': it was a hash."""
    for data, message in (
        (b"a[b]=1&a[]=2", "the parameter a is given both as a list and as a hash"),
        (b"a[b]=1&a[][c]=2", "the parameter a is given both as a list and as a hash"),
        (b"a[]=1&a[b]=2", "the parameter a is given both as a hash and as a list"),
        (b"a=1&a[]=2", "the parameter a is given both as a list and as one value"),
        (b"a=1&a[b]=2", "the parameter a is given both as a hash and as one value"),
    ):
        with pytest.raises(BadBody) as raised:
            form_params(data, "q")
        assert str(raised.value) == message, data


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_the_query_string_wins_over_the_body_as_in_rails(content_type):
    """Rails' params are request_parameters.merge(query_parameters): the
    query string's win. The body's won here, a Judge0 client got another run."""
    body = b'{"source_code": "print(2)", "stdin": "x"}' if content_type.endswith("json") else b"source_code=print(2)&stdin=x"
    scope = {"type": "http", "method": "POST", "path": "/submissions", "headers": [(b"content-type", content_type.encode())],
             "query_string": b"source_code=print(1)&language_id=71"}

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    params = asyncio.run(request_params(Request(scope, receive)))
    assert params == {"source_code": "print(1)", "stdin": "x", "language_id": "71"}
