"""Shared by the benchmarks: the digits models (trained once, cached under artifacts/bench), timing helpers."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples"))
WORK = ROOT / "artifacts" / "bench"


def digits_models() -> tuple[Path, Path]:
    """(Keras .keras file, model dir with digits.onnx + manifest) of the demo's CNN, built once."""
    keras_file = WORK / "digits.keras"
    model_dir = WORK / "models"
    if keras_file.exists() and (model_dir / "digits.onnx").exists():
        return keras_file, model_dir
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from demo import load_data, train
    from onnxfn.converter import convert

    x_train, x_test, y_train, _ = load_data()
    model = train(x_train, y_train, epochs=15)
    WORK.mkdir(parents=True, exist_ok=True)
    model.save(keras_file)
    convert(
        model, model_dir / "digits.onnx", labels=[str(i) for i in range(10)], sample=x_test[..., None] / 16.0
    )
    return keras_file, model_dir


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def row(
    area: str,
    what: str,
    ours: float,
    baseline: float | None,
    ratio: float | None,
    target: str,
    met: bool,
    unit: str = "",
) -> dict:
    return {
        "area": area,
        "what": what,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "met": bool(met),
        "unit": unit,
    }
