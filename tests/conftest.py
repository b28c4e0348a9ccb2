"""Shared fixtures: one Sandbox per test session (boxes are cheap; slots are
shared with the other test modules through cross-process slot locks)."""

from __future__ import annotations

import pytest

from stockade.sandbox import Sandbox


@pytest.fixture
def on_loop_thread(monkeypatch):
    """on_loop_thread(module, name) -> a list that gets, for each later call of
    module.name, whether it ran on the main thread (the event loop's) or not
    (a worker thread's): for work that must stay off the loop."""
    import threading

    def watch(module, name: str) -> list[bool]:
        calls: list[bool] = []
        real = getattr(module, name)

        def recording(*args):
            calls.append(threading.current_thread() is threading.main_thread())
            return real(*args)

        monkeypatch.setattr(module, name, recording)
        return calls

    return watch


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    box = Sandbox(slots=8)
    yield box
    box.close()


def leftovers(sandbox: Sandbox) -> list[str]:
    """Everything a finished run must not leave: processes of slot uids, box
    cgroups, box directories. A slot another process (another test run on this
    machine) holds right now is not ours to judge: its lock tells."""
    import glob
    import os
    import re

    def idle(slot: int) -> bool:
        return not sandbox.slot_in_use(slot)

    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = int(next(line for line in f if line.startswith("Uid:")).split()[1])
        except (OSError, StopIteration):
            continue
        if 60000 <= uid < 60000 + 4096 and idle(uid - 60000):
            found.append(f"process {pid} (uid {uid})")
    for path in glob.glob("/sys/fs/cgroup/*/stockade/box-*") + glob.glob(os.path.join(sandbox.boxes_dir, "*")):
        slot = int(re.search(r"(\d+)$", path).group(1))
        if idle(slot) and not kept_empty(path):
            found.append(path)
    return found


def kept_empty(path: str) -> bool:
    """A slot's cgroup holding no process: what a Sandbox (this one or another
    on the host) keeps for the slot's next run (V1Cgroup.recycle), and the only
    cgroup a finished run may leave. One per slot at most: it has the slot's name."""
    import os

    if not path.startswith("/sys/fs/cgroup/"):
        return False
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return f.read() == ""
    except FileNotFoundError:
        return True  # removed since: not left


@pytest.fixture(scope="session")
def catalog():
    from tests.engine import support

    return support.catalog()


@pytest.fixture(scope="session")
def engine(sandbox):
    from tests.engine import support

    engine, path = support.make_engine(sandbox)
    yield engine
    support.remove(path)
