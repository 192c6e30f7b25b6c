"""tf2onnx with fewer copies of the weights alive at once (ConvNeXtXLarge: 1.4 GB of weights).

Measured on ConvNeXtTiny/Base (114/354 MB of float32 weights), tf2onnx 1.17 as called by
``tf2onnx.convert.from_function`` peaks at ~24 × the weights above the Keras model, from two places:

- its ONNX graph optimizer deep-copies the whole graph, constants included, before each of its 12
  optimizers and iterations (to roll back on failure); the replaced graphs are reference cycles that
  only Python's cyclic collector frees, which runs by object counts, not bytes: ~14 dead copies pile
  up between collections (the largest share, ~+30 × the weights on ConvNeXtTiny);
- freezing (``convert_variables_to_constants_v2``) builds the frozen graph_def, re-imports it into a
  new concrete function and serializes that back (``as_graph_def``): ~9 × the weights.

``lean_tf2onnx`` patches both while it is active: tf2onnx's optimizer loop runs as before (same
optimizers, same order, same rollback of a failing one) but frees each replaced graph before copying the
next; freezing returns the frozen graph_def directly (tf2onnx's own large-model freezing, without the
round trip through a concrete function) and grappler, configured as tf2onnx configures it, gets it
serialized once. ``to_onnx`` also asks tf2onnx for its large-model mode, which keeps the weights out of
the TF graph it imports and out of the ONNX proto; ``inline_external`` then moves them into the proto one
at a time. The ONNX produced is the same (MobileNetV3Small, ConvNeXtTiny, a Bidirectional GRU: identical
nodes and initializers; EfficientNetB0: one redundant Reshape fewer; identical outputs for all).
Peak RSS: ConvNeXtTiny 5.7 → 2.5 GB, ConvNeXtBase 11.5 → 5.5 GB, ConvNeXtXLarge OOM-killed at 23 GB →
18.9 GB.
"""

from __future__ import annotations

import copy
import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def lean_tf2onnx() -> Iterator[None]:
    """While active, tf2onnx frees each optimizer's replaced graph at once and freezes without a round trip."""
    import numpy as np
    import tensorflow as tf
    from tf2onnx import optimizer, tf_loader

    real_optimize, real_from_function = optimizer.optimize_graph, tf_loader.from_function

    def optimize_graph(graph: Any, catch_errors: bool = True, optimizers: Any = None) -> Any:
        # tf2onnx turns rollback off for large models; onnxfn keeps it (a failing optimizer is skipped,
        # as for any model): ``_optimize`` is tf2onnx's loop with each replaced graph freed at once.
        return _optimize(graph, optimizer._get_optimizers() if optimizers is None else optimizers)

    def from_function(
        func: Any, input_names: list[str], output_names: list[str], large_model: bool = False
    ) -> Any:
        # large_model (onnxfn always asks for it: ``_convert._to_onnx``) only matters after freezing.
        graph_def = tf_loader.convert_variables_to_constants_large_model(func)
        graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
        gc.collect()
        gc.freeze()  # the traced function and Keras objects: out of every later collection's way
        # tf2onnx imports the graph here to filter resource inputs out: onnxfn's traced functions take
        # tensors only, so the import (one more copy of the weights) is skipped.
        with tf.Graph().as_default():
            meta = _grappler_input(input_names, output_names, graph_def)
            del graph_def
            return _grappler(meta)

    optimizer.optimize_graph, tf_loader.from_function = optimize_graph, from_function
    shim = not hasattr(np, "product")  # tf2onnx's large-model path calls np.product, gone in numpy 2
    if shim:
        np.product = np.prod
    gc.collect()
    gc.freeze()  # collections below scan only what tf2onnx creates: ~10 ms each instead of ~250 ms
    try:
        yield
    finally:
        optimizer.optimize_graph, tf_loader.from_function = real_optimize, real_from_function
        if shim:
            del np.product
        gc.unfreeze()
        gc.collect()


def _optimize(graph: Any, optimizers: Any) -> Any:
    """``tf2onnx.optimizer.optimize_graph(graph, catch_errors=True)``, keeping at most two graphs alive.

    tf2onnx deep-copies the graph before each optimizer (to roll back when one fails) and leaves the
    replaced graph, a reference cycle, to the cyclic collector, which runs by object counts, not bytes.
    """
    log = logging.getLogger("tf2onnx.optimizer")
    again, iteration = True, 0
    while again:
        again = False
        for name, factory in optimizers.items():
            gc.collect()  # the graph the previous optimizer replaced, before copying this one
            try:
                current = copy.deepcopy(graph)
                opt = factory()
                graph = opt.optimize(current, iteration) or graph
                again = again or opt.graph_been_opt
            except Exception:
                log.warning("Failed to apply %s", name, exc_info=True)
            current = None
        iteration += 1
    try:
        graph.topological_sort(graph.get_nodes())
    except Exception:
        log.warning("Failed topological_sort", exc_info=True)
    return graph


class _Serialized:
    """A MetaGraphDef already serialized: ``tf_optimizer.OptimizeGraph`` only calls ``SerializeToString``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        data, self.data = self.data, b""
        return data


def _grappler_input(input_names: list[str], output_names: list[str], graph_def: Any) -> _Serialized:
    """tf2onnx's ``tf_optimize_grappler`` input, serialized once (the proto copies are freed at once)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph_def)
    fetch = meta_graph_pb2.CollectionDef()
    for t in input_names + output_names:
        fetch.node_list.value.append(t)
    meta.collection_def["train_op"].CopyFrom(fetch)
    return _Serialized(meta.SerializeToString())


def _grappler(meta: _Serialized) -> Any:
    """tf2onnx's grappler pass (same configuration as ``tf_loader.tf_optimize_grappler``) on ``meta``."""
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer

    config = config_pb2.ConfigProto()
    config.graph_options.infer_shapes = True
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers[:] = ["constfold", "function", "dependency"]
    rewrite.experimental_disable_folding_quantization_emulation = True
    if not getattr(tf_optimizer, "is_oss", False):  # a TensorFlow build that wants the proto itself
        return tf_optimizer.OptimizeGraph(
            config, meta_graph_pb2.MetaGraphDef.FromString(meta.SerializeToString())
        )
    return tf_optimizer.OptimizeGraph(config, meta)


def inline_external(proto: Any, storage: Any) -> Any:
    """tf2onnx's large-model output made an ordinary ModelProto: every tensor it left in ``storage``
    (an ``ExternalTensorStorage``) back as ``raw_data``, each freed from ``storage`` as it moves."""
    from onnx import TensorProto

    data = storage.name_to_tensor_data if storage is not None else {}
    for tensor in _tensors(proto.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location")
        tensor.raw_data = data.pop(location)
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT
    if storage is not None:
        storage.node_to_modified_value_attr.clear()
    return proto


def _tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)
