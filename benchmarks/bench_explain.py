"""Cost of ``:explain`` per image (issue 15): occlusion and RISE at the default bounds, on one thread.

One thread is what a 1,769 MB Lambda gets (one vCPU). Each row is a full ``DataPlane.handle("explain")``:
decode, the masked batches through onnxruntime, the heatmap, the overlay PNG and the JSON answer
(no HTTP). Models are built without TensorFlow in seconds (random weights: the cost does not depend on
them): the digits logistic regression (8×8), a CIFAR-sized CNN (32×32×3) in fp32 and static int8, a
small 224×224×3 conv net, and the topics text model. Medians of ONNXFN_BENCH_EXPLAIN_RUNS runs (default 3).

Run: ``python benchmarks/bench_explain.py`` (writes benchmarks/explain.md); ``run()`` gives rows for
benchmarks/run.py.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))
from common import row  # noqa: E402
from models import quantize_int8  # noqa: E402

WORK = ROOT / "artifacts" / "bench" / "explain"
RUNS = int(os.environ.get("ONNXFN_BENCH_EXPLAIN_RUNS", "3"))
BUDGET_S = 10.0  # the default ONNXFN_EXPLAIN_BUDGET_S: every image must finish well inside it


def _conv_net(path: Path, size: int, channels: list[int], quantize: bool = False) -> Path:
    """Conv(3×3, stride 2)+Relu per entry of ``channels`` → GlobalAveragePool → Gemm → Softmax (10 classes)."""
    from models import _save
    from onnx import TensorProto, helper, numpy_helper
    from onnxfn.runtime import ModelMetadata

    rng = np.random.default_rng(0)
    nodes, inits, prev, c_in = [], [], "x", 3
    nodes.append(helper.make_node("Transpose", ["input"], ["x"], perm=[0, 3, 1, 2]))
    for i, c_out in enumerate(channels):
        w = (rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(c_out, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        prev, c_in = f"r{i}", c_out
    wd = (rng.standard_normal((c_in, 10)) * 0.5).astype(np.float32)
    inits += [numpy_helper.from_array(wd, "wd"), numpy_helper.from_array(np.zeros(10, np.float32), "bd")]
    nodes += [
        helper.make_node("GlobalAveragePool", [prev], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "wd", "bd"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    meta = ModelMetadata(
        task="image-classification",
        labels=[f"class {i}" for i in range(10)],
        preprocess={"size": [size, size], "layout": "NHWC", "color": "RGB", "scale": 1 / 255},
    )
    _save(graph, meta, path)
    if quantize:
        calibration = np.random.default_rng(1).random((16, size, size, 3), dtype=np.float32)
        quantize_int8(path, path.with_name(path.stem + "_int8.onnx"), calibration)
        return path.with_name(path.stem + "_int8.onnx")
    return path


def _photo(size: int) -> bytes:
    """A real photograph (sklearn's sample image), resized to ``size``, as PNG."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    image = Image.fromarray(load_sample_images().images[0]).resize((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _models() -> dict[str, Path]:
    from models import digits_logreg, topics_bow
    from onnxfn.runtime import write_manifest

    WORK.mkdir(parents=True, exist_ok=True)
    paths = {
        "digits": WORK / "digits.onnx",
        "cnn32": WORK / "cnn32.onnx",
        "cnn32_int8": WORK / "cnn32_int8.onnx",
        "conv224": WORK / "conv224.onnx",
        "topics": WORK / "topics.onnx",
    }
    if not all(p.exists() for p in paths.values()):
        digits_logreg(paths["digits"])
        _conv_net(paths["cnn32"], 32, [32, 64, 64])
        _conv_net(paths["cnn32"], 32, [32, 64, 64], quantize=True)
        _conv_net(paths["conv224"], 224, [16, 32, 64, 64])
        topics_bow(paths["topics"])
        write_manifest(WORK)
    return paths


def measure() -> list[dict[str, Any]]:
    """One dict per (model, method): median ms per image, masks, ms per mask."""
    from models import digit_png, digits_split
    from onnxfn.runtime import Settings, load_models
    from onnxfn.runtime._dataplane import Call, DataPlane

    _models()
    repo = load_models(WORK, threads=1)
    plane = DataPlane(repo, Settings(threads=1, offload=False))
    inputs = {
        "digits": (digit_png(digits_split()[1][0]), "image/png"),
        "cnn32": (_photo(32), "image/png"),
        "cnn32_int8": (_photo(32), "image/png"),
        "conv224": (_photo(224), "image/png"),
        "topics": (
            b'{"instances": ["'
            + b" ".join([b"the team scored a late goal and the coach said the match was a real win"] * 3)
            + b'"]}',
            "application/json",
        ),
    }
    results = []
    for name, (body, content_type) in inputs.items():
        methods = ["occlusion"] if name == "topics" else ["occlusion", "rise"]
        for method in methods:

            def call(
                name: str = name, method: str = method, body: bytes = body, ct: str = content_type
            ) -> Call:
                return Call(
                    params={"name": name}, query={"method": method}, headers={"content-type": ct}, body=body
                )

            reply = plane.handle("explain", call())  # warm-up (and the answer's size)
            times = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                reply = plane.handle("explain", call())
                times.append((time.perf_counter() - t0) * 1000)
            explanation = json.loads(reply.body)["explanations"][0]
            ms = statistics.median(times)
            results.append(
                {
                    "model": name,
                    "input": repo.get(name).inputs[0].shape[1:],
                    "method": method,
                    "masks": explanation["masks"],
                    "complete": explanation["complete"],
                    "ms": ms,
                    "ms_per_mask": ms / max(1, explanation["masks"]),
                    "kb": len(reply.body) / 1024,
                }
            )
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | input | method | masks | ms per image | ms per mask | answer KB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        shape = "×".join(str(d) for d in r["input"])
        lines.append(
            f"| {r['model']} | {shape} | {r['method']} | {r['masks']} | {r['ms']:.0f} | "
            f"{r['ms_per_mask']:.2f} | {r['kb']:.0f} |"
        )
    return "\n".join(lines)


def run() -> list[dict]:
    """Rows for benchmarks/run.py: each explanation completes inside the default 10 s budget on one thread."""
    return [
        row(
            "explain",
            f"{r['model']} {r['method']} ({r['masks']} masks), ms per image, 1 thread",
            r["ms"],
            None,
            None,
            f"< {BUDGET_S * 1000:.0f} ms, complete",
            r["ms"] < BUDGET_S * 1000 and r["complete"],
            "ms",
        )
        for r in measure()
    ]


def main() -> None:
    import platform

    results = measure()
    text = (
        "# :explain cost per image\n\n"
        "`python benchmarks/bench_explain.py`: one onnxruntime thread (a 1,769 MB Lambda's vCPU), default bounds "
        "(ONNXFN_EXPLAIN_MASKS=256, ONNXFN_EXPLAIN_BATCH=32), the whole `:explain` operation without HTTP "
        f"(decode, masked batches, heatmap, overlay PNG, JSON), median of {RUNS} runs. "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared).\n\n" + table(results) + "\n"
    )
    (HERE / "explain.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
