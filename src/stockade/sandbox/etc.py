"""The box's /etc, and the root directory around it: one generated tree.

/etc holds names for the box user (passwd, group; no shadow), loopback hosts,
and copies of the only host files runtimes need: the dynamic loader's cache,
the alternatives links (/usr/bin/java -> /etc/alternatives/java -> /usr/lib/jvm/...)
and the local time zone link. Nothing else of the host's /etc reaches a box.

The tree is a whole root directory: that etc/, the mountpoints the box's
mounts land on (usr, proc, dev, tmp, box, the launcher's file), and the
merged-/usr links (bin -> usr/bin...). A box binds it read-only as / in one
mount, instead of bwrap's tmpfs root, the links, a bind of /etc and a
read-only remount of / (see bwrap.build_argv); or, for a run mounting
somewhere else than under /etc or /box, binds only its etc/ on bwrap's root.

The copies follow the host: `EtcTree.current()` looks at the host files' stat
(three calls) before every box and builds a new tree when they changed (a
package installed a library or a toolchain). Trees are named by their content
and never rewritten, so a box being built while another supervisor makes a new
one still binds a complete tree. The one change ever made to a built tree is an
empty mountpoint for a runtime's own /etc directory (/etc/php,
/etc/java-17-openjdk), bound on top of it read-only."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import threading

from stockade.errors import LimitError
from stockade.sandbox.bwrap import BOX_DIR, BOX_GID, BOX_LAUNCHER, BOX_UID, root_dirs, root_links

HOST_ETC = "/etc"
# Mountpoints in the root tree: every mount a box always has.
ROOT_DIRS = ("usr", "proc", "dev", "tmp", BOX_DIR.strip("/"))
# Host files under /etc copied into the box's, when present.
HOST_FILES = ("ld.so.cache", "localtime")
HOST_LINK_DIRS = ("alternatives",)  # directories of symlinks: the links are copied


def generated(uid: int = BOX_UID, gid: int = BOX_GID) -> dict[str, str]:
    """The box's own files: names for the box user, loopback hosts, nothing secret."""
    return {
        "passwd": (
            "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
            f"box:x:{uid}:{gid}:box:{BOX_DIR}:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\nbox:x:{gid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost\n",
        "hostname": "box\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }


class EtcTree:
    """The current root tree for boxes, under `parent` (made 0755 by us);
    current() is its etc/, the tree itself is that directory's parent."""

    def __init__(self, parent: str, host_etc: str = HOST_ETC):
        self.parent = parent
        self.host_etc = host_etc
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._path = ""

    def _host_key(self) -> tuple:
        key = []
        for name in (*HOST_FILES, *HOST_LINK_DIRS):
            try:
                st = os.lstat(os.path.join(self.host_etc, name))
                key.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                key.append(None)
        return tuple(key)

    def current(self) -> str:
        """The directory to bind at /etc (in a tree to bind at /), rebuilt if
        the host's files changed."""
        key = self._host_key()
        if key == self._key:
            return self._path
        with self._lock:
            if key != self._key:
                self._path = self._build()
                self._key = key
        return self._path

    def mountpoint(self, tree: str, target: str, directory: bool) -> None:
        """Make sure `tree` has an empty directory (or file) where `target`, a path
        under /etc, will be bound; never through a link, never out of the tree."""
        parts = os.path.normpath(target).split("/")[2:]  # "", "etc", ...
        if os.path.normpath(target).split("/")[:2] != ["", "etc"] or not parts or ".." in parts:
            raise LimitError(f"not a path under /etc: {target!r}")
        with self._lock:
            path = tree
            for i, part in enumerate(parts):
                path = os.path.join(path, part)
                last = i == len(parts) - 1
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    if last and not directory:
                        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
                    else:
                        os.mkdir(path, 0o755)
                    continue
                if stat.S_ISLNK(st.st_mode) or (not last and not stat.S_ISDIR(st.st_mode)):
                    raise LimitError(f"cannot mount on {target!r}: {path} is not a plain directory")

    def _contents(self) -> tuple[dict[str, bytes], dict[str, dict[str, str]], dict[str, str]]:
        files = {name: text.encode() for name, text in generated().items()}
        links: dict[str, str] = {}
        for name in HOST_FILES:
            path = os.path.join(self.host_etc, name)
            if os.path.islink(path):
                links[name] = os.readlink(path)  # localtime -> /usr/share/zoneinfo/...
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    files[name] = f.read()
        dirs = {}
        for name in HOST_LINK_DIRS:
            path = os.path.join(self.host_etc, name)
            if os.path.isdir(path) and not os.path.islink(path):
                with os.scandir(path) as entries:
                    dirs[name] = {e.name: os.readlink(e.path) for e in entries if e.is_symlink()}
        return files, dirs, links

    def _build(self) -> str:
        files, dirs, links = self._contents()
        layout = (ROOT_DIRS, root_links(), root_dirs(), BOX_LAUNCHER)
        digest = hashlib.sha256(repr((sorted(files.items()), sorted((k, sorted(v.items())) for k, v in dirs.items()),
                                      sorted(links.items()), layout)).encode()).hexdigest()[:16]
        final = os.path.join(self.parent, f"tree-{digest}")
        if os.path.isdir(final) and not os.path.islink(final):
            return os.path.join(final, "etc")  # built before, by us or by another supervisor: never rewritten
        tmp = os.path.join(self.parent, f".tree-{digest}.{os.getpid()}.{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        os.mkdir(tmp, 0o755)
        for name in (*ROOT_DIRS, *(path.lstrip("/") for path in root_dirs())):
            os.mkdir(os.path.join(tmp, name), 0o755)
        for target, link in root_links():
            os.symlink(target, os.path.join(tmp, link.lstrip("/")))
        # Where the launcher is bound, when a box runs it inside.
        os.close(os.open(os.path.join(tmp, BOX_LAUNCHER.lstrip("/")), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        etc = os.path.join(tmp, "etc")
        os.mkdir(etc, 0o755)
        for name, data in files.items():
            with open(os.path.join(etc, name), "wb") as f:
                f.write(data)
            os.chmod(os.path.join(etc, name), 0o644)
        for name, target in links.items():
            os.symlink(target, os.path.join(etc, name))
        for name, entries in dirs.items():
            os.mkdir(os.path.join(etc, name), 0o755)
            for entry, target in entries.items():
                os.symlink(target, os.path.join(etc, name, entry))
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:  # another supervisor renamed the same content first
            shutil.rmtree(tmp, ignore_errors=True)
        return os.path.join(final, "etc")
