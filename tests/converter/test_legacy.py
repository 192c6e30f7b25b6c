"""Models written by Keras 2 (the ``tf_keras`` package): ``.h5`` files, SavedModel directories and live
model objects convert and match Keras 2's own predictions.

``tf_keras`` must match TensorFlow's minor version and depends on the ``tensorflow`` distribution name
(not ``tensorflow-cpu``), so ``make venv`` installs it with ``--no-deps``; these tests skip without it.
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import pytest
from onnxfn.converter import ConversionError, convert

pytestmark = pytest.mark.convert
tf_keras = pytest.importorskip("tf_keras")


def _onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def digits_cnn(digits, tmp_path_factory):
    """A Keras 2 CNN trained briefly on real digits, saved as .h5 and as a SavedModel directory."""
    x_train, _, y_train, _ = digits
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Input((8, 8, 1)),
            tf_keras.layers.Rescaling(1 / 16),
            tf_keras.layers.Conv2D(8, 3, activation="relu"),
            tf_keras.layers.BatchNormalization(),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train.astype("float32"), y_train, epochs=2, verbose=0)
    root = tmp_path_factory.mktemp("keras2")
    model.save(root / "cnn.h5")
    model.save(root / "cnn_savedmodel")  # Keras 2: a directory without suffix is a TF SavedModel
    return model, root


@pytest.mark.parametrize("form", ["cnn.h5", "cnn_savedmodel", "object"])
def test_keras2_model_converts(digits_cnn, digits, form, tmp_path):
    model, root = digits_cnn
    _, x_test, _, y_test = digits
    x = x_test.astype("float32")
    source = model if form == "object" else root / form
    if form == "cnn_savedmodel":
        assert (root / form / "saved_model.pb").is_file()
    report = convert(source, tmp_path / "cnn.onnx", labels=[str(i) for i in range(10)], sample=x[:32])
    assert report.task == "image-classification"
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(_onnx(tmp_path / "cnn.onnx", x), expected, atol=1e-5)
    assert np.mean(expected.argmax(1) == y_test) > 0.5  # it is a real (briefly) trained model


@pytest.fixture(scope="module")
def tf_op_h5(tmp_path_factory):
    """Keras 2 functional model using TF functions on Keras tensors (saved as TFOpLambda layers)."""
    import tensorflow as tf

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((6,))
    x = tf.nn.relu6(tf_keras.layers.Dense(8)(inputs)) * 0.5
    x = tf_keras.layers.LSTM(4)(tf.expand_dims(x, 1))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, activation="softmax")(x))
    path = tmp_path_factory.mktemp("keras2-ops") / "ops.h5"
    model.save(path)
    return model, path


def test_h5_only_keras2_can_read_falls_back_to_tf_keras(tf_op_h5, tmp_path):
    import keras

    model, path = tf_op_h5
    with pytest.raises(Exception, match="TFOpLambda"):
        keras.models.load_model(path, compile=False)  # why the fallback exists
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    report = convert(path, tmp_path / "ops.onnx", task="tensor", sample=x)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    np.testing.assert_allclose(_onnx(tmp_path / "ops.onnx", x), model.predict(x, verbose=0), atol=1e-5)


def test_h5_without_tf_keras_says_what_to_install(tf_op_h5, tmp_path, monkeypatch):
    _, path = tf_op_h5
    monkeypatch.setitem(sys.modules, "tf_keras", None)  # as if not installed: import raises ImportError
    with pytest.raises(ConversionError) as caught:
        convert(path, tmp_path / "ops.onnx", task="tensor")
    message = str(caught.value)
    assert "TFOpLambda" in message and "pip install --no-deps 'tf_keras==" in message
    assert not (tmp_path / "ops.onnx").exists()
