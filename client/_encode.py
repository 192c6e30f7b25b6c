"""Turning what users pass into request bodies, and V2 (Open Inference Protocol) tensors both ways.

Kinds of input (``encode``):
- image: ``bytes``, a path (``str`` or ``pathlib.Path``), a binary file object, a ``PIL.Image``,
  or a ``uint8`` numpy array shaped H×W or H×W×C (C in 1, 3, 4) — arrays and PIL images become PNG;
- text: a ``str`` that is not a path, or a text file object;
- tensor: a float/int/bool numpy array or nested lists, sent as one JSON instance (nested lists);
- instance: a ``dict`` keyed by input name for models with several inputs, each value any of the above
  (``{"image": "cat.jpg", "features": [0.1, 2.0]}``); sent as one JSON object, images base64-encoded.

One image goes as an ``application/octet-stream`` body; batches go as JSON ``{"instances": [...]}``
with images base64-encoded (DESIGN.md). ``Encoded.piece`` is the item's JSON text, computed once,
so batch bodies are joined, not re-serialised, and their size is known exactly before sending.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import sys
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Encoded",
    "batch_body",
    "encode",
    "png_bytes",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class Encoded:
    """One input, ready to send: ``kind`` is ``image`` (``data`` is bytes), ``text`` (str), ``tensor``
    (nested lists) or ``instance`` (a dict of input name to ``Encoded``)."""

    kind: str
    data: Any
    name: str | None = None  # where it came from (a file name), for messages and the CLI

    @property
    def piece(self) -> bytes:
        """This item as one element of a JSON ``instances`` list."""
        cached = self.__dict__.get("_piece")
        if cached is None:
            if self.kind == "image":
                cached = b'"' + base64.b64encode(self.data) + b'"'
            elif self.kind == "instance":
                cached = (
                    b"{"
                    + b",".join(json.dumps(k).encode() + b":" + v.piece for k, v in self.data.items())
                    + b"}"
                )
            else:
                try:
                    cached = json.dumps(self.data, separators=(",", ":"), allow_nan=False).encode()
                except ValueError:
                    raise ValueError(
                        f"{self.name or 'input'} contains NaN or infinity: send finite numbers"
                    ) from None
            object.__setattr__(self, "_piece", cached)
        return cached

    @property
    def size(self) -> int:
        """Bytes this item needs on its own: raw bytes for an image (sent as octet-stream), else its JSON."""
        if self.kind == "image":
            return len(self.data)
        return len(self.piece) + len(_BATCH_HEAD) + len(_batch_tail(5))


_BATCH_HEAD = b'{"instances":['


def _batch_tail(top_k: int | None) -> bytes:
    return b"]}" if top_k is None else b'],"top_k":' + str(int(top_k)).encode() + b"}"


def batch_body(items: Iterable[Encoded], top_k: int | None) -> bytes:
    """``{"instances": [...], "top_k": k}`` from already-encoded items."""
    return _BATCH_HEAD + b",".join(item.piece for item in items) + _batch_tail(top_k)


def batch_overhead(top_k: int | None) -> int:
    """Bytes of a JSON batch body beyond its items and commas."""
    return len(_BATCH_HEAD) + len(_batch_tail(top_k))


def encode(x: Any) -> Encoded:
    """The ``Encoded`` form of one input (see the module docstring for what is accepted)."""
    if isinstance(x, Encoded):
        return x
    if isinstance(x, (bytes, bytearray, memoryview)):
        data = bytes(x)
        if not data:
            raise ValueError("empty bytes: pass the image file's contents")
        return Encoded("image", data)
    if isinstance(x, str):
        return _encode_str(x)
    if isinstance(x, dict):
        return _encode_instance(x)
    if isinstance(x, os.PathLike):
        return _encode_path(Path(x))
    if isinstance(x, np.ndarray):
        return _encode_array(x)
    if _is_pil_image(x):
        return Encoded("image", _pil_png(x))
    if hasattr(x, "read"):
        data = x.read()
        name = getattr(x, "name", None)
        name = name if isinstance(name, str) else None
        if isinstance(data, str):
            return Encoded("text", data, name=name)
        if isinstance(data, (bytes, bytearray)):
            if not data:
                raise ValueError(f"file object {name or ''} is empty (at its end?)".replace("  ", " "))
            return Encoded("image", bytes(data), name=name)
        raise TypeError(f"file object returned {type(data).__name__}, expected bytes or str")
    if isinstance(x, (list, tuple, int, float)) and not isinstance(x, bool):
        return _encode_array(np.asarray(x), from_lists=True)
    raise TypeError(
        f"cannot send a {type(x).__name__}: pass a path, bytes, a file object, a PIL image, "
        "a numpy array, nested lists of numbers, text, or a dict of those keyed by input name"
    )


def _encode_instance(values: dict[Any, Any]) -> Encoded:
    """A multi-input instance: each value encoded on its own (images become base64 in the JSON)."""
    if not values:
        raise ValueError("empty dict: pass one value per model input, e.g. {'image': ..., 'features': [...]}")
    out = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise TypeError(f"input names must be strings, got {type(key).__name__} {key!r}")
        if isinstance(value, dict):
            raise TypeError(f"input {key!r}: a dict cannot be nested in an instance")
        try:
            out[key] = encode(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"input {key!r}: {exc}") from None
    return Encoded("instance", out)


def _encode_str(text: str) -> Encoded:
    """An existing file path is read (``.txt`` as text, else as an image); other strings are text."""
    if len(text) < 4096 and "\n" not in text and "\x00" not in text:
        path = Path(text).expanduser()
        try:
            is_file = path.is_file()
        except (OSError, ValueError):
            is_file = False
        if is_file:
            return _encode_path(path, name=text)
        if text.lower().endswith(IMAGE_EXTENSIONS) and (" " not in text or os.sep in text):
            raise FileNotFoundError(f"no such image file: {text!r}")
    return Encoded("text", text)


def _encode_path(path: Path, *, name: str | None = None) -> Encoded:
    if path.suffix.lower() == ".txt":
        return Encoded("text", path.read_text(encoding="utf-8"), name=name or str(path))
    return Encoded("image", _read_file(path), name=name or str(path))


def _read_file(path: Path) -> bytes:
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path} is empty")
    return data


def _encode_array(array: np.ndarray, *, from_lists: bool = False) -> Encoded:
    if array.dtype == np.uint8 and not from_lists and _image_shaped(array.shape):
        return Encoded("image", png_bytes(array))
    if array.dtype.kind not in "biuf":
        raise TypeError(f"cannot send a numpy array of dtype {array.dtype}: use numbers (or uint8 images)")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError("input contains NaN or infinity: send finite numbers")
    return Encoded("tensor", array.tolist())


def _image_shaped(shape: tuple[int, ...]) -> bool:
    return (len(shape) == 2 and min(shape) > 0) or (
        len(shape) == 3 and shape[2] in (1, 3, 4) and min(shape) > 0
    )


def _is_pil_image(x: Any) -> bool:
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(x, module.Image)


def _pil_png(image: Any) -> bytes:
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG of a uint8 H×W or H×W×C (C in 1, 3, 4) array; Pillow when installed, else a tiny writer."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    try:
        from PIL import Image
    except ImportError:
        return write_png(pixels)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_png(pixels: np.ndarray) -> bytes:
    """PNG encoder for uint8 greyscale (H×W), RGB or RGBA (H×W×3|4) arrays, with zlib only."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        color, channels = 0, 1
    elif pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        color, channels = (2 if pixels.shape[2] == 3 else 6), pixels.shape[2]
    else:
        raise ValueError(f"cannot write a PNG of shape {pixels.shape}")
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, width * channels)
    raw = np.zeros((height, width * channels + 1), dtype=np.uint8)  # filter byte 0 (None) per row
    raw[:, 1:] = rows

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1))
        + chunk(b"IEND", b"")
    )
