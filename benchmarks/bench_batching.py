"""Dynamic batching and model runners in `onnxfn serve` (issue 14, item 1).

Two models at 96×96 (``_mobilenet.py``): MobileNetV2 (the issue's) and EfficientNetB0, served by ``onnxfn
serve``; clients POST distinct 96×96 PNGs on kept-alive connections (``_load.py``). For each configuration:
requests/s, p50/p99, and the server's CPU per request (``/proc/<pid>/stat``) against ``session.run``'s own
CPU per image (measured in-process with the same session options, between the load windows), because on a
shared machine CPU time is steadier than wall time (though not steady: both drift with the neighbours).

Layouts (threads per run × runs side by side): the default (1 thread per run, a run per core, one session
shared), ``--threads <cores>`` (one run at a time on every core) and ``--instances <cores>`` (a session per
run). Batching off/on for each, at 32 clients; then the default at 1 client, off vs on. With the CPU
saturated, requests/s follow CPU per request, so batching gains what it saves per request: the fused
run's lower CPU per image (the table gives ``session.run`` at batch 1, 8 and 32) plus one runner wake-up
and one event-loop wake-up per batch instead of per request.
Writes benchmarks/batching.md and batching.json.
Run: python benchmarks/bench_batching.py   (ONNXFN_BENCH_SECONDS=8 per measurement)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _load import Target, first_answer_s, interleaved, stop
from _mobilenet import model_dir, pngs
from common import row

HERE = Path(__file__).resolve().parent
PY = sys.executable
SECONDS = float(os.environ.get("ONNXFN_BENCH_SECONDS", "8"))
DELAY_MS = 5.0
CORES = len(os.sched_getaffinity(0))
MODELS = ("MobileNetV2", "EfficientNetB0")
LAYOUTS = {  # name → extra `onnxfn serve` flags
    "default": [],
    f"--threads {CORES}": ["--threads", str(CORES)],
    f"--instances {CORES}": ["--instances", str(CORES)],
}


class SessionCost:
    """CPU ms per image of ``session.run`` alone (batch 1, 8 and 32), with the runtime's session options.

    Sampled between the load windows (``sample``) and reported as medians, so that the ratio of the
    server's CPU per request to it compares figures taken under the same background load.
    """

    def __init__(self, folder: Path, threads: int = 1) -> None:
        import numpy as np
        from onnxfn.runtime import load_models

        self.model = next(iter(load_models(folder, threads=threads).models.values()))
        x = self.model.prepare(pngs(32))
        name = self.model.inputs[0].name
        self.feeds = {batch: {name: np.ascontiguousarray(x[:batch])} for batch in (1, 8, 32)}
        self.samples: list[dict[str, float]] = []

    def sample(self) -> None:
        out = {}
        for batch, feeds in self.feeds.items():
            for _ in range(3):
                self.model.session.run(None, feeds)
            n = max(4, 200 // batch)
            c0 = time.process_time()
            for _ in range(n):
                self.model.session.run(None, feeds)
            out[f"batch{batch}"] = (time.process_time() - c0) * 1000 / (n * batch)
        out["batch1_side_by_side"] = self._side_by_side(self.feeds[1], 200)
        self.samples.append(out)

    def _side_by_side(self, feeds: dict[str, Any], n: int) -> float:
        """CPU ms per image of batch-1 runs made the way the server makes them: one per core at once,
        over one session (each thread's own CPU time), so both sides of the ratio share the contention
        of two runs for the memory system."""
        per_thread: list[float] = []

        def work() -> None:
            c0 = time.thread_time()
            for _ in range(n):
                self.model.session.run(None, feeds)
            per_thread.append((time.thread_time() - c0) * 1000 / n)

        threads = [threading.Thread(target=work) for _ in range(CORES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return statistics.mean(per_thread)

    def medians(self) -> dict[str, float]:
        return {key: statistics.median(s[key] for s in self.samples) for key in self.samples[0]}


def start(folder: Path, *, delay_ms: float, flags: list[str]) -> tuple[Target, object]:
    from servers import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [PY, "-m", "onnxfn", "serve", str(folder), "--port", str(port), "--log-level", "warning"]
    cmd += ["--batch-delay-ms", str(delay_ms), *flags]
    env = {**os.environ, "ONNXFN_LOG_LEVEL": "WARNING"}
    env.pop("ONNXFN_THREADS", None)
    bodies = pngs(64)
    _, proc = first_answer_s(cmd, url, "/predict", bodies[0], env)
    return Target(url, bodies, "application/octet-stream", proc.pid), proc


def measure(arch: str) -> tuple[dict[str, dict], dict[str, float]]:
    """Every layout × batching off/on at 32 clients, then the default at 1 client."""
    folder = model_dir(arch)
    cost = SessionCost(folder)
    cost.sample()
    targets, procs = {}, []
    results: dict[str, dict] = {}
    try:
        for name, flags in LAYOUTS.items():
            for delay in (0.0, DELAY_MS):
                target, proc = start(folder, delay_ms=delay, flags=flags)
                targets[f"{name}, batching {'on' if delay else 'off'}"] = target
                procs.append(proc)
        for key, r in interleaved(targets, 32, SECONDS * len(targets) / 2, between=cost.sample).items():
            results[f"32 clients, {key}"] = r.summary()
            print(arch, f"32 clients, {key}", r.summary(), flush=True)
        pair = {k: t for k, t in targets.items() if k.startswith("default")}
        for key, r in interleaved(pair, 1, SECONDS).items():
            results[f"1 client, {key}"] = r.summary()
            print(arch, f"1 client, {key}", r.summary(), flush=True)
    finally:
        for proc in procs:
            stop(proc)
    return results, cost.medians()


def run() -> list[dict]:
    rows, everything = [], {}
    for arch in MODELS:
        results, per_image = measure(arch)
        everything[arch] = {"session_run_cpu_ms_per_image": per_image, "runs": results}
        on, off = results["32 clients, default, batching on"], results["32 clients, default, batching off"]
        one_on, one_off = (
            results["1 client, default, batching on"],
            results["1 client, default, batching off"],
        )
        gain = on["rps"] / off["rps"]
        cpu_gain = off["server_cpu_ms_per_request"] / on["server_cpu_ms_per_request"]
        floor = per_image["batch1_side_by_side"]  # inference alone, run as the server runs it
        ratio_cpu = on["server_cpu_ms_per_request"] / floor
        label = f"{arch} 96×96"
        rows += [
            row("batching", f"{label}, 32 clients (PNGs), default layout: req/s batching on ({DELAY_MS:g} ms) vs off "
                f"(CPU per request off / on: {cpu_gain:.2f}×; session.run {per_image['batch1']:.2f} → "
                f"{per_image['batch32']:.2f} ms CPU per image, batch 1 → 32)", on["rps"], off["rps"], round(gain, 2),
                "≥ 1.5× (quiet machine)", gain >= 1.5, "req/s"),
            row("batching", f"{label}, 32 clients: p99 batching on vs off (ms)", on["p99_ms"], off["p99_ms"],
                round(on["p99_ms"] / off["p99_ms"], 2), "no worse (≤ 1×)", on["p99_ms"] <= off["p99_ms"], "ms"),
            row("batching", f"{label}, 32 clients, batching on: server CPU per request vs session.run CPU per "
                f"image (batch 1, {CORES} runs side by side as in the server; one run alone: "
                f"{per_image['batch1']:.3f} ms)", on["server_cpu_ms_per_request"], round(floor, 3),
                round(ratio_cpu, 2), "≤ 1.5×", ratio_cpu <= 1.5, "ms"),
            row("batching", f"{label}, 1 client: p50 batching on vs off (ms); target off + {DELAY_MS:g} ms",
                one_on["p50_ms"], one_off["p50_ms"], round(one_on["p50_ms"] / one_off["p50_ms"], 2),
                f"≤ off + {DELAY_MS:g} ms", one_on["p50_ms"] <= one_off["p50_ms"] + DELAY_MS, "ms"),
        ]  # fmt: skip
        if arch == MODELS[0]:
            for other in list(LAYOUTS)[1:]:
                alt = results[f"32 clients, {other}, batching off"]
                ratio = off["server_cpu_ms_per_request"] / alt["server_cpu_ms_per_request"]
                rows.append(
                    row("batching", f"{label}, 32 clients, batching off: server CPU ms per request, the default "
                        f"vs {other} (req/s {off['rps']} vs {alt['rps']})", off["server_cpu_ms_per_request"],
                        alt["server_cpu_ms_per_request"], round(ratio, 2), "≤ 1.05× (the default costs no more)",
                        ratio <= 1.05, "ms")
                )  # fmt: skip
    write(everything)
    return rows


def write(everything: dict[str, dict]) -> None:
    from run import machine

    (HERE / "batching.json").write_text(json.dumps({"machine": machine(), **everything}, indent=2) + "\n")
    lines = [
        "# Dynamic batching and runners in `onnxfn serve` (benchmarks/bench_batching.py)",
        "",
        f"Machine: {machine()}. 96×96 models, PNG bodies, {SECONDS:g} s per run (servers in alternating "
        f"windows), batching delay {DELAY_MS:g} ms, batch max 32. Layouts: the default (1 onnxruntime thread "
        f"per run, {CORES} runs side by side over one session), `--threads {CORES}` (one run at a time on all "
        f"cores), `--instances {CORES}` (one session per run). The load generator runs on the same cores.",
    ]
    for arch, data in everything.items():
        per_image = data["session_run_cpu_ms_per_image"]
        off = data["runs"]["32 clients, default, batching off"]
        lines += [
            "",
            f"## {arch}",
            "",
            f"`session.run` alone, one thread: {per_image['batch1']:.2f} ms CPU per image at batch 1, "
            f"{per_image['batch8']:.2f} at batch 8, {per_image['batch32']:.2f} at batch 32; at batch 1 with "
            f"{CORES} runs side by side, as the server runs them: {per_image['batch1_side_by_side']:.2f} (the "
            f"server's CPU per request, batching off at 32 clients: {off['server_cpu_ms_per_request']} ms).",
            "",
            "| run | req/s | p50 ms | p99 ms | server CPU ms/request | errors |",
            "|---|---|---|---|---|---|",
        ]
        for key, r in data["runs"].items():
            lines.append(
                f"| {key} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['server_cpu_ms_per_request']} | "
                f"{r['errors']} |"
            )
    (HERE / "batching.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    for r in run():
        print(json.dumps(r))
