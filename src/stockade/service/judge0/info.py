"""Judge0's informational endpoints: about, config_info, system_info, workers,
statistics, version, license, isolate."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
from functools import lru_cache
from typing import Any

from stockade.service.judge0.format import STATUSES, timestamp
from stockade.settings import Settings

JUDGE0_VERSION = "1.13.1"  # the API version spoken; the SDK accepts only known ones

LICENSE = """Stockade is released under the MIT License.

Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software
without restriction, including without limitation the rights to use, copy, modify,
merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
permit persons to whom the Software is furnished to do so, subject to the following
conditions:

The above copyright notice and this permission notice shall be included in all copies
or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.
"""


def about() -> dict[str, str]:
    return {
        "version": JUDGE0_VERSION,
        "homepage": "https://pypi.org/project/stockade/",
        "source_code": "https://pypi.org/project/stockade/",
        "maintainer": "Stockade (a Judge0 CE 1.13.1 compatible server)",
    }


def config_info(settings: Settings) -> dict[str, Any]:
    """The 39 keys of Judge0 1.13.1's /config_info, from the settings."""
    s = settings
    return {
        "enable_wait_result": s.enable_wait_result,
        "enable_compiler_options": s.enable_compiler_options,
        "allowed_languages_for_compile_options": list(s.allowed_languages_for_compile_options),
        "enable_command_line_arguments": s.enable_command_line_arguments,
        "enable_submission_delete": s.enable_submission_delete,
        "enable_callbacks": s.enable_callbacks,
        "callbacks_max_tries": s.callbacks_max_tries,
        "callbacks_timeout": float(s.callbacks_timeout),
        "enable_additional_files": s.enable_additional_files,
        "max_queue_size": s.max_queue_size,
        "cpu_time_limit": float(s.cpu_time_limit),
        "max_cpu_time_limit": float(s.max_cpu_time_limit),
        "cpu_extra_time": float(s.cpu_extra_time),
        "max_cpu_extra_time": float(s.max_cpu_extra_time),
        "wall_time_limit": float(s.wall_time_limit),
        "max_wall_time_limit": float(s.max_wall_time_limit),
        "memory_limit": s.memory_limit,
        "max_memory_limit": s.max_memory_limit,
        "stack_limit": s.stack_limit,
        "max_stack_limit": s.max_stack_limit,
        "max_processes_and_or_threads": s.max_processes_and_or_threads,
        "max_max_processes_and_or_threads": s.max_max_processes_and_or_threads,
        "enable_per_process_and_thread_time_limit": s.enable_per_process_and_thread_time_limit,
        "allow_enable_per_process_and_thread_time_limit": s.allow_enable_per_process_and_thread_time_limit,
        "enable_per_process_and_thread_memory_limit": s.enable_per_process_and_thread_memory_limit,
        "allow_enable_per_process_and_thread_memory_limit": s.allow_enable_per_process_and_thread_memory_limit,
        "max_file_size": s.max_file_size,
        "max_max_file_size": s.max_max_file_size,
        "number_of_runs": s.number_of_runs,
        "max_number_of_runs": s.max_number_of_runs,
        "redirect_stderr_to_stdout": s.redirect_stderr_to_stdout,
        "max_extract_size": s.max_extract_size,
        "enable_batched_submissions": s.enable_batched_submissions,
        "max_submission_batch_size": s.max_submission_batch_size,
        "submission_cache_duration": float(s.submission_cache_duration),
        "use_docs_as_homepage": s.use_docs_as_homepage,
        # False unless an operator allows it: the box has no safe network yet.
        "allow_enable_network": s.allow_enable_network,
        "enable_network": s.enable_network,
        "maintenance_mode": s.maintenance_mode,
    }


@lru_cache(maxsize=1)
def system_info() -> dict[str, str]:
    """Like Judge0's (lscpu's fields, then memory), read from /proc."""
    info: dict[str, str] = {"Architecture": platform.machine(), "CPU(s)": str(os.cpu_count() or 1)}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    info.setdefault("Model name", value.strip())
                elif key == "vendor_id":
                    info.setdefault("Vendor ID", value.strip())
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            meminfo = {line.split(":")[0]: line.split(":")[1].strip() for line in fh if ":" in line}
        info["Mem"] = meminfo.get("MemTotal", "")
        info["Swap"] = meminfo.get("SwapTotal", "")
    except OSError:
        pass
    return info


@lru_cache(maxsize=1)
def sandbox_version() -> str:
    """GET /isolate: Judge0 prints isolate's version; we print the box's."""
    bwrap = shutil.which("bwrap") or "/usr/bin/bwrap"
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=5, env={}).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = "bubblewrap: not found"
    return f"Stockade sandbox (bubblewrap, seccomp, cgroups); not isolate.\n{out}\n"


STATISTICS_CACHE = dt.timedelta(minutes=10)  # Judge0's @@cache_duration


def statistics(raw: dict[str, Any], language_name: Any, database_size: int | None,
               now: dt.datetime | None = None) -> dict[str, Any]:
    """Judge0's /statistics from the store's counts: last_30_days is the 30 days
    before today, zero-filled, newest first; languages and statuses by count,
    most first; cached_until is when the route computes it again."""
    if now is None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    size = database_size or 0
    today = now.date()
    days = [str(today - dt.timedelta(days=back)) for back in range(1, 31)]
    return {
        "created_at": timestamp(now),
        "cached_until": timestamp(now + STATISTICS_CACHE),
        "submissions": {
            "total": raw["total"],
            "today": raw["today"],
            "last_30_days": {day: raw["days"].get(day, 0) for day in days},
        },
        "languages": [
            {"language": {"id": lid, "name": language_name(lid)}, "count": count}
            for lid, count in sorted(raw["languages"].items(), key=lambda item: -item[1])
        ],
        "statuses": [
            {"status": {"id": sid, "name": STATUSES.get(sid, "Unknown")}, "count": count}
            for sid, count in sorted(raw["statuses"].items(), key=lambda item: -item[1])
        ],
        "database": {"size_pretty": f"{size / 1024 / 1024:.1f} MB", "size_in_bytes": size},
    }
