"""The load generator and server probes shared by bench_batching.py and bench_bentoml.py.

Clients are threads on kept-alive ``http.client`` connections (lighter than requests: the client shares
the 2 cores with the server under test). Server CPU comes from ``/proc/<pid>/stat`` (utime + stime) of
the server's whole process tree, so multi-process servers (BentoML) are counted in full.
"""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TICK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants (live ones), in seconds."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICK


@dataclass
class LoadResult:
    clients: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(0.99 * len(xs)))]

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_s * 1000 / max(1, self.requests)

    def summary(self) -> dict:
        return {
            "clients": self.clients,
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50, 2),
            "p99_ms": round(self.p99, 2),
            "server_cpu_ms_per_request": round(self.cpu_ms_per_request, 3),
            "errors": self.errors,
        }


def load(
    url: str,
    path: str,
    bodies: Sequence[bytes],
    clients: int,
    seconds: float,
    *,
    server_pid: int,
    content_type: str = "application/octet-stream",
    check: Callable[[int, bytes], bool] = lambda status, body: status == 200,
) -> LoadResult:
    """``clients`` threads POST ``bodies`` (round robin) to ``url + path`` for ``seconds``."""
    parts = urlsplit(url)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = [0.0]

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        headers = {"content-type": content_type}
        k = i
        start.wait()
        while time.monotonic() < stop[0]:
            body = bodies[k % len(bodies)]
            k += 1
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            latencies[i].append((time.perf_counter() - t0) * 1000)
            if not check(r.status, data):
                errors[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    cpu0 = cpu_seconds(server_pid)
    t0 = time.monotonic()
    stop[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(server_pid) - cpu0
    flat = [x for per in latencies for x in per]
    return LoadResult(clients, len(flat), elapsed, flat, cpu, sum(errors))


def wait_http(url: str, path: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Until GET ``url + path`` answers 200 (or the process dies)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url}{path} not ready after {timeout} s")


def first_answer_s(
    cmd: list[str],
    url: str,
    path: str,
    body: bytes,
    env: dict,
    *,
    content_type: str = "application/octet-stream",
) -> tuple[float, subprocess.Popen]:
    """Seconds from spawning ``cmd`` to its first 200 answer to POST ``path``; returns (s, process)."""
    parts = urlsplit(url)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = t0 + 180
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:3]} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            conn.request("POST", path, body=body, headers={"content-type": content_type})
            if conn.getresponse().status == 200:
                return time.perf_counter() - t0, proc
        except OSError:
            pass
        time.sleep(0.005)
    stop(proc)
    raise TimeoutError(f"{cmd[:3]} did not answer within 180 s")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Target:
    """A running server under test."""

    url: str
    bodies: Sequence[bytes]
    content_type: str
    pid: int


def interleaved(
    targets: dict[str, Target],
    clients: int,
    seconds: float,
    rounds: int = 3,
    warmup: float = 1.0,
    between: Callable[[], None] | None = None,
) -> dict[str, LoadResult]:
    """Each target in turn, ``rounds`` windows of ``seconds / rounds`` each (ABCABC…), merged per target;
    ``between()`` runs after each round (an in-process measurement taken under the same drift).

    On a shared machine the background load drifts; alternating short windows spreads the drift over
    every target instead of handing it to whichever ran last.
    """
    for t in targets.values():
        load(t.url, "/predict", t.bodies, clients, warmup, server_pid=t.pid, content_type=t.content_type)
    parts: dict[str, list[LoadResult]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, t in targets.items():
            parts[name].append(
                load(t.url, "/predict", t.bodies, clients, seconds / rounds, server_pid=t.pid,
                     content_type=t.content_type)
            )  # fmt: skip
        if between is not None:
            between()
    return {
        name: LoadResult(
            clients,
            sum(r.requests for r in rs),
            sum(r.seconds for r in rs),
            [x for r in rs for x in r.latencies_ms],
            sum(r.server_cpu_s for r in rs),
            sum(r.errors for r in rs),
        )
        for name, rs in parts.items()
    }
