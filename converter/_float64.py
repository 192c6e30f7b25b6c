"""The float64 reference the parity check falls back on when a network amplifies float32 rounding.

A chaotic network (e.g. an untrained EfficientNetV2L) moves its outputs by percents for last-bit input
differences, so two float32 implementations (Keras and onnxruntime, with different kernels and summation
orders) can differ by more than any fixed tolerance although both are right. Then the question the check
must answer is not "does ONNX equal Keras float32" but "is ONNX as close to the true result as Keras
float32 is": the same architecture and weights, run by Keras in float64, give that true result.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

MARGIN = 3.0
"""ONNX may be up to this many times further from float64 than Keras float32 is.

Keras float32 and onnxruntime float32 are two draws of the same rounding (different kernels, different
summation orders), amplified by the same network, and the max error over a few samples of two such draws
varies a lot: on the catalogue's chaotic nets ONNX's error was 0.5–0.9 × Keras' (EfficientNetV2L 46.3 vs
62.6, EfficientNetV2S 0.072 vs 0.142); on 12 chaotic 28–40-layer tanh stacks (tests/converter/
test_float64_parity.py's kind, 8 samples) it was 0.35–2.7 ×. A margin of 1 would refuse correct
conversions about half the time. A real conversion error adds to the rounding instead (a wrong constant,
layout or op): the test's corrupted output bias is ~10 × over. Anything under 3 × the error float32
itself makes on this model cannot be told from float32 rounding by any check on these samples.
"""

_FLOATS = {"float16", "bfloat16", "float32", "mixed_float16", "mixed_bfloat16"}


@dataclass
class Float64Check:
    """ONNX and Keras float32, each against the same model run by Keras in float64."""

    keras_error: float  # max |keras float32 - float64|
    onnx_error: float  # max |onnx float32 - float64|
    accepted: bool

    def describe(self) -> str:
        if self.accepted:
            return (
                f"float64 reference: ONNX error {self.onnx_error:.3g} ≤ {MARGIN:g} × Keras float32 error "
                f"{self.keras_error:.3g} → accepted (the model amplifies float32 rounding)"
            )
        return (
            f"float64 reference: ONNX error {self.onnx_error:.3g} > {MARGIN:g} × Keras float32 error "
            f"{self.keras_error:.3g} (ONNX is further from the exact result than float32 rounding explains)"
        )


def float64_twin(model: Any) -> Any | None:
    """``model`` rebuilt from its config with every float dtype float64 and its weights copied; None if impossible.

    Only Keras 3 models whose config rebuilds them (functional, sequential, registered custom layers):
    a subclassed model without ``get_config``, a SavedModel or a Keras 2 model give None.
    """
    import keras

    if not isinstance(model, keras.Model):
        return None
    policy = keras.config.dtype_policy()
    try:
        config = _to_float64(copy.deepcopy(keras.saving.serialize_keras_object(model)))
        keras.config.set_dtype_policy("float64")
        twin = keras.saving.deserialize_keras_object(config)
        weights = model.get_weights()
        if len(twin.weights) != len(weights):
            return None
        twin.set_weights(weights)  # assign() casts to each variable's (float64) dtype
    except Exception:  # a config that does not rebuild the model: no reference, keep the refusal
        return None
    finally:
        keras.config.set_dtype_policy(policy)
    return twin


def float64_check(
    model: Any, samples: list[np.ndarray], keras32: list[np.ndarray], onnx32: list[np.ndarray]
) -> Float64Check | None:
    """Compare Keras float32 and ONNX outputs (first output) with the float64 twin's on ``samples``;
    None when the model cannot be rebuilt in float64.

    ``keras32``/``onnx32`` hold one or more runs (e.g. batch N and batch 1), each the outputs for the first
    rows of ``samples``: the errors are maxima over all runs.
    """
    twin = float64_twin(model)
    if twin is None:
        return None
    arrays = [a.astype(np.float64) if np.dtype(a.dtype).kind == "f" else a for a in samples]
    out = twin(arrays if len(arrays) > 1 else arrays[0], training=False)
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    exact = np.asarray(out, dtype=np.float64)
    del twin

    def error(runs: list[np.ndarray]) -> float:
        worst = 0.0
        for run in runs:
            run = np.asarray(run, dtype=np.float64)
            diff = np.abs(run - exact[: len(run)])
            worst = max(worst, float(np.max(diff)) if np.all(np.isfinite(diff)) else float("inf"))
        return worst

    keras_error, onnx_error = error(keras32), error(onnx32)
    accepted = bool(np.isfinite(keras_error) and onnx_error <= MARGIN * keras_error)
    return Float64Check(keras_error=keras_error, onnx_error=onnx_error, accepted=accepted)


def _to_float64(node: Any) -> Any:
    """Every float ``dtype`` in a serialized Keras config (layer policies, input layers) → float64."""
    if isinstance(node, list):
        return [_to_float64(x) for x in node]
    if not isinstance(node, dict):
        return node
    for key, value in node.items():
        if key == "dtype" and isinstance(value, str) and value in _FLOATS:
            node[key] = "float64"
        elif key == "dtype" and isinstance(value, dict) and value.get("class_name") == "DTypePolicy":
            if value.get("config", {}).get("name") in _FLOATS:
                value["config"]["name"] = "float64"
        else:
            node[key] = _to_float64(value)
    return node
