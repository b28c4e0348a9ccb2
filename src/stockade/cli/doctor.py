"""`stockade doctor`: each isolation layer, active or missing, and why.

Exits 1 when the box cannot be trusted (no bubblewrap, no user namespaces, no
seccomp, or a probe inside a real box sees something it must not)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import typer

from stockade.cli import app
from stockade.cli.common import run_cancellable
from stockade.errors import StockadeError
from stockade.sandbox import Limits, Sandbox, Status, bwrap, seccomp, spawn
from stockade.sandbox.launch import PRLIMIT, SETPRIV


@dataclass
class Layer:
    name: str
    active: bool
    detail: str
    required: bool = True


# Runs inside a real box and reports what it can see of the host.
PROBE = r"""
import json, os
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
try:
    env1 = open("/proc/1/environ", "rb").read()
except PermissionError:  # pid 1 (the launcher, reporting the program's status) is not dumpable
    env1 = b""
print(json.dumps({
    "uid": os.getuid(),
    "cap_eff": status["CapEff"].strip(),
    "seccomp": status["Seccomp"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "pid1_environ": env1.decode("utf-8", "replace"),
    "interfaces": sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]),
    "fds": sorted(os.listdir("/proc/self/fd")),
}))
"""


def core_dumps(pattern_file: str = "/proc/sys/kernel/core_pattern") -> Layer:
    """Where the kernel sends a crashing program's core dump. A box's RLIMIT_CORE
    of 1 stops it either way, but a program may lower its own soft limit to 0,
    and a dump piped to a helper ignores 0: that helper then runs as root on the
    host with the program's memory as input (apport has had such CVEs)."""
    try:
        with open(pattern_file) as f:
            pattern = f.read().strip()
    except OSError as exc:
        return Layer("core dumps", False, f"cannot read {pattern_file}: {exc.strerror}", required=False)
    if pattern.startswith(("|", "@")):  # a helper's pipe, or (Linux 6.16) a service's socket
        helper = pattern[1:].split()[0] if pattern[1:].split() else "?"
        return Layer("core dumps", False, f"kernel.core_pattern sends dumps to {helper}: a program that lowers its "
                     "RLIMIT_CORE to 0 and crashes has the host start it, as root, on its memory; on a host for "
                     "untrusted code set kernel.core_pattern to a file name (e.g. core)", required=False)
    return Layer("core dumps", True, f"kernel.core_pattern is a file name ({pattern}): with RLIMIT_CORE 1, "
                 "no dump is written", required=False)


# Where the C helpers are looked for, and how to build them there: `make setup`
# builds them only into the checkout's own .venv, so in another environment
# (pip install from a checkout) "run `make setup`" left them missing.
NOT_BUILT = (f"looked for in {os.path.join(sys.prefix, 'libexec')}: `make setup` builds them into the checkout's "
             ".venv; for another environment, docs/operations.md, \"Using the library from another project\"")


def check_layers() -> list[Layer]:
    layers: list[Layer] = []
    try:
        info = bwrap.find_bwrap()
        layers.append(Layer("bubblewrap", True, f"{info.path} {'.'.join(map(str, info.version))}, root-owned, not writable by others"))
    except StockadeError as exc:
        layers.append(Layer("bubblewrap", False, str(exc)))
        return layers
    try:
        program = seccomp.compile_filter()
        layers.append(Layer("seccomp", True, f"policy compiled with libseccomp ({len(program) // 8} BPF instructions)"))
    except Exception as exc:  # noqa: BLE001 - any failure means no seccomp
        layers.append(Layer("seccomp", False, f"cannot compile the policy: {exc}"))
    try:
        sandbox = Sandbox()  # (any free slot: a running service keeps some for itself)
    except StockadeError as exc:
        layers.append(Layer("sandbox state", False, str(exc)))
        return layers
    limited = "CPU, FSIZE, NOFILE, STACK, CORE=1 (no dump), MEMLOCK=0 set before the program starts"
    if sandbox.launcher:
        where = ("by the step that starts bwrap (see bwrap start), or" if sandbox.is_root else "by")
        layers.append(Layer("rlimits", True, f"{limited}, {where} the static stockade-launch ({sandbox.launcher}) "
                            "as the box's first program"))
    else:
        layers.append(Layer("rlimits", os.access(PRLIMIT, os.X_OK), f"{limited}, by {PRLIMIT}"))
        layers.append(Layer("launcher", False, f"stockade-launch not built ({NOT_BUILT}): {SETPRIV} and "
                            f"{PRLIMIT} do its work, about 1 ms slower per box", required=False))
    if sandbox.is_root and sandbox.launcher:
        if sandbox.spawner:
            how = f"by our vfork child ({sandbox.spawner.path}): no exec before bwrap"
        else:
            why = ("the kernel is older than 5.11" if not spawn.kernel_supported(os.uname().release)
                   else f"libstockade-spawn not built, {NOT_BUILT}")
            how = f"by stockade-launch ({why}: one exec more, ~0.4 ms per box)"
        layers.append(Layer("bwrap start", True, f"as the slot's uid, in its cgroup, under its rlimits, {how}",
                            required=False))
    layers.append(core_dumps())
    cg = sandbox.cgroups
    layers.append(Layer(
        "cgroups", cg.kind != "none",
        cg.reason if cg.kind != "none" else f"missing ({cg.reason}): memory and processes limited by rlimits only",
        required=False,
    ))
    if cg.kind != "none":
        layers.append(Layer("cgroup migration", "favordynmods on" in sandbox.cgroup_tuning or "switched on" in sandbox.cgroup_tuning,
                            sandbox.cgroup_tuning, required=False))
    if sandbox.netns_per_slot:
        layers.append(Layer("network", True, "each slot has its own network namespace (loopback only, made by root: "
                            "no capability inside), reused by its boxes one after another", required=False))
    else:
        layers.append(Layer("network", True, "a new network namespace (loopback only) for each box", required=False))
    if sandbox.dev_dir:
        layers.append(Layer("/dev", True, f"one prepared directory of root's ({sandbox.dev_dir}: null, zero, full, "
                            "random, urandom, tty, the fd links; no ptys), bound into every box", required=False))
    else:
        layers.append(Layer("/dev", True, "built by bwrap's --dev in every box, remounted read-only (no prepared "
                            "/dev: needs root, mknod and a tmpfs mount)", required=False))
    if sandbox.is_root:
        layers.append(Layer("host uid", True, "each box runs as its slot's unprivileged uid (60000 + slot), never as root", required=False))
    else:
        layers.append(Layer("host uid", False, f"not root: boxes run as your own uid {os.getuid()} (no per-slot uids)", required=False))
    result = run_cancellable(sandbox.run(["/usr/bin/python3", "-c", PROBE], limits=Limits(cpu_time=5, wall_time=10)))
    if result.status is not Status.ok:
        detail = result.message or result.stderr.decode("utf-8", "replace").strip()[-300:]
        layers.append(Layer("user namespaces", False, f"a probe box failed ({result.status}): {detail}"))
        return layers
    layers.append(Layer("user namespaces", True, "bwrap builds a box unprivileged: user, pid, net, ipc, uts, mount, cgroup namespaces"))
    seen = json.loads(result.stdout)
    problems = []
    if seen["uid"] == 0:
        problems.append("uid 0 inside")
    if int(seen["cap_eff"], 16) != 0:
        problems.append(f"capabilities {seen['cap_eff']}")
    if seen["seccomp"] != "2":
        problems.append("no seccomp filter")
    if seen["no_new_privs"] != "1":
        problems.append("no_new_privs not set")
    if seen["pid1_environ"]:
        problems.append("pid 1 has an environment")
    if set(seen["interfaces"]) - {"lo"}:
        problems.append(f"network interfaces {seen['interfaces']}")
    if seen["fds"] != ["0", "1", "2", "3"]:  # 3 is the probe's own listdir
        problems.append(f"inherited descriptors {seen['fds']}")
    layers.append(Layer(
        "probe inside a box", not problems,
        "; ".join(problems) if problems else
        f"uid {seen['uid']}, no capabilities, seccomp filter on, no_new_privs, only loopback, fds 0-2, no pid-1 environment to read",
    ))
    # bwrap folds death by signal N into exit code 128 + N; the launcher as pid 1 tells them apart.
    exited = run_cancellable(sandbox.run(["/usr/bin/python3", "-c", "import sys; sys.exit(152)"],
                                         limits=Limits(cpu_time=5, wall_time=10)))
    told = exited.exit_code == 152 and exited.signal is None
    layers.append(Layer(
        "exit status", told,
        "the box's pid 1 (stockade-launch) reports the program's wait status: exit(152) is exit code 152" if told else
        f"exit codes above 128 read as signals (exit(152) came back as {exited.status}, signal {exited.signal}): "
        + (f"stockade-launch not built, {NOT_BUILT}" if not sandbox.launcher else "the launcher sent no report"),
        required=False,
    ))
    return layers


@app.command("doctor")
def doctor_command(as_json: bool = typer.Option(False, "--json", help="Print the layers as JSON.")) -> None:
    """Check every isolation layer on this machine; exit 1 if the box cannot be trusted."""
    layers = check_layers()
    trusted = all(layer.active for layer in layers if layer.required)
    if as_json:
        typer.echo(json.dumps({"trusted": trusted, "layers": [layer.__dict__ for layer in layers]}))
    else:
        for layer in layers:
            mark = "active " if layer.active else ("MISSING" if layer.required else "missing")
            typer.echo(f"{mark}  {layer.name:<20} {layer.detail}")
        typer.echo("the box can be trusted" if trusted else "the box CANNOT be trusted on this machine")
    if not trusted:
        raise typer.Exit(1)
