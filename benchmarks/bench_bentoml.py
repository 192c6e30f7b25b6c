"""`onnxfn serve` side by side with BentoML (issue 14, item 2).

The same ONNX model (MobileNetV2 96×96, ``_mobilenet.py``), the same work (PNG → decode → RGB 96×96 →
/127.5 − 1 → onnxruntime → top label), the same load generator (``_load.py``) at 1, 8 and 32 clients, the
same onnxruntime session options (one intra-op thread per run, no spinning), the same parallelism (a run
per core: in one process, or in a worker process per core) and access logs off on both. Each server gets its idiomatic request: onnxfn the PNG bytes
(``application/octet-stream``, what ``onnxfn.client`` sends), BentoML a multipart file (what its clients
send for an ``Image`` parameter). Plain, and with each one's batching (onnxfn ``--batch-delay-ms 5``,
BentoML ``batchable=True``, max batch 32). Time to first answer: process start → first 200 to a PNG.

BentoML runs in its own venv under artifacts/bench/bentoml-venv, made here on first use with
``pip install bentoml onnxruntime pillow``. Writes benchmarks/bentoml.md and bentoml.json.
Run: python benchmarks/bench_bentoml.py   (ONNXFN_BENCH_SECONDS=6 per measurement)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _load import Target, first_answer_s, interleaved, stop
from _mobilenet import mobilenet_dir, pngs
from common import WORK, row

HERE = Path(__file__).resolve().parent
PY = sys.executable
SECONDS = float(os.environ.get("ONNXFN_BENCH_SECONDS", "6"))
CLIENTS = (1, 8, 32)
CORES = len(os.sched_getaffinity(0))
VENV = WORK / "bentoml-venv"
BOUNDARY = "onnxfnbench7d3a"


def bentoml_python() -> Path:
    """The BentoML venv's python (created and filled from PyPI on first use)."""
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "bentoml").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "bentoml", "onnxruntime", "pillow"], check=True
        )
    return python


def multipart(png: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + png
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def servers(model_dir: Path) -> dict[str, dict]:
    """name → how to start it and talk to it."""
    onnx_file = model_dir / "mobilenet.onnx"
    # Both: one onnxruntime thread per run and CORES runs at a time, in one process (onnxfn's default:
    # a runner per core; BentoML: threads=CORES) or in CORES worker processes of one run each.
    onnxfn = [PY, "-m", "onnxfn", "serve", str(model_dir), "--log-level", "warning", "--threads", "1"]
    env = {**os.environ, "ONNXFN_LOG_LEVEL": "WARNING"}
    bento = [str(VENV / "bin" / "bentoml"), "serve", "bentoml_service:MobileNet"]
    bento_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "ONNXFN_"))
    }
    bento_env.update(
        BENCH_MODEL=str(onnx_file),
        BENCH_THREADS="1",
        BENTOML_HOME=str(WORK / "bentoml-home"),
        BENTOML_DO_NOT_TRACK="true",
    )
    raw = {"content_type": "application/octet-stream", "bodies": pngs(64)}
    form = {
        "content_type": f"multipart/form-data; boundary={BOUNDARY}",
        "bodies": [multipart(p) for p in pngs(64)],
    }
    return {
        "onnxfn": {"cmd": [*onnxfn, "--batch-delay-ms", "0"], "env": env, **raw},
        "onnxfn, batching": {
            "cmd": [*onnxfn, "--batch-delay-ms", "5", "--batch-max", "32"],
            "env": env,
            **raw,
        },
        "onnxfn, workers": {"cmd": [*onnxfn, "--workers", str(CORES)], "env": env, **raw},
        "BentoML": {"cmd": bento, "env": {**bento_env, "BENCH_CONCURRENCY": str(CORES)}, **form},
        "BentoML, batching": {
            "cmd": bento,
            "env": {**bento_env, "BENCH_CONCURRENCY": str(CORES), "BENCH_BATCHING": "1"},
            **form,
        },
        "BentoML, workers": {"cmd": bento, "env": {**bento_env, "BENCH_WORKERS": str(CORES)}, **form},
    }


def run() -> list[dict]:
    from servers import free_port

    model_dir = mobilenet_dir()
    bentoml_python()
    cwd = os.getcwd()
    os.chdir(HERE)  # `bentoml serve bentoml_service:MobileNet` imports from the working directory
    results: dict[str, dict] = {}
    targets, procs = {}, []
    try:
        for name, spec in servers(model_dir).items():
            port = free_port()
            cmd = [*spec["cmd"], "--port", str(port)]
            url = f"http://127.0.0.1:{port}"
            ct, bodies = spec["content_type"], spec["bodies"]
            seconds, proc = first_answer_s(cmd, url, "/predict", bodies[0], spec["env"], content_type=ct)
            procs.append(proc)
            targets[name] = Target(url, bodies, ct, proc.pid)
            results[name] = {"first_answer_s": round(seconds, 3), "load": {}}
        for clients in CLIENTS:
            for name, r in interleaved(targets, clients, SECONDS).items():
                results[name]["load"][clients] = r.summary()
                print(name, r.summary(), flush=True)
    finally:
        os.chdir(cwd)
        for proc in procs:
            stop(proc)
    version = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import bentoml; print(bentoml.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    write(results, version)
    rows = []
    pairs = (
        ("onnxfn", "BentoML"),
        ("onnxfn, batching", "BentoML, batching"),
        ("onnxfn, workers", "BentoML, workers"),
    )
    for ours, theirs in pairs:
        for clients in CLIENTS:
            o, b = results[ours]["load"][clients], results[theirs]["load"][clients]
            ratio = o["rps"] / b["rps"]
            target, met = ("≥ 2×", ratio >= 2) if clients > 1 else ("ahead (> 1×)", ratio > 1)
            rows.append(
                row("bentoml", f"{ours} vs {theirs} {version}, MobileNetV2, {clients} client(s): req/s "
                    f"(p99 {o['p99_ms']} vs {b['p99_ms']} ms; CPU/request {o['server_cpu_ms_per_request']} vs "
                    f"{b['server_cpu_ms_per_request']} ms)", o["rps"], b["rps"], round(ratio, 2), target, met, "req/s")
            )  # fmt: skip
    o, b = results["onnxfn"]["first_answer_s"], results["BentoML"]["first_answer_s"]
    rows.append(
        row("bentoml", "process start → first answer (s)", o, b, round(b / o, 1), "faster", o < b, "s")
    )
    return rows


def write(results: dict, version: str) -> None:
    from run import machine

    (HERE / "bentoml.json").write_text(
        json.dumps({"machine": machine(), "bentoml": version, "cores": CORES, "results": results}, indent=2)
        + "\n"
    )
    lines = [
        f"# `onnxfn serve` vs BentoML {version} (benchmarks/bench_bentoml.py)",
        "",
        f"Machine: {machine()}. MobileNetV2 96×96, PNG bodies, {SECONDS:g} s per run. Tuned alike: one onnxruntime "
        f"thread per run (no intra-op spinning) and {CORES} runs at a time in both — in one process (onnxfn's "
        f"default, a runner per core; BentoML `threads={CORES}`) or, in the `workers` rows, {CORES} worker processes "
        "of one run each (`--workers` / `workers=`); access logs off in both. Bodies: onnxfn "
        "the PNG bytes (what onnxfn.client sends), BentoML a multipart file (what its clients send for an Image "
        "parameter). Batching: onnxfn `--batch-delay-ms 5`, BentoML `batchable=True`; both at most 32 rows. "
        "The servers are measured in alternating windows; the machine was shared (read the ratios).",
        "",
        "| server | clients | req/s | p50 ms | p99 ms | server CPU ms/request | errors | start → first answer s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for clients, x in r["load"].items():
            lines.append(
                f"| {name} | {clients} | {x['rps']} | {x['p50_ms']} | {x['p99_ms']} | "
                f"{x['server_cpu_ms_per_request']} | {x['errors']} | {r['first_answer_s']} |"
            )
    (HERE / "bentoml.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    for r in run():
        print(json.dumps(r))
