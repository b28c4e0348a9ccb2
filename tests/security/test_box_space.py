"""Every box directory lives on one tmpfs. A cap that tmpfs shares among all
boxes is one a few boxes can use up for the others: a hard link costs its box
one inode of the tmpfs's count for about 200 bytes of its memory, so three
boxes, each well within its memory limit, used up the kernel's default count
(half the pages of RAM: 3 million on a 24 GiB host) and every other box on
the host failed to start (ENOSPC) for as long as they ran. Each box's files
are memory of its own cgroup: that limit alone must bound them."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from stockade.sandbox import Limits, Sandbox, Status, tmpfs

PY = "/usr/bin/python3"
BOXES = 3
# Together the boxes make more links than an old-style box tmpfs had inodes.
LINKS = os.sysconf("SC_PHYS_PAGES") // 2 // BOXES + 20_000
MEMORY = LINKS * 240 + (48 << 20)  # each box's own limit: the links' dentries and Python
# Links first, then "done" by renaming a file made before them (no inode
# needed), then hold them while another box runs.
FILL = f"""
import os, time
os.chdir("/box")
open("pending", "w").close()
open("f", "w").close()
try:
    for i in range({LINKS}):
        os.link("f", "l%x" % i)
    print("linked", {LINKS})
except OSError as e:
    print("stopped at", i, e.strerror)
os.rename("pending", "done")
time.sleep(3)
"""

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the box tmpfs is root's"),
    pytest.mark.skipif(MEMORY * BOXES > 3 << 30, reason="this host's default inode count takes too much memory"),
]


@pytest.fixture
def sandbox():
    # A state directory of its own: the boxes tmpfs of the host's other
    # Stockade processes must never be the one this test fills.
    top = tempfile.mkdtemp(prefix="stockade-box-space-", dir="/run")
    os.chmod(top, 0o755)
    box = Sandbox(state_dir=os.path.join(top, "state"), slots=BOXES + 1, first_uid=61800)
    yield box
    box.close()
    for mount in ("boxes", "dev"):
        subprocess.run(["umount", os.path.join(box.state_dir, mount)], check=False, capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", "--", top], check=True)


@pytest.mark.slow
def test_boxes_full_of_links_leave_room_for_the_others(sandbox):
    async def main():
        hostile = [asyncio.ensure_future(sandbox.run(
            [PY, "-c", FILL], limits=Limits(cpu_time=30, wall_time=60, memory=MEMORY)))
            for _ in range(BOXES)]
        deadline = time.monotonic() + 60
        while len(glob.glob(os.path.join(sandbox.boxes_dir, "*", "done"))) < BOXES:
            assert time.monotonic() < deadline and not any(h.done() for h in hostile), \
                [h.result() for h in hostile if h.done()]
            await asyncio.sleep(0.05)
        innocent = await sandbox.run([PY, "-c", "open('/box/out', 'w').write('written'); print(open('/box/out').read())"],
                                     files={"in.txt": b"input"})
        return innocent, await asyncio.gather(*hostile)

    innocent, hostile = asyncio.run(main())
    for result in hostile:
        assert (result.status, result.stdout) == (Status.ok, f"linked {LINKS}\n".encode()), result
    assert (innocent.status, innocent.stdout) == (Status.ok, b"written\n"), innocent


def test_an_old_capped_box_tmpfs_is_lifted():
    # A host where an earlier version mounted the box tmpfs with a shared cap (a
    # quarter of RAM, the kernel's default inode count): the next Sandbox lifts it.
    state = tempfile.mkdtemp(prefix="stockade-box-space-", dir="/run")
    boxes = os.path.join(state, "boxes")
    os.makedirs(boxes)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0711,nosuid,nodev", "stockade-boxes", boxes],
                   check=True)
    try:
        box = Sandbox(state_dir=state, slots=1, first_uid=61850)
        try:
            assert box.run_sync(["/bin/true"]).status is Status.ok
        finally:
            box.close()
        options = tmpfs.superblock_options(boxes)
        assert options["nr_inodes"] == "0", options
        assert int(options["size"].removesuffix("k")) * 1024 >= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/mountinfo") as f:
            flags = next(line.split()[5] for line in f if line.split()[4] == boxes)
        assert {"nosuid", "nodev"} <= set(flags.split(",")), flags
    finally:
        for mount in ("boxes", "dev"):
            while os.path.ismount(os.path.join(state, mount)):
                subprocess.run(["umount", os.path.join(state, mount)], check=True)
        shutil.rmtree(state)
