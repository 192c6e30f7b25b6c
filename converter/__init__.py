"""onnxfn.converter: Keras → ONNX, parity-checked, with onnxfn metadata, and quantization you can trust.

Heavy imports (TensorFlow, tf2onnx, onnxruntime.quantization) happen inside the functions, not at import.
"""

from __future__ import annotations

from typing import Any

from ._errors import ConversionError

__all__ = [
    "ConversionError",
    "ConversionReport",
    "QuantizationReport",
    "convert",
    "quantize",
    "text_preprocess",
]

_LAZY = {
    "convert": "_convert",
    "ConversionReport": "_convert",
    "quantize": "_quantize",
    "QuantizationReport": "_report",
    "VariantResult": "_report",
    "text_preprocess": "_text",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onnxfn.converter' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
