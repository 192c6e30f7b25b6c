"""The Lambda bundle: size for python3.12 arm64; cold start of the unzipped bundle vs the installed package.

Sizes: ``onnxfn bundle`` with the digits model, trimmed (ours) vs everything pip installs (baseline).
Cold start: a fresh interpreter → the first answer to an HTTP API (v2) event through
``onnxfn.runtime.aws.handler``, median of several processes, interleaved. "Bundle" runs the zip built for
this machine, unzipped, in ``python -I -S -B`` with only the bundle on sys.path and no bytecode written (as on
Lambda, whose /var/task is read-only); "installed" is the same probe importing the installed package. The
zip ships .pyc compiled for its Python; the same bundle without them (``--no-compile``) is measured too.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, row

sys.path.insert(0, str(ROOT / "tests" / "deploy"))

PROBE = ROOT / "tests" / "deploy" / "lambda_probe.py"
RUNS = int(os.environ.get("ONNXFN_BENCH_COLD_RUNS", "9"))
TARGET_ZIPPED_MB = 50
TARGET_UNZIPPED_MB = 150
MB = 1024 * 1024


def model_dir() -> Path:
    """The demo's digits CNN when it is built (TensorFlow), else the TF-free digits model of the tests."""
    try:
        from common import digits_models

        return digits_models()[1]
    except Exception:  # no TensorFlow here: the sklearn digits model is in the same size class
        from models import digits_logreg
        from onnxfn.runtime import write_manifest

        out = ROOT / "artifacts" / "bench" / "bundle-models"
        digits_logreg(out / "digits.onnx")
        write_manifest(out)
        return out


def first_answer_s(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds from spawning ``cmd`` to its first output line (the first Lambda response)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=cwd, text=True
    )
    line = proc.stdout.readline()
    while line.startswith('{"_aws"'):  # the handler's CloudWatch EMF line comes just before the response
        line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    proc.stdout.read()
    proc.wait()
    response = json.loads(line)
    if response.get("statusCode") != 200:
        raise RuntimeError(f"cold-start probe failed: {line[:300]}")
    return elapsed


def cold_starts(models: Path, work: Path) -> dict[str, float]:
    """Median first-answer seconds: the unzipped bundle, the same without .pyc, the installed package."""
    from lambda_probe import http_api_event
    from models import digit_png, digits_split

    from onnxfn._bundle import build_bundle, local_target, unpack

    arch, python = local_target()
    report = build_bundle(models, work / "local", arch=arch, python=python, log=lambda m: None)
    bundle = unpack(report.path, work / "task")
    sources_only = unpack(report.path, work / "task-no-pyc")
    for cache in list(sources_only.rglob("__pycache__")):
        shutil.rmtree(cache)
    events = work / "events.json"
    png = digit_png(digits_split()[1][0])
    events.write_text(
        json.dumps([http_api_event("POST", "/predict", png, {"content-type": "application/octet-stream"})])
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ONNXFN_"))}
    env.update(ONNXFN_MODEL_DIR=str(bundle / "models"), ONNXFN_LOG_LEVEL="ERROR")
    variants = {  # -B: like Lambda's read-only /var/task, nothing writes bytecode caches
        "bundle": [sys.executable, "-I", "-S", "-B", str(PROBE), str(bundle), str(events)],
        "bundle_no_pyc": [sys.executable, "-I", "-S", "-B", str(PROBE), str(sources_only), str(events)],
        "installed": [sys.executable, str(PROBE), "-", str(events)],
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for cmd in variants.values():  # one warm-up each: the page cache, not bytecode
        first_answer_s(cmd, env, work)
    for _ in range(RUNS):
        for name, cmd in variants.items():
            times[name].append(first_answer_s(cmd, env, work))
    if list(sources_only.rglob("__pycache__")):
        raise RuntimeError("the sources-only bundle got bytecode caches: its measurement is void")
    return {name: statistics.median(values) for name, values in times.items()}


def run() -> list[dict]:
    from onnxfn._bundle import build_bundle, local_target

    models = model_dir()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as tmp:
        work = Path(tmp)
        ours = build_bundle(models, work / "arm64", arch="arm64", python="3.12", log=lambda m: None)
        naive = build_bundle(
            models,
            work / "naive",
            arch="arm64",
            python="3.12",
            trim=False,
            bytecode=False,
            check_limits=False,
            log=lambda m: None,
        )
        print(ours.table(), flush=True)
        top = ", ".join(f"{p.name} {p.unzipped / MB:.1f}" for p in ours.top(5))
        trimmed = ", ".join(f"{t.what.split(' (')[0]} {t.bytes / MB:.1f}" for t in ours.trimmed)
        pyc = "with .pyc" if ours.bytecode[0].isdigit() else "no .pyc (no python3.12 here)"
        zipped, naive_zipped = ours.zipped / MB, naive.zipped / MB
        unzipped, naive_unzipped = ours.unzipped / MB, naive.unzipped / MB
        rows.append(
            row("bundle", f"zip MB, python3.12 arm64 + digits model, {pyc} (baseline: untrimmed pip --target); "
                f"trimmed MB: {trimmed}", round(zipped, 1), round(naive_zipped, 1),
                round(zipped / naive_zipped, 3), f"≤ {TARGET_ZIPPED_MB} MB", zipped <= TARGET_ZIPPED_MB, "MB")
        )  # fmt: skip
        rows.append(
            row("bundle", f"unzipped MB, python3.12 arm64 (top five MB: {top})", round(unzipped, 1),
                round(naive_unzipped, 1), round(unzipped / naive_unzipped, 3), f"≤ {TARGET_UNZIPPED_MB} MB",
                unzipped <= TARGET_UNZIPPED_MB, "MB")
        )  # fmt: skip
        cold = cold_starts(models, work)
        arch, python = local_target()
        local = f"python{python} {arch}"
    ratio = cold["bundle"] / cold["installed"]
    no_pyc = cold["bundle_no_pyc"] / cold["installed"]
    rows.append(
        row("bundle", f"cold start s: unzipped bundle ({local}, read-only like /var/task) vs installed package, "
            f"median of {RUNS} fresh processes; the same zip without .pyc (--no-compile): "
            f"{cold['bundle_no_pyc']:.2f} s = {no_pyc:.2f}x", round(cold["bundle"], 3), round(cold["installed"], 3),
            round(ratio, 3), "≤ 1.10× installed", ratio <= 1.10, "s")
    )  # fmt: skip
    rows.append(
        row("bundle", f"cold start s of the unzipped bundle ({local}): fresh process → first HTTP API v2 answer, "
            f"median of {RUNS} (an absolute time: a loaded machine fails it)", round(cold["bundle"], 3), None, None,
            "≤ 0.5 s (issue 14)", cold["bundle"] <= 0.5, "s")
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    for r in run():
        print(json.dumps(r))
