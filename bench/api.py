"""Throughput and latency of the HTTP service against the bare program.

Not a test (timings never go in the suite). In one run, against a fresh server
(`python -m stockade.service` on a free port, temporary data directory):
  concurrent: N Python hello-world submissions with wait=true from C clients,
              and N bare spawns of the same program with the same concurrency;
              throughput (runs/s) of both and their ratio, p50/p99 latency;
  single:     one client, one request at a time: p50 latency of a hello world
              through the API vs one bare spawn, and (for attribution) the same
              submission through the engine alone, in this process, no HTTP.
Usage: .venv/bin/python bench/api.py [N] [CLIENTS]     (defaults 500 16)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

SOURCE = 'print("hello, world")\n'
PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Connection:
    """One keep-alive HTTP/1.1 connection, as lean as a load generator (wrk,
    hey) is: the clients share the server's two cores, and a heavyweight
    client library's own CPU (httpx: ~2 ms per request here) would be counted
    against the server. Enough HTTP for uvicorn's answers (Content-Length)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            return await self._post(path, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closes a connection idle for its keep-alive timeout
            # (uvicorn: 5 s), as it was while a long bare phase ran: once more,
            # on a new one.
            await self.close()
            return await self._post(path, body)

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        return status, await self.reader.readexactly(int(headers["content-length"]))

    async def close(self) -> None:
        if self.writer is not None:
            writer, self.reader, self.writer = self.writer, None, None
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


REQUEST = json.dumps({"source_code": SOURCE, "language_id": 71}).encode()


async def api_once(connection: Connection) -> float:
    started = time.perf_counter()
    status, raw = await connection.post("/submissions?wait=true", REQUEST)
    elapsed = time.perf_counter() - started
    body = json.loads(raw)
    if status != 201 or body.get("status", {}).get("id") != 3:
        raise RuntimeError(f"unexpected answer: {status} {body}")
    return elapsed


async def bare_once(script: str) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        PYTHON, script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={})
    out, _ = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0 or out != b"hello, world\n":
        raise RuntimeError("bare run failed")
    return elapsed


async def concurrently(make, count: int, clients: int) -> tuple[float, list[float]]:
    """Run `count` calls with `clients` at a time (make(i) for client i); total
    seconds and latencies."""
    latencies: list[float] = []
    remaining = iter(range(count))

    async def client_loop(i: int) -> None:
        for _ in remaining:
            latencies.append(await make(i))

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(i) for i in range(clients)))
    return time.perf_counter() - started, latencies


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU of process `pid` itself and of its reaped children (its boxes), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


async def measure(port: int, server_pid: int, script: str, count: int, clients: int) -> None:
    connections = [Connection("127.0.0.1", port) for _ in range(clients)]
    try:
        for connection in connections:  # warm up: code paths, page cache, connections
            await api_once(connection)
            await bare_once(script)

        server_before, own_before = cpu_seconds(server_pid), time.process_time()
        api_total, api_lat = await concurrently(lambda i: api_once(connections[i]), count, clients)
        server_cpu = [after - before for after, before in zip(cpu_seconds(server_pid), server_before, strict=True)]
        own_cpu = time.process_time() - own_before
        bare_total, bare_lat = await concurrently(lambda i: bare_once(script), count, clients)
        single_api = [await api_once(connections[0]) for _ in range(50)]
        single_bare = [await bare_once(script) for _ in range(50)]
    finally:
        for connection in connections:
            await connection.close()

    api_rate, bare_rate = count / api_total, count / bare_total
    ms = 1000
    print(f"concurrent: {count} hello worlds, {clients} clients, {os.cpu_count()} cores")
    print(f"  API (wait=true): {api_rate:7.1f} runs/s   p50 {statistics.median(api_lat) * ms:6.1f} ms   "
          f"p99 {percentile(api_lat, 99) * ms:6.1f} ms")
    print(f"  bare spawn:      {bare_rate:7.1f} runs/s   p50 {statistics.median(bare_lat) * ms:6.1f} ms   "
          f"p99 {percentile(bare_lat, 99) * ms:6.1f} ms")
    print(f"  throughput ratio API/bare: {api_rate / bare_rate:.2f}  (target >= 0.6)")
    print(f"  CPU per API request: server {server_cpu[0] / count * ms:.2f} ms, its boxes "
          f"{server_cpu[1] / count * ms:.2f} ms, these clients {own_cpu / count * ms:.2f} ms")
    p50_api, p50_bare = statistics.median(single_api), statistics.median(single_bare)
    print("single client, one at a time (50 each):")
    print(f"  API p50 {p50_api * ms:.1f} ms   p99 {percentile(single_api, 99) * ms:.1f} ms   "
          f"bare p50 {p50_bare * ms:.1f} ms   ratio {p50_api / p50_bare:.2f}  (target <= 2)")


async def engine_alone(count: int, data_dir: str) -> list[float]:
    """The same submission through Engine.run in this process: the API's share is
    the difference. The engine is built as the server builds its own (same
    settings, so the same warm boxes). This process is smaller than the server,
    which matters: spawning a box forks the caller, and a fork costs more the
    bigger it is."""
    from stockade.engine import Submission
    from stockade.runtimes import Catalog
    from stockade.service.app import _default_engine
    from stockade.settings import Settings

    engine = _default_engine(Settings.load(data_dir=data_dir), Catalog.load())
    submission = Submission("python3", source=SOURCE.encode())
    latencies = []
    try:
        for i in range(count + 10):
            started = time.perf_counter()
            await engine.run(submission)
            if i >= 10:
                latencies.append(time.perf_counter() - started)
    finally:
        engine.sandbox.close()
    return latencies


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="stockade-bench-") as data_dir:
        script = os.path.join(data_dir, "script.py")
        with open(script, "w") as fh:
            fh.write(SOURCE)
        env = {**os.environ, "STOCKADE_DATA_DIR": data_dir, "STOCKADE_LOG_LEVEL": "warning",
               "STOCKADE_MAX_QUEUE_SIZE": str(max(100, clients * 2))}
        server = subprocess.Popen([sys.executable, "-m", "stockade.service", "--port", str(port)], env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/version", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.05)
            asyncio.run(measure(port, server.pid, script, count, clients))
            alone = asyncio.run(engine_alone(50, data_dir))
            print(f"  engine alone (no HTTP, no store) p50 {statistics.median(alone) * 1000:.1f} ms")
        finally:
            server.terminate()
            server.wait(15)


if __name__ == "__main__":
    main()
