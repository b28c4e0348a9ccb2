"""Additional files: a zip unpacked inside a box, with caps; bombs, traversal,
links and special files refused; nothing ever lands outside the box."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import zipfile

import pytest

from stockade.engine.archive import SCRIPT, ArchiveLimits, extract, extraction_argv
from stockade.errors import InvalidSubmission
from tests.conftest import leftovers


@pytest.fixture(autouse=True)
def clean_after(sandbox):
    yield
    assert leftovers(sandbox) == []


def make_zip(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """entries: (name, bytes) or (ZipInfo, bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def info(name: str, mode: int) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name)
    entry.external_attr = mode << 16
    entry.create_system = 3  # unix
    return entry


def unpack(sandbox, data, **caps):
    return asyncio.run(extract(sandbox, data, ArchiveLimits(**caps) if caps else None))


def test_unpacks_files_with_directories_and_exec_bits(sandbox):
    data = make_zip([("data.txt", b"hello\n"), ("dir/sub/deep.bin", bytes(range(256))),
                     (info("tool.sh", stat.S_IFREG | 0o755), b"#!/bin/sh\necho hi\n"),
                     ("emptydir/", b""), ("./dot/./x", b"x")])
    files = unpack(sandbox, data)
    assert set(files) == {"data.txt", "dir/sub/deep.bin", "tool.sh", "dot/x"}
    assert files["dir/sub/deep.bin"].content == bytes(range(256))
    assert files["tool.sh"].mode == 0o755 and files["data.txt"].mode == 0o644


@pytest.mark.parametrize("name", ["../escape.txt", "a/../../escape.txt", "/etc/evil", "/tmp/evil",
                                  "C:/evil", "a\\..\\..\\evil"])
def test_paths_leaving_the_box_are_refused(sandbox, name):
    with pytest.raises(InvalidSubmission, match="additional files"):
        unpack(sandbox, make_zip([("fine.txt", b"ok"), (name, b"evil")]))
    for host_path in ("/etc/evil", "/tmp/evil", "/escape.txt"):
        assert not os.path.exists(host_path)


@pytest.mark.parametrize("mode", [stat.S_IFLNK | 0o777, stat.S_IFCHR | 0o644, stat.S_IFIFO | 0o644])
def test_links_and_special_files_are_refused(sandbox, mode):
    data = make_zip([(info("link", mode), b"/etc/shadow")])
    with pytest.raises(InvalidSubmission, match="refused"):
        unpack(sandbox, data)


def test_a_zip_bomb_is_refused_by_ratio(sandbox):
    data = make_zip([("zeros", b"\0" * (8 * 1024 * 1024))])
    assert len(data) < 20_000
    with pytest.raises(InvalidSubmission, match="compressed more than"):
        unpack(sandbox, data, max_unpacked=50 * 1024 * 1024)


def test_unpacked_size_is_capped(sandbox):
    random_ish = os.urandom(300_000)
    data = make_zip([(f"f{i}", random_ish) for i in range(4)], zipfile.ZIP_STORED)
    with pytest.raises(InvalidSubmission, match="more than 1000000 bytes"):
        unpack(sandbox, data, max_unpacked=1_000_000)
    assert len(unpack(sandbox, data, max_unpacked=2_000_000)) == 4


def test_a_lying_size_header_is_caught_while_unpacking(sandbox):
    # Declares 10 bytes, holds 2 MB: the box reads no more than declared, and
    # the CRC check fails, so the archive is refused.
    data = bytearray(make_zip([("liar", b"A" * 2_000_000)], zipfile.ZIP_STORED))
    for header, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(header)
        data[at + offset:at + offset + 4] = (10).to_bytes(4, "little")
    with pytest.raises(InvalidSubmission):
        unpack(sandbox, bytes(data))


def test_entry_count_is_capped(sandbox):
    data = make_zip([(f"f{i}", b"") for i in range(30)])
    with pytest.raises(InvalidSubmission, match="entries"):
        unpack(sandbox, data, max_entries=20)


def test_many_sibling_directories_unpack(sandbox):
    # An ordinary tree (one directory per entry): the host reads it back whatever
    # its width; it used to stop at 256 sibling directories with a SandboxError.
    data = make_zip([(f"case{i}/input.txt", b"%d\n" % i) for i in range(400)])
    files = unpack(sandbox, data)
    assert len(files) == 400 and files["case399/input.txt"].content == b"399\n"


def test_directory_count_and_depth_are_capped(sandbox):
    # Few entries, many directories: refused in the box (an InvalidSubmission),
    # never a tree the host gives up reading (a SandboxError).
    deep_each = [("/".join([f"top{j}"] + ["d"] * 30) + "/f", b"x") for j in range(800)]
    with pytest.raises(InvalidSubmission, match="directories"):
        unpack(sandbox, make_zip(deep_each))
    deep = "/".join(["d"] * 70) + "/f"
    with pytest.raises(InvalidSubmission, match="nested more than 64 directories"):
        unpack(sandbox, make_zip([(deep, b"x")]))
    assert set(unpack(sandbox, make_zip([("/".join(["d"] * 64) + "/f", b"x")]))) == {"/".join(["d"] * 64) + "/f"}


def test_duplicates_and_garbage_are_refused(sandbox):
    with pytest.raises(InvalidSubmission, match="twice"):
        unpack(sandbox, make_zip([("a", b"1"), ("./a", b"2")]))
    with pytest.raises(InvalidSubmission, match="not a valid zip"):
        unpack(sandbox, b"this is not a zip")
    with pytest.raises(InvalidSubmission, match="bigger than"):
        unpack(sandbox, b"PK" + b"\0" * 2000, max_zip=1000)


def test_the_extraction_command_is_fixed():
    argv = extraction_argv(ArchiveLimits())
    assert argv[:5] == ["/usr/bin/python3", "-I", "-S", "-c", SCRIPT]
    assert all(a.isdigit() or a in (SCRIPT,) or "/" in a or a.isidentifier() or a.endswith(".zip")
               for a in argv[5:])
