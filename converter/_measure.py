"""Measuring model variants side by side: latency (interleaved, warm, medians), outputs, and which ops run
quantized. Used by ``quantize`` and by the benchmark, so both report the same numbers the same way."""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]

# Ops whose cost is in their weights: the ones quantization is about.
WEIGHTED_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "RNN", "Gather", "Attention"}
# Quantized ops (dynamic/QOperator form, and what onnxruntime fuses QDQ groups into)
# -> the float op they replace.
INT8_OPS = {
    "MatMulInteger": "MatMul",
    "DynamicQuantizeMatMul": "MatMul",
    "MatMulIntegerToFloat": "MatMul",
    "QLinearMatMul": "MatMul",
    "ConvInteger": "Conv",
    "QLinearConv": "Conv",
    "QGemm": "Gemm",
    "DynamicQuantizeLSTM": "LSTM",
    "QAttention": "Attention",
    "QLinearAdd": "Add",
    "QLinearMul": "Mul",
    "QLinearAveragePool": "AveragePool",
    "QLinearGlobalAveragePool": "GlobalAveragePool",
    "QLinearConcat": "Concat",
    "QLinearSigmoid": "Sigmoid",
    "QLinearSoftmax": "Softmax",
    "QLinearLeakyRelu": "LeakyRelu",
    "QLinearReduceMean": "ReduceMean",
    "QLinearWhere": "Where",
}
_INT8_TYPES = {2, 3}  # uint8, int8
_FLOAT16 = 10


def session(path: str | Path, *, threads: int = 1, optimized: str | Path | None = None) -> Any:
    """An onnxruntime CPU session: fixed threads (ORT ignores OMP_NUM_THREADS), full graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if optimized is not None:
        # Level "extended" applies the QDQ -> QLinear* fusions and stays serialisable.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(optimized)
    else:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def batch_feeds(feeds: Feeds, size: int) -> Feeds:
    """``size`` samples from ``feeds``, repeating them when there are fewer."""
    n = len(next(iter(feeds.values())))
    index = np.arange(size) % n
    return {name: np.ascontiguousarray(array[index]) for name, array in feeds.items()}


def latencies(
    sessions: dict[str, Any],
    feeds: dict[int, Feeds],
    *,
    runs: int = 30,
    warmup: int = 3,
    samples: dict[str, dict[int, list[float]]] | None = None,
) -> dict[str, dict[int, float]]:
    """Median ms per (variant, batch size), measured interleaved (A/B/C, B/C/A, ...) to share noise.

    ``samples``, when given, receives every timing (ms, in round order: round i of one variant ran next to
    round i of the others, so their ratios are paired)."""
    names = list(sessions)
    for name in names:
        for feed in feeds.values():
            for _ in range(warmup):
                sessions[name].run(None, feed)
    times: dict[str, dict[int, list[float]]] = {name: {b: [] for b in feeds} for name in names}
    for r in range(max(1, runs)):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            for batch, feed in feeds.items():
                started = time.perf_counter()
                sessions[name].run(None, feed)
                times[name][batch].append((time.perf_counter() - started) * 1000)
    if samples is not None:
        samples.update(times)
    return {name: {b: float(np.median(t)) for b, t in per.items()} for name, per in times.items()}


def outputs(sess: Any, feeds: Feeds, *, chunk: int = 256) -> np.ndarray:
    """First output over all samples, run in chunks to bound memory."""
    n = len(next(iter(feeds.values())))
    parts = []
    for start in range(0, n, chunk):
        part = {name: array[start : start + chunk] for name, array in feeds.items()}
        parts.append(np.asarray(sess.run(None, part)[0], dtype=np.float32))
    return np.concatenate(parts)


def top1(scores: np.ndarray) -> np.ndarray:
    """Predicted class per row: argmax, or p > 0.5 for a one-column (sigmoid) classifier."""
    scores = scores.reshape(len(scores), -1)
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0.5).astype(np.int64)
    return np.argmax(scores, axis=1)


def op_counts(proto: Any) -> tuple[dict[str, int], dict[str, int]]:
    """(quantized, not quantized): weighted ops of the graph, by their float op type.

    Quantized means: replaced by an integer op (dynamic), fed by DequantizeLinear (static QDQ), reading
    int8 weights (a quantized embedding Gather), or reading float16 weights (fp16).
    """
    graph = proto.graph
    initializers = {init.name: init.data_type for init in graph.initializer}
    producers = {out: node.op_type for node in graph.node for out in node.output}
    quantized: Counter[str] = Counter()
    plain: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type in INT8_OPS:
            quantized[INT8_OPS[node.op_type]] += 1
            continue
        if node.op_type not in WEIGHTED_OPS:
            continue
        inputs = [name for name in node.input if name]
        if node.op_type == "Gather":
            data = inputs[0]
            if producers.get(data) == "DequantizeLinear" or initializers.get(data) in (
                *_INT8_TYPES,
                _FLOAT16,
            ):
                quantized["Gather"] += 1
            elif initializers.get(data) == 1:
                plain["Gather"] += 1
            continue  # a Gather on shapes or activations is not a weighted op
        if any(producers.get(name) == "DequantizeLinear" for name in inputs) or any(
            initializers.get(name) == _FLOAT16 for name in inputs
        ):
            quantized[node.op_type] += 1
        else:
            plain[node.op_type] += 1
    return dict(sorted(quantized.items())), dict(sorted(plain.items()))


def int8_kernels(path: str | Path) -> dict[str, int]:
    """Integer kernels onnxruntime actually runs, after its QDQ fusions (from its optimised graph)."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        session(path, optimized=optimized)
        proto = onnx.load(str(optimized))
    found: Counter[str] = Counter()
    for node in proto.graph.node:
        if node.op_type in INT8_OPS:
            found[node.op_type] += 1
    return dict(sorted(found.items()))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(top1(a) == top1(b)))


def accuracy(scores: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    return float(np.mean(top1(scores) == np.asarray(labels)))
