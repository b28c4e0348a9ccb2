"""The compile cache: compiled products kept on the host by a hash of everything
that decides them, bounded in size (least recently used go first).

Only the engine writes here, from bytes it read back out of a finished compile
box; boxes see an entry through a read-only bind mount and never its parents.
Safe under concurrency: an asyncio lock per key inside an event loop, an flock
per key across event loops, threads and processes (two identical submissions
compile once), entries published
by an atomic rename, and an entry in use is never evicted (shared flock)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from stockade.errors import SandboxError
from stockade.sandbox.model import MiB
from stockade.sandbox.workdir import check_relpath

log = logging.getLogger("stockade.engine.cache")

FORMAT = 4  # bump when the layout or the key's ingredients change
DEFAULT_SIZE = 512 * MiB
_STALE_TMP = 3600.0
# What one file or directory costs the disk beyond its bytes: whole blocks, and an
# inode. A product of 20000 one-byte (or empty) files is not 20 kB of cache.
_BLOCK = 4096
# Compile outputs of entries kept in memory, at most (each is bounded by the
# engine's compile_output_limit; most are empty).
_KNOWN_OUTPUTS = 128


def _on_disk(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK + _BLOCK


def cache_key(**ingredients: object) -> str:
    """A stable hash of JSON-able ingredients (runtime, toolchain version, the
    compile command template, sources, options, additional files...)."""
    blob = json.dumps({"format": FORMAT, **ingredients}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Product:
    """What a successful compile left: files (relative path -> content, mode) and
    the compiler's output (warnings)."""

    files: Mapping[str, tuple[bytes, int]]
    compile_output: bytes = b""

    @property
    def size(self) -> int:
        return sum(len(content) for content, _ in self.files.values()) + len(self.compile_output)

    @property
    def footprint(self) -> int:
        """What storing it takes (the bound counts this): every file in whole
        blocks plus an inode, every directory (the entry's own two included)."""
        dirs: set[str] = set()
        for name in self.files:
            parts = name.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        files = sum(_on_disk(len(content)) for content, _ in self.files.values())
        return files + _BLOCK * (len(dirs) + 2) + _on_disk(len(self.compile_output) * 4 // 3 + 256)


@dataclass
class Lease:
    """A product in use: `path` is the directory holding its files (mount it
    read-only). Keeps the entry from being evicted until closed."""

    path: str
    compile_output: bytes
    hit: bool
    _fd: int = -1
    _ephemeral: str = ""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the shared flock
            self._fd = -1
        if self._ephemeral:
            _remove(self._ephemeral)
            self._ephemeral = ""

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CompileCache:
    """Compiled products on disk, at most `max_bytes` of them (LRU).

    >>> cache = CompileCache("/var/cache/stockade/compile", 256 * MiB)
    >>> lease = await cache.get_or_build(key, build)   # build() -> Product | None
    >>> lease.path   # mount read-only; lease.close() when done
    """

    def __init__(self, root: str | os.PathLike, max_bytes: int = DEFAULT_SIZE):
        self.root = os.path.abspath(root)
        self.max_bytes = int(max_bytes)
        self._objects = os.path.join(self.root, "objects")
        self._locks = os.path.join(self.root, "locks")
        self._tmp = os.path.join(self.root, "tmp")
        # Entries must be readable by the slot uids (bwrap binds them as that uid),
        # writable only by us.
        for path in (self.root, self._objects, self._tmp):
            os.makedirs(path, mode=0o755, exist_ok=True)
            _check_own_dir(path)
            os.chmod(path, 0o755)
        # Lock files are ours alone: a slot uid holding one could stall us.
        os.makedirs(self._locks, mode=0o700, exist_ok=True)
        _check_own_dir(self._locks)
        os.chmod(self._locks, 0o700)
        # (event loop, key) -> lock: an asyncio lock serves one loop; threads,
        # each with its own loop, are kept apart by the key's flock.
        self._key_locks: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Lock] = {}
        self._key_users: dict[tuple[asyncio.AbstractEventLoop, str], int] = {}
        # key -> (meta.json's inode, the compile output it holds): an entry never
        # changes once published, and a hit need not read and decode it again.
        # (An entry evicted and stored again may reuse the inode: the same key
        # is the same compile, its output the same.)
        self._outputs: dict[str, tuple[tuple[int, int], bytes]] = {}
        self._clean_tmp()
        self.hits = 0
        self.misses = 0

    # -- public --------------------------------------------------------------

    async def get_or_build(self, key: str, build: Callable[[], Awaitable[Product | None]]) -> Lease | None:
        """The product for `key`: from the cache, or built once by `build()`
        (None from build means it failed: nothing is cached, None is returned)."""
        _check_key(key)
        mine = (asyncio.get_running_loop(), key)
        lock = self._key_locks.setdefault(mine, asyncio.Lock())
        self._key_users[mine] = self._key_users.get(mine, 0) + 1
        try:
            async with lock:
                try:  # the common case, a hit nobody is building: no thread hop
                    lease = self._lease(key, blocking=False)
                except BlockingIOError:  # another process is building it: wait off the loop
                    lease = await _in_thread(self._lease, key)
                if lease is not None:
                    self.hits += 1
                    return lease
                # Across processes: the first to take the key's lock builds, the
                # others wait (in _lease's shared lock) and then find the entry.
                fd = await _in_thread(self._lock_key, key, fcntl.LOCK_EX)
                hit = True
                try:
                    if not self.contains(key):
                        hit = False
                        self.misses += 1
                        product = await build()
                        if product is None:
                            return None
                        ephemeral = await _in_thread(self._publish, key, product)
                        if ephemeral is not None:
                            return ephemeral
                    else:
                        self.hits += 1
                    # Keep holding the key, now shared: the entry cannot go while used.
                    fcntl.flock(fd, fcntl.LOCK_SH)
                    lease = self._open_entry(key, fd, hit)
                    fd = -1  # the lease owns it now
                    if lease is None:
                        raise SandboxError(f"compile cache entry {key} vanished right after it was stored")
                    return lease
                finally:
                    if fd >= 0:
                        if not self.contains(key):
                            # Nothing stored (a failed build, too big, an error or a
                            # cancellation): its lock file goes too, or every failed
                            # compile would leave one behind for good.
                            self._drop_lock_file(key, fd)
                        os.close(fd)
        finally:
            self._key_users[mine] -= 1
            if not self._key_users[mine]:
                del self._key_users[mine]
                self._key_locks.pop(mine, None)

    def contains(self, key: str) -> bool:
        """Whether an entry for `key` is cached now."""
        _check_key(key)
        return os.path.isfile(os.path.join(self._objects, key, "meta.json"))

    def total_size(self) -> int:
        """Bytes the cached entries take on disk (Product.footprint, recorded
        when they were stored)."""
        return sum(size for _, size, _ in self._entries())

    def evict(self, keep: str = "") -> int:
        """Remove least recently used entries until the cache fits; entries in
        use (and `keep`) stay. Returns the number removed."""
        entries = sorted(self._entries(), key=lambda e: e[2])  # oldest use first
        total = sum(size for _, size, _ in entries)
        removed = 0
        for key, size, _ in entries:
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            try:
                fd = self._lock_key(key, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use by a run right now
            try:
                _remove(os.path.join(self._objects, key))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._lock_path(key))
            finally:
                os.close(fd)
            total -= size
            removed += 1
        return removed

    # -- internals -------------------------------------------------------------

    def _lock_path(self, key: str) -> str:
        return os.path.join(self._locks, key + ".lock")

    def _lock_key(self, key: str, operation: int, create: bool = True) -> int:
        """An flock on the key's lock file. The file may be unlinked by an
        eviction (or a failed build) while we wait: retry until the lock we hold
        is on the file that is still there. Without `create`, FileNotFoundError
        when there is no lock file (then there is no entry, and no build)."""
        path = self._lock_path(key)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
            try:
                fcntl.flock(fd, operation)
                try:
                    if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                        return fd
                except FileNotFoundError:
                    pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _lease(self, key: str, blocking: bool = True) -> Lease | None:
        """A lease on an existing entry (shared lock first, then look), or None.
        A miss makes no lock file: only a build does (and removes it if it fails)."""
        try:
            fd = self._lock_key(key, fcntl.LOCK_SH if blocking else fcntl.LOCK_SH | fcntl.LOCK_NB, create=False)
        except FileNotFoundError:
            return None
        lease = self._open_entry(key, fd)
        if lease is None:
            os.close(fd)
        return lease

    def _drop_lock_file(self, key: str, fd: int) -> None:
        """Unlink the key's lock file, which `fd` holds exclusively. Anyone
        waiting on it finds it gone when they get it, and makes a new one."""
        path = self._lock_path(key)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)

    def _open_entry(self, key: str, fd: int, hit: bool = True) -> Lease | None:
        entry = os.path.join(self._objects, key)
        meta_path = os.path.join(entry, "meta.json")
        try:
            st = os.stat(meta_path)
            known = self._outputs.get(key)
            if known is not None and known[0] == (st.st_dev, st.st_ino):
                output = known[1]
            else:
                # (A new inode: stored again, by us or another process, since.)
                with open(meta_path, "rb") as fh:
                    output = base64.b64decode(json.load(fh).get("compile_output", ""))
                if len(self._outputs) >= _KNOWN_OUTPUTS:
                    self._outputs.clear()  # (simply: safe from any thread)
                self._outputs[key] = ((st.st_dev, st.st_ino), output)
            os.utime(meta_path)  # the LRU clock
        except (FileNotFoundError, ValueError, OSError):
            return None
        return Lease(os.path.join(entry, "product"), output, hit=hit, _fd=fd)

    def _publish(self, key: str, product: Product) -> Lease | None:
        """Store the product under `key` (we hold its exclusive lock). Returns an
        ephemeral lease when it is too big to cache, else None."""
        staging = os.path.join(self._tmp, uuid.uuid4().hex)
        os.mkdir(staging, 0o755)
        try:
            _write_tree(os.path.join(staging, "product"), product.files)
            meta = {"key": key, "size": product.footprint, "created": time.time(),
                    "compile_output": base64.b64encode(product.compile_output).decode()}
            with open(os.path.join(staging, "meta.json"), "x") as fh:
                json.dump(meta, fh)
            os.chmod(os.path.join(staging, "meta.json"), 0o644)
        except BaseException:
            _remove(staging)
            raise
        if product.footprint > self.max_bytes:
            # Bigger than the whole cache: use it for this submission only. Its
            # lock keeps another process's start (_clean_tmp) from taking it as
            # stale, however long the submission's tests run.
            fd = os.open(os.path.join(staging, "meta.json"), os.O_RDONLY | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_SH)
            return Lease(os.path.join(staging, "product"), product.compile_output, hit=False,
                         _fd=fd, _ephemeral=staging)
        try:
            os.rename(staging, os.path.join(self._objects, key))
        except OSError as exc:
            # Published meanwhile by someone who ignored our lock: theirs is as good.
            _remove(staging)
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        self.evict(keep=key)
        return None

    def _entries(self) -> Iterator[tuple[str, int, float]]:
        """(key, size, last use) of every entry."""
        with os.scandir(self._objects) as it:
            for entry in it:
                meta = os.path.join(entry.path, "meta.json")
                try:
                    st = os.stat(meta)
                    with open(meta, "rb") as fh:
                        size = int(json.load(fh)["size"])
                except (OSError, ValueError, KeyError):
                    continue
                yield entry.name, size, st.st_mtime

    def _clean_tmp(self) -> None:
        """Remove what a process left in tmp/ (a build interrupted while it
        was stored) an hour ago or more, unless a lease still uses it."""
        now = time.time()
        with os.scandir(self._tmp) as it:
            for entry in it:
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TMP:
                        _remove_unleased(entry.path)


async def _in_thread(fn: Callable, *args: object):
    """Run a blocking call (an flock wait, disk writes) off the event loop. If we
    are cancelled meanwhile, whatever it acquires is released when it returns."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_release_result)
        raise


def _release_result(task: asyncio.Future) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    result = task.result()
    if isinstance(result, Lease):
        result.close()
    elif isinstance(result, int) and result >= 0:
        os.close(result)


def _check_key(key: str) -> None:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"invalid cache key {key!r}")


def _check_own_dir(path: str) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SandboxError(f"compile cache {path} is not a directory owned by us")


def _write_tree(root: str, files: Mapping[str, tuple[bytes, int]]) -> None:
    """Write product files under a fresh directory. Names come from a box, so
    each is checked again and created with O_EXCL|O_NOFOLLOW in directories we
    just made: nothing here can point outside `root`."""
    os.mkdir(root, 0o755)
    for name, (content, mode) in files.items():
        *dirs, leaf = check_relpath(name)
        parent = root
        for part in dirs:
            parent = os.path.join(parent, part)
            with contextlib.suppress(FileExistsError):
                os.mkdir(parent, 0o755)
            if not stat.S_ISDIR(os.lstat(parent).st_mode):
                raise SandboxError(f"product path {name!r} crosses a file")
        # No write bit: even a rootless box (same host uid) cannot change it.
        perm = 0o555 if mode & 0o111 else 0o444
        fd = os.open(os.path.join(parent, leaf), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, perm)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def _remove_unleased(staging: str) -> None:
    """Remove a staging directory unless a lease holds its meta.json's lock."""
    try:
        fd = os.open(os.path.join(staging, "meta.json"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        _remove(staging)  # (never finished: nothing could lease it)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _remove(staging)
    except BlockingIOError:
        pass  # in use: its lease removes it when done
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
