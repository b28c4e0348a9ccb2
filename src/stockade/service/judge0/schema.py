"""OpenAPI descriptions of the request bodies. The routes validate bodies
themselves (Judge0's loose casting and error hash), so these only document."""

from __future__ import annotations

from typing import Any

_text = {"type": "string", "nullable": True}
_number = {"type": "number", "nullable": True}
_integer = {"type": "integer", "nullable": True}
_boolean = {"type": "boolean", "nullable": True}

SUBMISSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["language_id"],
    "properties": {
        "source_code": _text,
        "language_id": {"type": "integer"},
        "compiler_options": {"type": "string", "maxLength": 512, "nullable": True},
        "command_line_arguments": {"type": "string", "maxLength": 512, "nullable": True},
        "stdin": _text,
        "expected_output": _text,
        "cpu_time_limit": _number,
        "cpu_extra_time": _number,
        "wall_time_limit": _number,
        "memory_limit": _integer,
        "stack_limit": _integer,
        "max_processes_and_or_threads": _integer,
        "enable_per_process_and_thread_time_limit": _boolean,
        "enable_per_process_and_thread_memory_limit": _boolean,
        "max_file_size": _integer,
        "redirect_stderr_to_stdout": _boolean,
        "enable_network": _boolean,
        "number_of_runs": _integer,
        "additional_files": {"type": "string", "nullable": True, "description": "base64 of a zip"},
        "callback_url": {"type": "string", "nullable": True},
    },
}

SUBMISSION_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": SUBMISSION_SCHEMA}}},
}
BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["submissions"],
            "properties": {"submissions": {"type": "array", "items": SUBMISSION_SCHEMA}},
        }}},
    },
}
