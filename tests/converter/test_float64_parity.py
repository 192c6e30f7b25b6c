"""The parity check's float64 reference: a chaotic model is accepted, a wrong conversion is not.

The model: a 36-layer tanh stack with gain 3 (a random network in its chaotic regime), so float32 rounding
alone moves its outputs by ~1% of their range, Keras' as much as onnxruntime's, far over the default
tolerance. Converting takes about a second.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnxfn.converter import ConversionError, convert

pytestmark = pytest.mark.convert

WIDTH, DEPTH = 32, 36


def chaotic_model(lam: bool = False):
    """Dense(32, tanh) × 36 with weights N(0, 3²/32) (a gain of 3 per layer), then Dense(10)."""
    import keras

    keras.utils.set_random_seed(0)
    init = keras.initializers.RandomNormal(stddev=3.0 / WIDTH**0.5, seed=1)
    x = inputs = keras.Input((WIDTH,))
    for i in range(DEPTH):
        x = keras.layers.Dense(WIDTH, kernel_initializer=init, activation="tanh")(x)
        if lam and i == 0:  # a Lambda layer: Keras will not rebuild it from its config in safe mode
            x = keras.layers.Lambda(lambda t: t * 1.0)(x)
    outputs = keras.layers.Dense(10, bias_initializer=keras.initializers.RandomNormal(seed=2), name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model():
    return chaotic_model()


@pytest.fixture(scope="module")
def sample():
    return np.random.default_rng(1).normal(size=(8, WIDTH)).astype("float32")


def test_chaotic_model_is_accepted_against_float64(model, sample, tmp_path):
    out = tmp_path / "chaos.onnx"
    report = convert(model, out, task="tensor", sample=sample)
    assert out.exists()
    ref = report.float64
    assert ref is not None, "the default tolerance passed: the model is not chaotic enough to test this"
    assert report.max_abs_diff > report.parity_allowed
    # The premise: Keras float32 itself is off the exact result by more than the tolerance allows.
    assert ref["keras_error"] > report.parity_allowed
    assert ref["accepted"] and ref["onnx_error"] <= ref["margin"] * ref["keras_error"]
    summary = report.summary()
    assert "exceeds the tolerance" in summary and "accepted (the model amplifies float32 rounding)" in summary


def _corrupt_head_bias(monkeypatch, delta: float) -> None:
    """Simulate a conversion bug: the converted graph's output bias is off by ``delta`` in one class."""
    from onnx import numpy_helper
    from onnxfn.converter import _convert

    real = _convert._to_onnx

    def wrong(source, opset):
        proto = real(source, opset)
        (bias,) = [t for t in proto.graph.initializer if numpy_helper.to_array(t).shape == (10,)]
        array = numpy_helper.to_array(bias).copy()
        array[3] += delta
        bias.CopyFrom(numpy_helper.from_array(array, bias.name))
        return proto

    monkeypatch.setattr(_convert, "_to_onnx", wrong)


def test_wrong_conversion_is_refused_despite_float64(model, sample, tmp_path, monkeypatch):
    _corrupt_head_bias(monkeypatch, 0.25)  # ~10% of the outputs' range, far more than float32 moves them
    out = tmp_path / "wrong.onnx"
    with pytest.raises(ConversionError) as info:
        convert(model, out, task="tensor", sample=sample)
    message = str(info.value)
    assert "float64 reference: ONNX error" in message
    assert "further from the exact result than float32 rounding explains" in message
    assert not out.exists()


def test_model_that_cannot_be_rebuilt_keeps_the_refusal(sample, tmp_path):
    out = tmp_path / "lambda.onnx"
    with pytest.raises(ConversionError, match="cannot be rebuilt from its config in float64"):
        convert(chaotic_model(lam=True), out, task="tensor", sample=sample)
    assert not out.exists()


def test_cli_says_why_it_accepted(model, tmp_path, capsys):
    from onnxfn.cli import main

    path = tmp_path / "chaos.keras"
    model.save(path)
    assert main(["convert", str(path), "-o", str(tmp_path / "chaos.onnx"), "--task", "tensor"]) == 0
    out = capsys.readouterr().out
    assert "float64 reference: ONNX error" in out
    assert "accepted (the model amplifies float32 rounding)" in out
