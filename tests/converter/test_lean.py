"""converter/_lean.py: the leaner tf2onnx run gives the ONNX plain tf2onnx gives (it only frees memory sooner)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.convert


def _model():
    import keras

    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("gelu")(x)
    x = keras.layers.DepthwiseConv2D(3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)
    return keras.Model(inputs, outputs)


def _plain_tf2onnx(model):
    """tf2onnx.convert.from_function as tf2onnx runs it, outside ``lean_tf2onnx``."""
    import tensorflow as tf
    import tf2onnx
    from onnxfn.converter._ops import custom_op_handlers, traceable_keras

    signature = (tf.TensorSpec((None, 16, 16, 3), tf.float32, name="input"),)
    function = tf.function(lambda x: model(x, training=False), input_signature=signature, autograph=False)
    with traceable_keras():
        proto, _ = tf2onnx.convert.from_function(
            function, input_signature=signature, opset=17, custom_op_handlers=custom_op_handlers()
        )
    return proto


def test_lean_conversion_equals_plain_tf2onnx():
    import gc

    import onnxruntime as ort
    from onnx import numpy_helper
    from onnxfn.converter._convert import _to_onnx
    from onnxfn.converter._load import load

    model = _model()
    lean = _to_onnx(load(model), 17)
    plain = _plain_tf2onnx(model)
    assert not gc.isenabled() or gc.get_freeze_count() == 0, "lean_tf2onnx left objects frozen"
    assert [n.op_type for n in lean.graph.node] == [n.op_type for n in plain.graph.node]

    def weights(proto):
        return sorted(numpy_helper.to_array(t).tobytes() for t in proto.graph.initializer)

    assert weights(lean) == weights(plain)
    assert all(t.data_location == 0 and not t.external_data for t in lean.graph.initializer)
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    outs = [
        ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {p.graph.input[0].name: x}
        )[0]
        for p in (lean, plain)
    ]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[0], np.asarray(model(x)), atol=1e-4)
