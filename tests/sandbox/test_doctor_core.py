"""`stockade doctor` on core dumps: a kernel.core_pattern that pipes dumps to
a host helper is named, since a box's program can lower its own RLIMIT_CORE
to 0, and a piped dump ignores a limit of 0 (the helper runs as root)."""

from __future__ import annotations

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
