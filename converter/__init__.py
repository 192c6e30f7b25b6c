"""onnxfn.converter: Keras → ONNX, parity-checked, with onnxfn metadata (and quantization).

Heavy imports (TensorFlow, tf2onnx) happen inside the functions, not at import.
"""

from __future__ import annotations

from typing import Any

from ._errors import ConversionError

__all__ = ["ConversionError", "ConversionReport", "convert"]


def __getattr__(name: str) -> Any:
    if name in ("convert", "ConversionReport"):
        from . import _convert

        return getattr(_convert, name)
    raise AttributeError(f"module 'onnxfn.converter' has no attribute {name!r}")
