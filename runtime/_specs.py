"""What a model's inputs and outputs are (``TensorSpec``), how its sessions are set up, and the image
preprocessing a model without ``onnxfn.preprocess`` gets from its input shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onnxfn._wire import ONNX_DATATYPES

from ._tensors import numpy_dtype

__all__ = ["TensorSpec", "image_spec_from_shape", "session_options"]


@dataclass(frozen=True)
class TensorSpec:
    """Name, ONNX type and shape of a model input or output (dynamic dims are str or None)."""

    name: str
    type: str
    shape: tuple[int | str | None, ...]

    @property
    def dtype(self) -> Any:
        return numpy_dtype(self.type)

    @property
    def datatype(self) -> str:
        return ONNX_DATATYPES.get(self.type, self.type)

    def v2_shape(self) -> list[int]:
        return [d if isinstance(d, int) and d >= 0 else -1 for d in self.shape]


def session_options(threads: int) -> Any:
    """Options of every session: explicit threads (ORT ignores OMP_NUM_THREADS), sequential, all optimisations.

    The intra-op threads do not spin-wait for work: spinning doubled the CPU per image of a two-thread
    session for no faster answer, and it steals the cores the HTTP side needs (docs/runtime.md). Denormals
    are *not* flushed (``session.set_denormal_as_zero``): it gained nothing measurable here and it sets
    flush-to-zero in the floating-point state of every thread that calls ``run``, which then leaks into
    that thread's other numpy and Python arithmetic (the hypothesis fuzz tests caught it).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def image_spec_from_shape(shape: tuple[int | str | None, ...]) -> dict[str, Any]:
    """Default preprocessing for an image model without ``onnxfn.preprocess`` (DESIGN.md defaults)."""
    dims = list(shape[1:])
    if len(dims) == 2:
        dims = [*dims, 1]
    if len(dims) != 3:
        raise ValueError(f"cannot infer image preprocessing from input shape {list(shape)}")
    height: Any
    width: Any
    channels: Any
    if dims[0] in (1, 3) and dims[2] not in (1, 3):
        channels, height, width, layout = dims[0], dims[1], dims[2], "NCHW"
    else:
        height, width, channels, layout = dims[0], dims[1], dims[2], "NHWC"
    if channels not in (1, 3):
        raise ValueError(f"cannot infer image preprocessing from input shape {list(shape)}")
    static = isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
    size = [height, width] if static else None  # dynamic H/W: each image at its own size
    return {"size": size, "layout": layout, "color": "L" if channels == 1 else "RGB"}
