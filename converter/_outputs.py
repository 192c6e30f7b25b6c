"""Parity for every output of a multi-output Keras model (``_parity`` compares the first one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def other_outputs_diff(source: Any, path: Path, samples: list[np.ndarray]) -> float | None:
    """Max |ONNX - Keras| over outputs 2..N, in tf2onnx's order (``tf.nest.flatten``); None if only one."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if (
        len(session.get_outputs()) < 2
        or source.keras_model is None
        or not hasattr(source.keras_model, "inputs")
    ):
        return None
    import tensorflow as tf

    names = [i.name for i in session.get_inputs()]
    got = session.run(None, dict(zip(names, samples, strict=True)))
    arrays = samples if len(samples) > 1 else samples[0]
    expected = [np.asarray(x) for x in tf.nest.flatten(source.keras_model(arrays, training=False))]
    if len(expected) != len(got):
        return float("inf")
    diffs = [
        float(np.max(np.abs(g.astype(np.float64) - e.astype(np.float64))))
        if g.shape == e.shape
        else float("inf")
        for g, e in zip(got[1:], expected[1:], strict=True)
    ]
    return max(diffs)
