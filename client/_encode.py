"""Turning what users pass into request bodies, and V2 (Open Inference Protocol) tensors both ways.

Kinds of input (``encode``):
- image: ``bytes``, a path (``str`` or ``pathlib.Path``), a binary file object, a ``PIL.Image``,
  or a ``uint8`` numpy array shaped H×W or H×W×C (C in 1, 3, 4) — arrays and PIL images become PNG;
- text: a ``str`` that is not a path, or a text file object;
- tensor: a float/int/bool numpy array or nested lists, sent as one JSON instance (nested lists).

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Encoded",
    "batch_body",
    "decode_infer_response",
    "encode",
    "encode_infer_request",
    "png_bytes",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


@dataclass(frozen=True)
class Encoded:
    """One input, ready to send: ``kind`` is ``image`` (``data`` is bytes), ``text`` (str) or
    ``tensor`` (nested lists)."""

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
        "a numpy array, nested lists of numbers, or text"
    )


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


def looks_like_image(data: bytes) -> bool:
    return data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


# -- KServe V2 / Open Inference Protocol ------------------------------------------------------------

V2_DATATYPES = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
}
NUMPY_DTYPES = {name: dtype for dtype, name in V2_DATATYPES.items()}
INFER_HEADER = "inference-header-content-length"


def v2_datatype(array: np.ndarray) -> str:
    if array.dtype.kind in "OSU":
        return "BYTES"
    try:
        return V2_DATATYPES[array.dtype]
    except KeyError:
        raise TypeError(f"no KServe V2 datatype for numpy dtype {array.dtype}") from None


def _pack_bytes(array: np.ndarray) -> bytes:
    parts = []
    for value in array.reshape(-1):
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def encode_infer_request(
    inputs: Mapping[str, Any],
    outputs: Iterable[str] | None = None,
    *,
    binary: bool = True,
    request_id: str | None = None,
) -> tuple[bytes, int | None]:
    """Body and ``Inference-Header-Content-Length`` of a V2 infer request (Triton-compatible).

    With ``binary`` (the default) tensors travel as raw little-endian bytes after the JSON header and
    outputs are asked for in binary too; else everything is JSON (header length None).
    """
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in inputs.items():
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        datatype = v2_datatype(array)
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            if datatype == "BYTES":
                raw = _pack_bytes(array)
            else:
                raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            if datatype == "BYTES":
                entry["data"] = [
                    v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)
                ]
            else:
                if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                    raise ValueError(f"input {name!r} contains NaN or infinity: send finite numbers")
                entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    header: dict[str, Any] = {}
    if request_id:
        header["id"] = request_id
    header["inputs"] = entries
    if outputs is not None:
        header["outputs"] = [{"name": o, "parameters": {"binary_data": binary}} for o in outputs]
    elif binary:
        header["parameters"] = {"binary_data_output": True}
    head = json.dumps(header, separators=(",", ":")).encode()
    if not binary:
        return head, None
    return head + b"".join(chunks), len(head)


def decode_infer_response(
    body: bytes, header_length: int | None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and the output tensors (by name) of a V2 infer answer, JSON or binary."""
    if header_length is None:
        header_bytes, binary = body, memoryview(b"")
    else:
        if not 0 < header_length <= len(body):
            raise ValueError(f"Inference-Header-Content-Length {header_length} is outside the body")
        header_bytes, binary = body[:header_length], memoryview(body)[header_length:]
    header = json.loads(header_bytes)
    if not isinstance(header, dict) or not isinstance(header.get("outputs"), list):
        raise ValueError("infer answer has no 'outputs' list")
    offset = 0
    outputs: dict[str, np.ndarray] = {}
    for item in header["outputs"]:
        name, shape, datatype = item["name"], [int(d) for d in item["shape"]], item["datatype"]
        params = item.get("parameters") or {}
        size = params.get("binary_data_size")
        if size is not None:
            raw = binary[offset : offset + int(size)]
            if len(raw) != int(size):
                raise ValueError(f"output {name!r}: binary section is shorter than its binary_data_size")
            offset += int(size)
            if datatype == "BYTES":
                array = _unpack_bytes(bytes(raw))
            else:
                dtype = np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")
                array = np.frombuffer(raw, dtype=dtype).astype(NUMPY_DTYPES[datatype])
        else:
            data = item.get("data", [])
            if datatype == "BYTES":
                array = np.array(
                    [v.encode() if isinstance(v, str) else v for v in np.ravel(data)], dtype=np.object_
                )
            else:
                array = np.asarray(data, dtype=NUMPY_DTYPES[datatype])
        outputs[name] = array.reshape(shape)
    return header, outputs


def _unpack_bytes(data: bytes) -> np.ndarray:
    items, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos)
        pos += 4
        items.append(data[pos : pos + length])
        pos += length
    return np.array(items, dtype=np.object_)
