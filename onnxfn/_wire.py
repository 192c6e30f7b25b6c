"""KServe V2 (Open Inference Protocol) tensors on the wire: datatypes, JSON and the binary-data extension.

The one codec both sides use: the runtime decodes requests and encodes answers with it, the client
encodes requests and decodes answers with it. numpy only, so the client never depends on the runtime and
the Lambda bundle ships it beside ``onnxfn/runtime/``.

Binary extension: the body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by raw
tensors, in order, each entry saying its ``parameters.binary_data_size``; numbers are little-endian, BOOL
is one byte (0 or 1), BYTES elements are each prefixed by a 4-byte little-endian length.

Every malformed input raises :class:`WireError` (a ``ValueError``) with a message that says what is wrong:
the runtime turns it into a 400, the client into ``InvalidResponseError``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = [
    "DATATYPES",
    "HEADER",
    "ONNX_DATATYPES",
    "WireError",
    "datatype_of",
    "decode_tensor",
    "encode_tensor",
    "join_body",
    "numpy_dtype",
    "onnx_numpy_dtype",
    "pack_bytes",
    "split_body",
    "unpack_bytes",
]

HEADER = "inference-header-content-length"

#: KServe V2 datatype -> numpy dtype (BYTES are Python objects: ``str`` or ``bytes``).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

#: onnxruntime type string -> KServe V2 datatype.
ONNX_DATATYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_BY_DTYPE = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}


class WireError(ValueError):
    """A body that is not valid V2: the message says what is wrong."""


def numpy_dtype(datatype: str) -> np.dtype:
    """numpy dtype of a V2 datatype name."""
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise WireError(f"unknown datatype {datatype!r}; one of {', '.join(DATATYPES)}") from None


def onnx_numpy_dtype(onnx_type: str) -> Any:
    """numpy scalar type of an onnxruntime type string such as ``tensor(float)``."""
    try:
        return DATATYPES[ONNX_DATATYPES[onnx_type]].type
    except KeyError:
        raise ValueError(f"unsupported ONNX tensor type {onnx_type}") from None


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype that carries ``array`` (text and bytes are BYTES)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    try:
        return _BY_DTYPE[array.dtype]
    except KeyError:
        raise TypeError(f"no KServe V2 datatype for numpy dtype {array.dtype}") from None


# -- bodies ------------------------------------------------------------------------------------------
def split_body(body: bytes, header_length: str | int | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header (a dict) and the binary section of a body."""
    if header_length is not None:
        try:
            n = int(header_length)
        except (TypeError, ValueError):
            raise WireError(f"Inference-Header-Content-Length {header_length!r} is not a number") from None
        if not 0 < n <= len(body):
            raise WireError(f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
        head, binary = body[:n], memoryview(body)[n:]
    else:
        head, binary = body, memoryview(b"")
    try:
        header = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"the JSON header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("the JSON header must be an object")
    return header, binary


def join_body(header: dict[str, Any], chunks: Iterable[bytes]) -> tuple[bytes, int | None]:
    """Body and header length: JSON alone (length None) when no tensor travels in binary."""
    head = json.dumps(header, separators=(",", ":")).encode()
    chunks = list(chunks)
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)


# -- BYTES -------------------------------------------------------------------------------------------
def pack_bytes(array: np.ndarray) -> bytes:
    """BYTES elements, each with its 4-byte little-endian length; text is UTF-8."""
    parts = []
    for value in array.reshape(-1):
        data = bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def unpack_bytes(raw: bytes | memoryview, *, name: str = "tensor", text: bool = False) -> list[Any]:
    """The elements of a BYTES section, bounds-checked; ``text`` decodes each as UTF-8."""
    data, pos = bytes(raw), 0
    items: list[Any] = []
    while pos < len(data):
        if pos + 4 > len(data):
            raise WireError(f"{name}: truncated BYTES element length at byte {pos}")
        (length,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + length > len(data):
            raise WireError(f"{name}: BYTES element of {length} bytes overruns the binary section")
        element = data[pos : pos + length]
        if text:
            try:
                items.append(element.decode("utf-8"))
            except UnicodeDecodeError:
                raise WireError(f"{name}: BYTES element is not UTF-8 text") from None
        else:
            items.append(element)
        pos += length
    return items


# -- tensors -----------------------------------------------------------------------------------------
def encode_tensor(
    name: str, array: np.ndarray, datatype: str, *, binary: bool
) -> tuple[dict[str, Any], bytes]:
    """One V2 tensor entry, and its raw bytes when ``binary`` (else ``b""`` and the data is inline)."""
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [int(d) for d in array.shape]}
    if binary:
        if datatype == "BYTES":
            raw = pack_bytes(array)
        else:
            dtype = DATATYPES[datatype]
            raw = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
        entry["parameters"] = {"binary_data_size": len(raw)}
        return entry, raw
    if datatype == "BYTES":
        entry["data"] = [
            bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)
            for v in array.reshape(-1)
        ]
    else:
        entry["data"] = array.reshape(-1).tolist()
    return entry, b""


def decode_tensor(
    entry: Any,
    binary: memoryview,
    *,
    text: bool = False,
    convert: Callable[[Any, str, np.dtype], np.ndarray] | None = None,
) -> tuple[str, np.ndarray, int]:
    """Name, array and the number of binary bytes used, of one V2 tensor entry.

    ``binary`` starts where this entry's bytes start. ``convert(data, name, dtype)`` turns inline JSON data
    into an array (the runtime passes its range-checking converter; the default is ``np.asarray``).
    BYTES elements are ``str`` with ``text`` (what onnxruntime wants), else ``bytes``.
    """
    if not isinstance(entry, dict):
        raise WireError("each tensor must be an object with name, shape, datatype and data")
    name, shape, datatype = entry.get("name"), entry.get("shape"), entry.get("datatype")
    if not isinstance(name, str):
        raise WireError("a tensor has no 'name'")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise WireError(f"{name!r}: 'shape' must be a list of non-negative integers")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise WireError(f"{name!r}: unknown datatype {datatype!r}; one of {', '.join(DATATYPES)}")
    dtype = DATATYPES[datatype]
    count = math.prod(shape)
    params = entry.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    used = 0
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > len(binary):
            raise WireError(f"{name!r}: binary_data_size {size!r} exceeds the binary section")
        raw, used = binary[:size], size
        if datatype == "BYTES":
            items = unpack_bytes(raw, name=repr(name), text=text)
            array = np.empty(len(items), dtype=np.object_)
            array[:] = items
        else:
            if size != count * dtype.itemsize:
                raise WireError(
                    f"{name!r}: {size} bytes do not hold shape {shape} of {datatype} ({count * dtype.itemsize} bytes)"
                )
            if datatype == "BOOL":
                values = np.frombuffer(raw, dtype=np.uint8)
                if not np.isin(values, (0, 1)).all():
                    raise WireError(f"{name!r}: BOOL bytes must be 0 or 1")
                array = values.astype(np.bool_)
            else:
                array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
    else:
        if "data" not in entry:
            raise WireError(f"{name!r} has neither 'data' nor parameters.binary_data_size")
        data = entry["data"]
        if datatype == "BYTES":
            flat = np.ravel(np.asarray(data, dtype=object)) if isinstance(data, list) else None
            if flat is None or not all(isinstance(v, str) for v in flat):
                raise WireError(f"{name!r} is BYTES: send a list of strings")
            array = np.empty(len(flat), dtype=np.object_)
            array[:] = [v if text else v.encode("utf-8") for v in flat]
        elif convert is not None:
            array = convert(data, name, dtype).reshape(-1)
        else:
            try:
                array = np.asarray(data, dtype=dtype).reshape(-1)
            except (TypeError, ValueError, OverflowError) as exc:
                raise WireError(f"{name!r}: data is not {datatype} ({exc})") from None
    if array.size != count:
        raise WireError(f"{name!r}: {array.size} values do not fill shape {shape} ({count} values)")
    return name, array.reshape(shape), used
