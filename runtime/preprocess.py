"""Turning user input into model tensors: images, text and plain numeric arrays (the public facade).

This is the one implementation of preprocessing in onnxfn: the runtime, the converter's calibration
and ``Client.local`` all call it. It needs numpy and Pillow only. The code lives in ``_image.py``,
``_text.py`` and ``_tensors.py``.
"""

from __future__ import annotations

from ._image import IMAGE_FORMATS, ImagePreprocessor, sniff_image
from ._tensors import check_batch, check_shape, check_tensor, numpy_dtype, to_array
from ._text import TextPreprocessor

__all__ = [
    "IMAGE_FORMATS",
    "ImagePreprocessor",
    "TextPreprocessor",
    "check_batch",
    "check_shape",
    "check_tensor",
    "numpy_dtype",
    "sniff_image",
    "to_array",
]
