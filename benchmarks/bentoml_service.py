"""The BentoML side of benchmarks/bench_bentoml.py: the same work as ``onnxfn serve``, the BentoML way.

PNG (multipart, BentoML's file input) → Pillow decode → RGB 96×96 → pixels / 127.5 − 1 → onnxruntime → top label and score.
Runs in its own venv (``pip install bentoml onnxruntime pillow``). Settings come from the environment:
``BENCH_MODEL`` (the .onnx file), ``BENCH_THREADS`` (intra-op threads per run, the same as onnxfn's),
``BENCH_CONCURRENCY`` (BentoML's ``threads``: sync calls run side by side in a worker, as onnxfn's runners),
``BENCH_WORKERS`` (worker processes), ``BENCH_BATCHING`` (1: BentoML's adaptive batching, up to 32 rows).
The session gets the options onnxfn uses (no intra-op spinning), so only the servers differ.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
from PIL import Image as PILImage

MODEL = os.environ["BENCH_MODEL"]
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "1"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
BATCHING = os.environ.get("BENCH_BATCHING", "0") == "1"


def _session():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(MODEL, options, providers=["CPUExecutionProvider"])


def _pixels(image: PILImage.Image) -> np.ndarray:
    image = image.convert("RGB")
    if image.size != (96, 96):
        image = image.resize((96, 96), PILImage.BILINEAR)
    return np.asarray(image, dtype=np.float32) * (1 / 127.5) - 1.0


def _top(scores: np.ndarray) -> dict:
    i = int(np.argmax(scores))
    return {"label": f"class_{i}", "index": i, "score": float(scores[i])}


@bentoml.service(
    workers=WORKERS, threads=CONCURRENCY, traffic={"timeout": 60}, logging={"access": {"enabled": False}}
)
class MobileNet:
    """BentoML runs sync APIs in its thread pool, ``threads`` at a time per worker process."""

    def __init__(self) -> None:
        self.session = _session()
        self.input = self.session.get_inputs()[0].name

    if BATCHING:

        @bentoml.api(batchable=True, batch_dim=0, max_batch_size=32, max_latency_ms=1000)
        def predict(self, image: list[PILImage.Image]) -> list[dict]:
            """Adaptive batching: BentoML fuses concurrent requests' lists into one call."""
            x = np.stack([_pixels(i) for i in image])
            scores = self.session.run(None, {self.input: x})[0]
            return [_top(s) for s in scores]

    else:

        @bentoml.api
        def predict(self, image: PILImage.Image) -> dict:
            x = _pixels(image)[None]
            return _top(self.session.run(None, {self.input: x})[0][0])
