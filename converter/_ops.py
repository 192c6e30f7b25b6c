"""TensorFlow ops tf2onnx 1.17 has no handler for, mapped to standard ONNX ops.

Passed to ``tf2onnx.convert.from_function(custom_op_handlers=...)`` (tf2onnx's documented hook: a dict
``{tf_op: (handler, args)}`` whose handler rewrites the TF node in place inside tf2onnx's graph).
Each mapping is exact (no approximation) and checked by the converter's parity check like any other op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _erfc(ctx: Any, node: Any, name: str, args: list[Any]) -> Any:
    """``Erfc(x) = 1 - Erf(x)``: what ``tf.nn.gelu(approximate=False)`` (Keras' exact GELU) emits."""
    import numpy as np
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])
    node.type = "Sub"
    node.domain = ""
    return node


HANDLERS: dict[str, Any] = {"Erfc": _erfc}
"""TF op → handler; TF op names the converter knows how to map beyond tf2onnx's own."""


def custom_op_handlers() -> dict[str, tuple[Any, list[Any]]]:
    """A fresh ``custom_op_handlers`` dict for ``tf2onnx.convert.from_function``."""
    return {op: (handler, []) for op, handler in HANDLERS.items()}


@contextmanager
def traceable_keras() -> Iterator[None]:
    """While tracing for tf2onnx, Keras' TensorFlow backend emits plain ops instead of XLA-only calls.

    Keras 3 runs grouped and depthwise-as-grouped convolutions (ConvNeXt, any ``Conv2D(groups>1)``)
    through a nested ``tf.function(jit_compile=True)`` because TF's CPU kernel lacks them; tf2onnx sees
    an opaque ``StatefulPartitionedCall`` it cannot inline. The plain ``Conv2D`` with a grouped kernel is
    what the XLA function contains, and tf2onnx maps it to ONNX ``Conv(group=G)``. Eager calls (Keras'
    own predictions for the parity check) keep the original path.
    """
    import tensorflow as tf

    try:
        from keras.src.backend.tensorflow import nn as tf_nn
    except ImportError:  # another Keras layout: nothing to patch
        yield
        return
    original = tf_nn.conv

    def conv(
        inputs: Any,
        kernel: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
    ) -> Any:
        if tf.executing_eagerly():
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        from keras.src.backend import standardize_data_format

        data_format = standardize_data_format(data_format)
        return tf.nn.convolution(
            inputs,
            kernel,
            strides,
            padding.upper(),
            data_format=tf_nn._convert_data_format(data_format, len(inputs.shape)),
            dilations=dilation_rate,
        )

    tf_nn.conv = conv
    try:
        yield
    finally:
        tf_nn.conv = original
