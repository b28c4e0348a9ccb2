"""Additional files: a user's zip, unpacked *inside a box* by a fixed script,
with caps on unpacked size, entry count and compression ratio; absolute paths,
`..`, links and special files are refused. The host never unpacks anything: it
only reads the regular files the box left (no-follow) and checks their names."""

from __future__ import annotations

import json
from dataclasses import dataclass

from stockade.errors import InvalidSubmission, SandboxError
from stockade.sandbox.model import Limits, MiB, Status
from stockade.sandbox.workdir import File, check_relpath

PYTHON = "/usr/bin/python3"
ZIP_NAME = "additional_files.zip"
OUT_DIR = "unpacked"
REFUSED = 3  # the script's exit code for a refused archive


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on one additional-files zip (Judge0: 10 MB unpacked)."""

    max_unpacked: int = 10 * 1000 * 1000
    max_entries: int = 1000
    max_ratio: int = 200  # unpacked / compressed, for entries bigger than ratio_floor
    ratio_floor: int = 1 * MiB
    max_zip: int = 20 * MiB
    # Directories the entries' paths make (at most max_entries of them) and how deep
    # they nest: the host reads the unpacked tree back, and stops past 20000 entries
    # or 128 levels (a box's tree is not for it to walk without end).
    max_depth: int = 64


# Runs inside the box as `python3 -I -S -c SCRIPT caps...`. Fixed text: no part of
# it is ever built from user input; the caps are our integers, passed as argv.
SCRIPT = r"""
import json, os, stat, sys, zipfile
MAX_BYTES, MAX_ENTRIES, MAX_RATIO, RATIO_FLOOR, MAX_DEPTH = (int(a) for a in sys.argv[1:6])
def refuse(why):
    sys.stderr.write(why + "\n")
    sys.exit(3)
try:
    archive = zipfile.ZipFile("/box/" + sys.argv[6])
    infos = archive.infolist()
except Exception as exc:
    refuse("additional files are not a valid zip archive (%s)" % exc)
if len(infos) > MAX_ENTRIES:
    refuse("additional files: %d entries, more than %d" % (len(infos), MAX_ENTRIES))
plan, seen, dirs, declared = [], set(), set(), 0
for info in infos:
    name = info.filename
    if "\\" in name or "\0" in name or any(ord(c) < 32 for c in name):
        refuse("additional files: invalid name %r" % name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        refuse("additional files: absolute path %r refused" % name)
    parts = name.split("/")
    if ".." in parts:
        refuse("additional files: path %r leaves the box ('..')" % name)
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        refuse("additional files: link %r refused" % name)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        refuse("additional files: special file %r refused" % name)
    if info.flag_bits & 0x1:
        refuse("additional files: encrypted entry %r refused" % name)
    clean = [p for p in parts if p not in ("", ".")]
    if info.is_dir() or kind == stat.S_IFDIR:
        continue
    if not clean:
        refuse("additional files: invalid name %r" % name)
    rel = "/".join(clean)
    if len(clean) - 1 > MAX_DEPTH:
        refuse("additional files: %r is nested more than %d directories deep" % (rel, MAX_DEPTH))
    dirs.update("/".join(clean[:i]) for i in range(1, len(clean)))
    if len(dirs) > MAX_ENTRIES:
        refuse("additional files: more than %d directories" % MAX_ENTRIES)
    if rel in seen:
        refuse("additional files: %r appears twice" % rel)
    seen.add(rel)
    declared += info.file_size
    if declared > MAX_BYTES:
        refuse("additional files unpack to more than %d bytes" % MAX_BYTES)
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        refuse("additional files: %r is compressed more than %d:1 (a zip bomb?)" % (rel, MAX_RATIO))
    plan.append((info, rel, bool((info.external_attr >> 16) & 0o111)))
out = "/box/" + sys.argv[7]
os.mkdir(out)
written, manifest = 0, []
for info, rel, executable in plan:
    target = os.path.join(out, rel)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.open(info) as src, open(target, "xb") as dst:
            while True:
                chunk = src.read(1 << 16)
                if not chunk:
                    break
                written += len(chunk)
                if written > MAX_BYTES:
                    refuse("additional files unpack to more than %d bytes" % MAX_BYTES)
                dst.write(chunk)
    except (OSError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        refuse("additional files: cannot unpack %r (%s)" % (rel, exc))
    manifest.append([rel, executable])
json.dump(manifest, sys.stdout)
"""


def extraction_argv(limits: ArchiveLimits) -> list[str]:
    """The box command that unpacks ZIP_NAME into OUT_DIR."""
    return [PYTHON, "-I", "-S", "-c", SCRIPT, str(limits.max_unpacked), str(limits.max_entries),
            str(limits.max_ratio), str(limits.ratio_floor), str(limits.max_depth), ZIP_NAME, OUT_DIR]


def extraction_limits(limits: ArchiveLimits) -> Limits:
    return Limits(cpu_time=5.0, wall_time=15.0, memory=128 * MiB + 2 * limits.max_unpacked,
                  processes=4, file_size=limits.max_unpacked + 1, output=1 * MiB)


async def extract(sandbox, data: bytes, limits: ArchiveLimits | None = None) -> dict[str, File]:
    """Unpack a zip in a box; returns {relative path: File(content, mode)}.
    Raises InvalidSubmission for a refused archive, SandboxError if the box failed."""
    limits = limits or ArchiveLimits()
    if len(data) > limits.max_zip:
        raise InvalidSubmission(f"additional files: the zip is bigger than {limits.max_zip} bytes")
    result = await sandbox.run(extraction_argv(limits), files={ZIP_NAME: data},
                               limits=extraction_limits(limits), collect=[OUT_DIR + "/*"])
    return unpacked_files(result, limits)


def unpacked_files(result, limits: ArchiveLimits) -> dict[str, File]:
    """Check what the extraction box reports against what it left behind."""
    if result.status is Status.sandbox_error:
        raise SandboxError(f"extracting additional files failed: {result.message}")
    if result.status is Status.runtime_error and result.exit_code == REFUSED:
        why = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InvalidSubmission(why[-1] if why else "additional files refused")
    if result.status is not Status.ok:
        raise InvalidSubmission(f"additional files could not be unpacked ({result.status.value})")
    try:
        manifest = json.loads(result.stdout)
        entries = {str(rel): bool(exe) for rel, exe in manifest}
    except (ValueError, TypeError) as exc:
        raise SandboxError(f"extraction box gave no manifest: {exc}") from None
    prefix = OUT_DIR + "/"
    found = {name[len(prefix):]: content for name, content in result.files.items() if name.startswith(prefix)}
    if set(found) != set(entries):
        raise SandboxError("extraction box left other files than it reported")
    if sum(len(c) for c in found.values()) > limits.max_unpacked:
        raise InvalidSubmission(f"additional files unpack to more than {limits.max_unpacked} bytes")
    files: dict[str, File] = {}
    for rel, content in found.items():
        check_relpath(rel)  # a second look, on the host side
        files[rel] = File(content, 0o755 if entries[rel] else 0o644)
    return files
