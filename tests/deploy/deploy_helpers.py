"""Helpers for tests/deploy: run the Lambda probe in a fresh (isolated) interpreter."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
API_KEY = "offline-test-key-3f9a"  # serverless-offline runs with its sha256 in ONNXFN_API_KEY_HASHES


def run_probe(
    bundle: str | Path, events: list[dict], tmp_path: Path, env: dict | None = None
) -> tuple[list, dict]:
    """Run lambda_probe.py in a fresh ``python -I -S`` with only ``bundle`` (``-``: the installed package)."""
    events_file = tmp_path / f"events-{time.monotonic_ns()}.json"
    events_file.write_text(json.dumps(events))
    isolated = ["-I", "-S", "-B"] if str(bundle) != "-" else ["-B"]
    cmd = [sys.executable, *isolated, str(HERE / "lambda_probe.py"), str(bundle), str(events_file)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ONNXFN_"))}
    full_env.update(PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    result = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    # The handler also prints one CloudWatch EMF line per invocation (runtime/_emf.py): one per event.
    emf = [line for line in lines if "_aws" in line]
    lines = [line for line in lines if "_aws" not in line]
    assert len(emf) == len(events), f"{len(emf)} EMF lines for {len(events)} invocations"
    return lines[:-1], lines[-1]


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def big_tensor_model(path: Path, mib: int, seed: int = 0) -> np.ndarray:
    """A valid ``tensor`` model of about ``mib`` MiB that does not compress (random float32 weights):
    ``y = sum(x @ W, axis=1)`` for ``x`` of shape (batch, 4). Returns ``W.sum(axis=1)``: ``y = x @ that``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxfn.runtime import ModelMetadata

    columns = mib * 1024 * 1024 // (4 * 4)
    weights = np.random.default_rng(seed).standard_normal((4, columns)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["wide"]),
            helper.make_node("ReduceSum", ["wide", "axes"], ["output"], keepdims=1),
        ],
        "big_tensor",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxfn-tests"
    )
    model.ir_version = 8
    ModelMetadata(task="tensor", source={"trainer": "random weights (a size test)"}).write(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weights.astype(np.float64).sum(axis=1)
