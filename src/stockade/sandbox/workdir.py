"""The host side of /box: create it for a slot, write the files in, read chosen
files back out, and delete it without ever following a link the program planted.

Every write here happens *before* the program starts; after it ran, the
directory is only read (no-follow) and deleted (Judge0's CVE-2024-28185/28189)."""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from stockade.errors import LimitError, SandboxError


@dataclass(frozen=True)
class File:
    """A file for the box with its mode: `File(elf_bytes, 0o755)` for an executable."""

    content: bytes
    mode: int = 0o644


def check_relpath(name: str) -> list[str]:
    """'src/main.c' -> ['src', 'main.c']; absolute paths, '..' and NULs refused."""
    if not name or name.startswith("/") or "\0" in name:
        raise LimitError(f"invalid file name {name!r}: must be a relative path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise LimitError(f"invalid file name {name!r}: no '..' allowed")
    return parts


def make_box_dir(path: str, uid: int, gid: int, files: Mapping[str, bytes | File]) -> None:
    """Create `path` (0700, owned by the slot's uid) and write `files` into it.
    The directory is new and no program has run there yet, so O_EXCL and
    O_NOFOLLOW are belts on braces: nothing can be planted in it."""
    os.mkdir(path, 0o700)
    os.chown(path, uid, gid, follow_symlinks=False)
    write_files(path, uid, gid, files)


def write_files(path: str, uid: int, gid: int, files: Mapping[str, bytes | File]) -> None:
    """Write `files` into the box directory `path`, made by make_box_dir for a
    box whose program has not started yet (a warm box waits for its run)."""
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name, item in files.items():
            content, mode = (item.content, item.mode) if isinstance(item, File) else (item, 0o644)
            *dirs, leaf = check_relpath(name)
            parent = _make_dirs(dir_fd, dirs, uid, gid)
            try:
                fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent)
                try:
                    view = memoryview(content)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode & 0o777)  # never setuid/setgid/sticky bits
                finally:
                    os.close(fd)
            except FileExistsError:
                raise LimitError(f"file {name!r} given twice") from None
            finally:
                if parent != dir_fd:
                    os.close(parent)
    finally:
        os.close(dir_fd)


def copy_in(path: str, source: str, target: Sequence[str], max_total: int,
            listing: Sequence[os.DirEntry] | None = None) -> None:
    """Copy the tree `source` into the box directory `path` at `target` (parts of
    a relative path that does not exist yet), read-only for the box: everything
    is owned by the supervisor's uid (root), directories 0755, files 0644 or
    0755. Only directories and regular files are copied: a link is never
    followed, nor copied. LimitError past `max_total` bytes. `listing`:
    `source`'s entries as small_tree found them (not read again)."""
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        *parents, leaf = target
        parent = _make_dirs(dir_fd, parents, os.geteuid(), os.getegid())
        try:
            os.mkdir(leaf, 0o755, dir_fd=parent)
            into = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        finally:
            if parent != dir_fd:
                os.close(parent)
    finally:
        os.close(dir_fd)
    try:
        src = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        os.close(into)
        raise
    stack = [(src, into)]  # (source dir, copy dir) pairs still to copy; ours to close
    total = 0
    try:
        while stack:
            src, dst = stack[-1]
            entries = os.scandir(src) if listing is None else listing  # (the listing: the top's)
            listing = None
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(entry.name, 0o755, dir_fd=dst)
                    sub_src = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=src)
                    try:
                        sub_dst = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dst)
                    except OSError:
                        os.close(sub_src)
                        raise
                    stack.insert(0, (sub_src, sub_dst))
                elif stat.S_ISREG(st.st_mode):
                    total += st.st_size
                    if total > max_total:
                        raise LimitError(f"{source} is larger than {max_total} bytes")
                    _copy_file(entry.name, src, dst, 0o755 if st.st_mode & 0o100 else 0o644)
            stack.pop()
            os.close(src)
            os.close(dst)
    finally:
        for src, dst in stack:
            os.close(src)
            os.close(dst)


def _copy_file(name: str, src_dir: int, dst_dir: int, mode: int) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src_dir)
    try:
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dst_dir)
        try:
            while os.sendfile(dst, src, None, 1 << 24):
                pass
            os.fchmod(dst, mode)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _make_dirs(dir_fd: int, parts: list[str], uid: int, gid: int) -> int:
    fd = dir_fd
    for part in parts:
        try:
            os.mkdir(part, 0o755, dir_fd=fd)
            os.chown(part, uid, gid, dir_fd=fd, follow_symlinks=False)
        except FileExistsError:
            pass
        child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        if fd != dir_fd:
            os.close(fd)
        fd = child
    return fd


def collect(path: str, patterns: Sequence[str], max_total: int) -> dict[str, bytes]:
    """Read back the regular files of the box that match `patterns` (fnmatch on
    the path relative to /box). Links, devices and fifos are skipped; opening is
    O_NOFOLLOW and the type is checked on the open fd, so a file swapped for a
    link cannot redirect the read. Raises SandboxError past `max_total` bytes."""
    if not patterns:
        return {}
    if os.geteuid() != 0:
        # Rootless: the program ran as our own uid and may have closed /box
        # (chmod 0 /box, which made this a PermissionError out of the engine).
        # Every process of the box is dead by now: nothing can swap it.
        _open_up(path)
    out: dict[str, bytes] = {}
    total = 0
    for rel, dir_fd, name in _walk(path):
        if not any(fnmatch.fnmatchcase(rel, pattern) for pattern in patterns):
            continue
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            if total > max_total:
                raise SandboxError(f"collected files exceed {max_total} bytes")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            out[rel] = b"".join(chunks)
        finally:
            os.close(fd)
    return out


# What a box may make us walk when collecting (a program can nest directories
# far deeper and wider than any compiler output). One descriptor is open per
# level of the directory being read, so the depth is what costs descriptors.
_MAX_ENTRIES = 20000
_MAX_DEPTH = 128


def _walk(path: str) -> Iterator[tuple[str, int, str]]:
    """(relative path, parent dir fd, name) of every non-directory entry,
    descending only into real directories (fd-relative, never through links).

    Depth first: a directory is listed (within the entry budget) and closed to
    listing before its children are entered, so the descriptors held are those
    of its ancestors only, however many sibling directories there are."""
    top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    stack: list[tuple[str, int, list[tuple[str, bool]]]] = []  # (prefix, fd, entries left)
    seen = 0

    def listing(fd: int) -> list[tuple[str, bool]]:
        nonlocal seen
        found = []
        with os.scandir(fd) as entries:
            for entry in entries:
                seen += 1
                if seen > _MAX_ENTRIES:
                    raise SandboxError("too many files in the box to collect")
                found.append((entry.name, entry.is_dir(follow_symlinks=False)))
        found.reverse()  # popped from the end: in directory order
        return found

    try:
        entries = listing(top)
    except BaseException:
        os.close(top)
        raise
    stack.append(("", top, entries))
    try:
        while stack:
            prefix, fd, left = stack[-1]
            if not left:
                stack.pop()
                os.close(fd)
                continue
            name, is_dir = left.pop()
            rel = prefix + name
            if not is_dir:
                yield rel, fd, name
                continue
            if len(stack) >= _MAX_DEPTH:
                raise SandboxError("files nested too deep in the box to collect")
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                continue
            try:
                stack.append((rel + "/", child, listing(child)))
            except BaseException:
                os.close(child)
                raise
    finally:
        for _, fd, _ in stack:
            os.close(fd)


def remove_tree(path: str) -> None:
    """Delete a box directory, however deep the program nested it, without
    ever following a link it planted. Only called once every process of the box
    is dead, so nothing moves underneath.

    Subdirectories are renamed up to the top level (fd-relative renameat) before
    they are emptied, so the depth stays one: no recursion limit to hit, one
    open directory at a time. unlink of a symlink removes the link only."""
    try:
        os.rmdir(path)  # empty (a run that left nothing): one system call
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    rootless = os.geteuid() != 0
    try:
        if rootless:
            # The box's program runs as our own uid: it may have closed /box
            # itself (chmod 0 /box), which would keep us out for good.
            _open_up(path)
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        queue = [entry for entry in os.listdir(top)]
        counter = 0
        while queue:
            name = queue.pop()
            st = os.lstat(name, dir_fd=top)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=top)
                continue
            if rootless:
                # The program made its own directory unreadable.
                _open_up(name, top, st)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
            try:
                for child in os.listdir(sub):
                    child_st = os.lstat(child, dir_fd=sub)
                    if stat.S_ISDIR(child_st.st_mode):
                        if rootless:
                            # Moving a directory to another parent rewrites its
                            # "..": it needs our write permission on it too.
                            _open_up(child, sub, child_st)
                        flat = _free_name(top, counter)
                        counter += 1
                        os.rename(child, flat, src_dir_fd=sub, dst_dir_fd=top)
                        queue.append(flat)
                    else:
                        os.unlink(child, dir_fd=sub)
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)
    os.rmdir(path)


def small_tree(path: str, most: int, max_bytes: int) -> list[os.DirEntry] | None:
    """The entries of `path` when it is a directory of at most `most` regular
    files (no directory) of at most `max_bytes` in all, quick to copy on the
    event loop (give them to copy_in); else None."""
    total, found = 0, []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if len(found) == most or not entry.is_file(follow_symlinks=False):
                    return None
                total += entry.stat(follow_symlinks=False).st_size
                if total > max_bytes:
                    return None
                found.append(entry)
    except OSError:
        return None  # (copy_in says what is wrong)
    return found


def remove_flat_tree(path: str, most: int) -> bool:
    """remove_tree for what most runs leave, at a bounded cost: `path` holding
    at most `most` entries, none of them a directory. False, with nothing
    removed, for anything else (remove_tree's to do, off the event loop)."""
    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # (rootless: the program closed /box; remove_tree opens it up)
    try:
        names = []
        with os.scandir(top) as entries:
            for entry in entries:
                if len(names) == most or entry.is_dir(follow_symlinks=False):
                    return False
                names.append(entry.name)
        for name in names:
            os.unlink(name, dir_fd=top)  # a link itself, never what it points to
    finally:
        os.close(top)
    os.rmdir(path)
    return True


def _open_up(name: str, dir_fd: int | None = None, st: os.stat_result | None = None) -> None:
    """Rootless: give a directory the box's program owns (it is us) back its
    owner's rwx bits. Only for a real directory (lstat), once every process of
    the box is dead: nothing can swap it for a link in between."""
    st = st or os.lstat(name, dir_fd=dir_fd)
    if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
        os.chmod(name, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=dir_fd, follow_symlinks=True)


def _free_name(dir_fd: int, start: int) -> str:
    """A name not yet used in dir_fd (the program may have made any name)."""
    while True:
        name = f".stockade-rm-{start}"
        try:
            os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return name
        start += 1
