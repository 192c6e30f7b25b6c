"""Dynamic batching and model instances in `onnxfn serve` (issue 14, item 1).

MobileNetV2 96×96 (``_mobilenet.py``) served by ``onnxfn serve``; clients POST distinct 96×96 PNGs on
kept-alive connections (``_load.py``). For each configuration: requests/s, p50/p99, and the server's CPU
per request (``/proc/<pid>/stat``) against ``session.run``'s own CPU per image (measured in-process with
the same session options), because on a shared machine CPU time is stable and wall time is not.

Configurations: batching off/on × (one session with all cores | one one-thread session per core), at 32
clients; then the default at 1 client, off vs on. Writes benchmarks/batching.md and batching.json.
Run: python benchmarks/bench_batching.py   (ONNXFN_BENCH_SECONDS=8 per measurement)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from _load import Target, first_answer_s, interleaved, stop
from _mobilenet import mobilenet_dir, pngs
from common import row

HERE = Path(__file__).resolve().parent
PY = sys.executable
SECONDS = float(os.environ.get("ONNXFN_BENCH_SECONDS", "8"))
DELAY_MS = 5.0
CORES = len(os.sched_getaffinity(0))


def run_cpu_per_image(model_dir: Path, threads: int = 1) -> dict[str, float]:
    """CPU ms per image of ``session.run`` alone (batch 1 and 8), with the runtime's session options."""
    import numpy as np
    from onnxfn.runtime import load_models

    model = load_models(model_dir, threads=threads).get("mobilenet")
    x = model.prepare(pngs(8))
    name = model.inputs[0].name
    out = {}
    for batch in (1, 8):
        feeds = {name: np.ascontiguousarray(x[:batch])}
        for _ in range(3):
            model.session.run(None, feeds)
        n = max(8, 200 // batch)
        c0 = time.process_time()
        for _ in range(n):
            model.session.run(None, feeds)
        out[f"batch{batch}"] = (time.process_time() - c0) * 1000 / (n * batch)
    return out


def start(model_dir: Path, *, delay_ms: float, instances: int, threads: int) -> tuple[Target, object]:
    from servers import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [PY, "-m", "onnxfn", "serve", str(model_dir), "--port", str(port), "--log-level", "warning"]
    cmd += ["--batch-delay-ms", str(delay_ms), "--instances", str(instances), "--threads", str(threads)]
    env = {**os.environ, "ONNXFN_LOG_LEVEL": "WARNING"}
    bodies = pngs(64)
    _, proc = first_answer_s(cmd, url, "/predict", bodies[0], env)
    return Target(url, bodies, "application/octet-stream", proc.pid), proc


def run() -> list[dict]:
    model_dir = mobilenet_dir()
    per_image = run_cpu_per_image(model_dir)
    layouts = {f"1x{CORES}": (1, CORES), f"{CORES}x1": (CORES, 1)}  # sessions × threads
    targets, procs = {}, []
    try:
        for name, (instances, threads) in layouts.items():
            for delay in (0.0, DELAY_MS):
                target, proc = start(model_dir, delay_ms=delay, instances=instances, threads=threads)
                targets[f"{name}, batching {'on' if delay else 'off'}"] = target
                procs.append(proc)
        results: dict[str, dict] = {}
        for key, r in interleaved(targets, 32, SECONDS * len(targets) / 2).items():
            results[f"32 clients, {key}"] = r.summary()
            print(f"32 clients, {key}", r.summary(), flush=True)
        # The default (one session with all cores: ONNXFN_INSTANCES=1) at 1 client, off vs on.
        best = f"1x{CORES}"
        pair = {k: t for k, t in targets.items() if k.startswith(best)}
        for key, r in interleaved(pair, 1, SECONDS).items():
            results[f"1 client, {key}"] = r.summary()
            print(f"1 client, {key}", r.summary(), flush=True)
    finally:
        for proc in procs:
            stop(proc)
    write(results, per_image, best)

    on, off = results[f"32 clients, {best}, batching on"], results[f"32 clients, {best}, batching off"]
    one_on, one_off = results[f"1 client, {best}, batching on"], results[f"1 client, {best}, batching off"]
    other = next(n for n in layouts if n != best)
    alt = results[f"32 clients, {other}, batching on"]
    ratio_cpu = on["server_cpu_ms_per_request"] / per_image["batch1"]
    return [
        row("batching", f"MobileNetV2 96×96, 32 clients (PNGs), {best} sessions×threads: req/s batching on "
            f"({DELAY_MS:g} ms) vs off", on["rps"], off["rps"], round(on["rps"] / off["rps"], 2),
            "≥ 1.5× (quiet machine)", on["rps"] / off["rps"] >= 1.5, "req/s"),
        row("batching", "32 clients: p99 batching on vs off (ms)", on["p99_ms"], off["p99_ms"],
            round(on["p99_ms"] / off["p99_ms"], 2), "no worse (≤ 1×)", on["p99_ms"] <= off["p99_ms"], "ms"),
        row("batching", "32 clients, batching on: server CPU per request vs session.run CPU per image "
            f"(batch 1; batch 8: {per_image['batch8']:.2f} ms)", on["server_cpu_ms_per_request"],
            round(per_image["batch1"], 3), round(ratio_cpu, 2), "≤ 1.5×", ratio_cpu <= 1.5, "ms"),
        row("batching", f"1 client: p50 batching on vs off (ms); target off + {DELAY_MS:g} ms", one_on["p50_ms"],
            one_off["p50_ms"], round(one_on["p50_ms"] / one_off["p50_ms"], 2), f"≤ off + {DELAY_MS:g} ms",
            one_on["p50_ms"] <= one_off["p50_ms"] + DELAY_MS, "ms"),
        row("batching", f"32 clients, batching on: server CPU ms per request with {best} (the default) vs {other} "
            f"sessions×threads (req/s {on['rps']} vs {alt['rps']})", on["server_cpu_ms_per_request"],
            alt["server_cpu_ms_per_request"], round(on["server_cpu_ms_per_request"] / alt["server_cpu_ms_per_request"], 2),
            "≤ 1.05× (the default costs no more)", on["server_cpu_ms_per_request"] <= 1.05 * alt["server_cpu_ms_per_request"], "ms"),
    ]  # fmt: skip


def write(results: dict[str, dict], per_image: dict[str, float], best: str) -> None:
    from run import machine

    (HERE / "batching.json").write_text(
        json.dumps(
            {"machine": machine(), "session_run_cpu_ms_per_image": per_image, "runs": results}, indent=2
        )
        + "\n"
    )
    lines = [
        "# Dynamic batching in `onnxfn serve` (benchmarks/bench_batching.py)",
        "",
        f"Machine: {machine()}. MobileNetV2 96×96, PNG bodies, {SECONDS:g} s per run, "
        f"batching delay {DELAY_MS:g} ms, batch max 32. Sessions×threads: `--instances` × `--threads`.",
        f"`session.run` alone, one thread: {per_image['batch1']:.2f} ms CPU per image at batch 1, "
        f"{per_image['batch8']:.2f} ms at batch 8. Default layout: {best}.",
        "",
        "| run | req/s | p50 ms | p99 ms | server CPU ms/request | errors |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        lines.append(
            f"| {key} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['server_cpu_ms_per_request']} | "
            f"{r['errors']} |"
        )
    (HERE / "batching.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    for r in run():
        print(json.dumps(r))
