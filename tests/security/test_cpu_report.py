"""The launcher's CPU report (launch.c --status-fd) cannot be made to leave out
CPU time: a program that spreads its work over children and exits while they
still run is charged for them, with a cgroup counter and without one."""

from __future__ import annotations

import pytest

from stockade.sandbox import Limits, Sandbox, Status
from tests.conftest import leftovers

# Two children spin 0.4 s of CPU each; the program exits while they still run
# (orphans of the box's pid 1, not reaped when the program's end is reported).
ORPHANS = """
import os, time
for _ in range(2):
    if os.fork() == 0:
        t = time.process_time()
        while time.process_time() - t < 0.4: pass
        os._exit(0)
time.sleep(0.35)
"""


@pytest.fixture(scope="module")
def no_cgroup_sandbox():
    box = Sandbox(slots=2, cgroup_root="/nonexistent/stockade-test")  # rusage accounting
    assert box.cgroups.kind == "none"
    yield box
    box.close()


@pytest.mark.parametrize("which", ["sandbox", "no_cgroup_sandbox"])
def test_orphans_still_running_at_the_programs_end_count(which, request):
    sandbox = request.getfixturevalue(which)
    result = sandbox.run_sync(["/usr/bin/python3", "-c", ORPHANS], limits=Limits(cpu_time=0.5, wall_time=5))
    # 0.6 s or more were used (0.35 s each before the program's end), over the
    # 0.5 s limit: never an ok with the CPU time of the program alone.
    assert result.status is Status.time_limit, result
    assert result.time >= 0.5, result
    assert leftovers(sandbox) == []
