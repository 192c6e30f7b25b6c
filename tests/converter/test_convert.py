"""``convert`` on the layers users bring beyond plain CNNs: each model is built in seconds, converted,
parity-checked against Keras (the converter's own check, plus an independent one here), and quantized.

Covers what tf2onnx 1.17 alone refuses or breaks (exact GELU's ``Erfc``, grouped convolutions compiled
with XLA, constants captured from eager code), transformer encoders, recurrent and Conv1D text models, and
the errors a model that truly cannot convert gets.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxfn.converter import ConversionError, convert, quantize

pytestmark = pytest.mark.convert

VOCAB, SEQ = 200, 16


def _run(path, *arrays):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, arrays, strict=True)))[0]


def _tokens(n: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=(n, SEQ)).astype("int32")


def _keras():
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _convert_checked(model, path, sample, **kwargs):
    """Convert; then check ONNX == Keras on ``sample`` independently of the converter's own check."""
    report = convert(model, path, task="tensor", sample=sample, **kwargs)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    expected = np.asarray(model(sample, training=False))
    np.testing.assert_allclose(_run(path, sample), expected, atol=1e-4, rtol=1e-4)
    assert np.std(expected) > 1e-3, "a constant output would make parity meaningless"
    return report


# -- ops tf2onnx lacks ---------------------------------------------------------------------------


def test_exact_gelu_maps_to_erf(tmp_path):
    keras = _keras()
    from keras import layers

    model = keras.Sequential(
        [keras.Input((12,)), layers.Dense(32, activation="gelu"), layers.Dense(32), layers.Activation("gelu")]
    )
    x = np.random.default_rng(0).normal(size=(32, 12)).astype("float32") * 3
    _convert_checked(model, tmp_path / "gelu.onnx", x)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "gelu.onnx")).graph.node}
    assert "Erf" in ops, ops


def test_grouped_conv_layernorm_gelu_like_convnext(tmp_path):
    """ConvNeXt's block: depthwise Conv2D(groups=C) (Keras runs it through XLA), LayerNorm, exact GELU."""
    keras = _keras()
    from keras import layers

    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 4, strides=4)(inputs)
    skip = x
    x = layers.Conv2D(16, 7, padding="same", groups=16)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    x = layers.Dense(64, activation="gelu")(x)
    x = layers.Conv2D(16, 3, padding="same", groups=4)(layers.Dense(16)(x))
    x = layers.Add()([skip, x])
    outputs = layers.Dense(5)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    sample = np.random.default_rng(0).uniform(0, 1, size=(16, 16, 16, 3)).astype("float32")
    _convert_checked(model, tmp_path / "grouped.onnx", sample)
    conv_groups = [
        a.i
        for n in onnx.load(str(tmp_path / "grouped.onnx")).graph.node
        if n.op_type == "Conv"
        for a in n.attribute
        if a.name == "group"
    ]
    assert 16 in conv_groups and 4 in conv_groups, conv_groups


def test_normalization_layer_constants_are_frozen(tmp_path):
    """EfficientNet's built-in Normalization: its mean/variance must not become extra model inputs."""
    keras = _keras()
    from keras import layers

    inputs = keras.Input((8, 8, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.052, 0.05, 0.057])(x)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    outputs = layers.Dense(3)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    sample = np.random.default_rng(0).uniform(0, 255, size=(16, 8, 8, 3)).astype("float32")
    _convert_checked(model, tmp_path / "norm.onnx", sample)
    assert [i.name for i in onnx.load(str(tmp_path / "norm.onnx")).graph.input] == ["input"]


def test_efficientnet_b0_converts_and_serves(tmp_path):
    """The issue's case: EfficientNetB0 failed with "zip() argument 2 is shorter than argument 1"."""
    keras = _keras()
    model = keras.applications.EfficientNetB0(
        weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
    )
    sample = np.random.default_rng(0).uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
    report = convert(model, tmp_path / "effnet.onnx", task="tensor", sample=sample)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    assert len(onnx.load(str(tmp_path / "effnet.onnx")).graph.input) == 1


# -- transformers, recurrent and Conv1D text models (integer token inputs) ------------------------


def _transformer(keras):
    from keras import layers, ops

    class PositionEmbedding(layers.Layer):
        def __init__(self, length, vocab, dim, **kwargs):
            super().__init__(**kwargs)
            self.tokens = layers.Embedding(vocab, dim)
            self.positions = layers.Embedding(length, dim)

        def call(self, x):
            return self.tokens(x) + self.positions(ops.arange(ops.shape(x)[-1]))

    tokens = keras.Input((SEQ,), dtype="int32")
    x = PositionEmbedding(SEQ, VOCAB, 32)(tokens)
    attended = layers.MultiHeadAttention(num_heads=4, key_dim=8)(x, x)
    x = layers.LayerNormalization(epsilon=1e-6)(x + attended)
    ff = layers.Dense(32)(layers.Dense(64, activation="gelu")(x))
    x = layers.LayerNormalization(epsilon=1e-6)(x + ff)
    outputs = layers.Dense(4)(layers.GlobalAveragePooling1D()(x))
    return keras.Model(tokens, outputs)


def _gru(keras):
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((SEQ,), dtype="int32"),
            layers.Embedding(VOCAB, 16),
            layers.Bidirectional(layers.GRU(16, return_sequences=True)),
            layers.GRU(16),
            layers.Dense(4),
        ]
    )


def _conv1d(keras):
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((SEQ,), dtype="int32"),
            layers.Embedding(VOCAB, 16),
            layers.Conv1D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling1D(2),
            layers.Conv1D(32, 3, activation="relu"),
            layers.GlobalMaxPooling1D(),
            layers.Dense(4),
        ]
    )


@pytest.mark.parametrize("builder", [_transformer, _gru, _conv1d], ids=["transformer", "bigru", "conv1d"])
def test_text_models_convert_and_quantize(builder, tmp_path):
    keras = _keras()
    model = builder(keras)
    fp32 = tmp_path / "text.onnx"
    _convert_checked(model, fp32, _tokens(32, seed=2))
    calibration, held_out = _tokens(96, seed=3), _tokens(64, seed=4)
    for mode in ("dynamic", "static", "fp16"):
        report = quantize(fp32, tmp_path / f"{mode}.onnx", mode=mode, calibration=calibration, runs=2)
        assert report.chosen == mode
        got = _run(tmp_path / f"{mode}.onnx", held_out)
        expected = np.asarray(model(held_out, training=False))
        # Quantized: same predictions on most held-out inputs.
        assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.8, mode
    auto = quantize(fp32, tmp_path / "auto.onnx", mode="auto", calibration=calibration, eval_data=held_out)
    assert auto.chosen in ("fp32", "dynamic", "static", "fp16")
    chosen = next(v for v in auto.variants if v.name == auto.chosen)
    assert chosen.status == "chosen" and chosen.reason


def test_static_int8_says_when_recurrent_ops_stay_float(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # onnxruntime's shape inference dumps files here when it fails on Loops
    keras = _keras()
    model = _gru(keras)
    fp32 = tmp_path / "gru.onnx"
    convert(model, fp32, task="tensor", sample=_tokens(16))
    report = quantize(fp32, tmp_path / "auto.onnx", mode="auto", calibration=_tokens(96), runs=2)
    static = next(v for v in report.variants if v.name == "static")
    text = " ".join([static.reason, *report.warnings])
    assert "GRU" in text and "float" in text, text
    assert report.chosen != "static" or "GRU" in text
    assert not list(cwd.iterdir()), "scratch files left in the working directory"


# -- errors: what cannot convert is refused with the layer, the op and what to do -----------------


def test_unsupported_op_names_layer_op_and_fix(tmp_path):
    keras = _keras()
    import tensorflow as tf
    from keras import layers

    class Bessel(layers.Layer):
        def call(self, x):
            return tf.math.special.bessel_i1e(x)  # no ONNX mapping in tf2onnx, none in onnxfn

    model = keras.Sequential(
        [keras.Input((4,)), layers.Dense(4), Bessel(name="bessel_features"), layers.Dense(2)]
    )
    with pytest.raises(ConversionError) as caught:
        convert(model, tmp_path / "bessel.onnx", task="tensor")
    message = str(caught.value)
    assert "'bessel_features'" in message and "Bessel" in message  # the layer
    assert "BesselI1e" in message  # the TF op
    assert "replace" in message or "outside the model" in message  # what to do
    assert not (tmp_path / "bessel.onnx").exists()
