"""`stockade doctor` on core dumps: a kernel.core_pattern that pipes dumps to
a host helper is named, since a box's program can lower its own RLIMIT_CORE
to 0, and a piped dump ignores a limit of 0 (the helper runs as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stockade.cli.doctor import core_dumps


def test_a_piped_core_pattern_is_reported(tmp_path):
    pattern = tmp_path / "core_pattern"
    pattern.write_text("|/usr/share/apport/apport -p%p -s%s -c%c -d%d -P%P -u%u -g%g -- %E\n")
    layer = core_dumps(str(pattern))
    assert layer.active is False and layer.required is False
    assert "/usr/share/apport/apport" in layer.detail and "core_pattern" in layer.detail


def test_a_core_pattern_socket_is_reported(tmp_path):
    pattern = tmp_path / "core_pattern"
    pattern.write_text("@/run/systemd/coredump\n")
    layer = core_dumps(str(pattern))
    assert layer.active is False and "/run/systemd/coredump" in layer.detail


def test_a_file_core_pattern_is_fine(tmp_path):
    pattern = tmp_path / "core_pattern"
    pattern.write_text("core\n")
    layer = core_dumps(str(pattern))
    assert layer.active is True and "(core)" in layer.detail


def test_this_hosts_core_pattern_is_read():
    layer = core_dumps()
    assert layer.name == "core dumps" and "cannot read" not in layer.detail


def test_helpers_missing_from_another_environment_are_told_where_and_how(tmp_path):
    """Installed with pip into another environment, doctor said "run `make
    setup`", which builds the helpers into the checkout's .venv only: they
    stayed missing where this Stockade looks for them (sys.prefix/libexec)."""
    if os.geteuid() != 0:
        pytest.skip("the launcher's layers are reported as root")
    program = (f"import sys; sys.prefix = {str(tmp_path)!r}; sys.argv = ['stockade', 'doctor', '--json'];"
               " from stockade.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    layers = {layer["name"]: layer["detail"] for layer in json.loads(done.stdout)["layers"]}
    for name in ("launcher", "exit status"):
        assert f"looked for in {tmp_path / 'libexec'}: `make setup` builds them into the checkout's .venv" \
               in layers[name], layers[name]
        assert "Using the library from another project" in layers[name] and "run `make setup`" not in layers[name]
