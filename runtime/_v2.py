"""KServe V2 / Open Inference Protocol tensors: JSON and the binary-data extension, both ways.

Binary extension: the body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw
tensor bytes, in input order, each input saying its ``parameters.binary_data_size``. BYTES tensors are
length-prefixed (4-byte little-endian) elements.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import BadRequest, PayloadTooLarge
from ._model import Model
from .preprocess import check_shape, to_array

DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
HEADER = "inference-header-content-length"


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None
    binary: dict[str, bool]  # output name -> send as binary
    binary_default: bool


def parse_request(body: bytes, header_length: str | None, model: Model, max_batch: int) -> InferRequest:
    """Decode and validate a V2 infer request against ``model``; BadRequest says what is wrong."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise BadRequest(f"Inference-Header-Content-Length {header_length!r} is not a number") from None
        if not 0 < n <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
        header_bytes, binary = body[:n], memoryview(body)[n:]
    else:
        header_bytes, binary = body, memoryview(b"")
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"infer request is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list) or not header["inputs"]:
        raise BadRequest('infer request needs {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    offset = 0
    inputs: dict[str, np.ndarray] = {}
    for item in header["inputs"]:
        if not isinstance(item, dict):
            raise BadRequest("each input must be an object with name, shape, datatype and data")
        array, used = _decode_input(item, binary[offset:], model)
        offset += used
        name = item["name"]
        if name in inputs:
            raise BadRequest(f"input {name!r} is given twice")
        inputs[name] = array
        if array.ndim and array.shape[0] > max_batch:
            raise PayloadTooLarge(
                f"batch of {array.shape[0]} in input {name!r} is above the limit of {max_batch} (ONNXFN_MAX_BATCH)"
            )
    if offset != len(binary):
        raise BadRequest(
            f"binary section has {len(binary) - offset} bytes no input claims (binary_data_size)"
        )
    params = header.get("parameters") or {}
    binary_default = bool(params.get("binary_data_output", False)) if isinstance(params, dict) else False
    outputs = None
    wanted: dict[str, bool] = {}
    if header.get("outputs") is not None:
        if not isinstance(header["outputs"], list):
            raise BadRequest("'outputs' must be a list of {\"name\": ...}")
        outputs = []
        for out in header["outputs"]:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise BadRequest("each requested output needs a 'name'")
            outputs.append(out["name"])
            p = out.get("parameters") or {}
            wanted[out["name"]] = (
                bool(p.get("binary_data", binary_default)) if isinstance(p, dict) else binary_default
            )
    request_id = header.get("id")
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        inputs=inputs,
        outputs=outputs,
        binary=wanted,
        binary_default=binary_default,
    )


def _decode_input(item: dict, binary: memoryview, model: Model) -> tuple[np.ndarray, int]:
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    if not isinstance(name, str):
        raise BadRequest("an input has no 'name'")
    spec = model.input_names.get(name)
    if spec is None:
        raise BadRequest(f"model {model.name!r} has no input {name!r}; inputs: {sorted(model.input_names)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if datatype not in DATATYPES:
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}; one of {', '.join(DATATYPES)}")
    if datatype != spec.datatype:
        raise BadRequest(f"input {name!r} is {spec.datatype} in the model, got {datatype}")
    dtype = DATATYPES[datatype]
    count = math.prod(shape)
    params = item.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    used = 0
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise BadRequest(f"input {name!r}: binary_data_size {size!r} exceeds the binary section")
        raw = binary[:size]
        used = size
        if datatype == "BYTES":
            array = _unpack_bytes(raw, count, name)
        else:
            itemsize = np.dtype(dtype).itemsize
            if size != count * itemsize:
                raise BadRequest(
                    f"input {name!r}: {size} bytes do not hold shape {shape} of {datatype} ({count * itemsize} bytes)"
                )
            if datatype == "BOOL":
                bytes_ = np.frombuffer(raw, dtype=np.uint8)
                if not np.isin(bytes_, (0, 1)).all():
                    raise BadRequest(f"input {name!r}: BOOL bytes must be 0 or 1")
                array = bytes_.astype(np.bool_)
            else:
                array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype, copy=False)
    else:
        if "data" not in item:
            raise BadRequest(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
        array = to_array(item["data"], name=name, dtype=dtype).reshape(-1)
    if array.size != count:
        raise BadRequest(f"input {name!r}: {array.size} values do not fill shape {shape} ({count} values)")
    array = array.reshape(shape)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise BadRequest(f"input {name!r} contains NaN or infinity: send finite numbers")
    check_shape(array.shape, spec.shape, name=name)
    return array, used


def _unpack_bytes(raw: memoryview, count: int, name: str) -> np.ndarray:
    items, pos, data = [], 0, bytes(raw)
    while pos < len(data):
        if pos + 4 > len(data):
            raise BadRequest(f"input {name!r}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + length > len(data):
            raise BadRequest(f"input {name!r}: BYTES element overruns the binary section")
        try:
            items.append(data[pos : pos + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(
                f"input {name!r}: BYTES element is not UTF-8 (onnxruntime strings are text)"
            ) from None
        pos += length
    if len(items) != count:
        raise BadRequest(f"input {name!r}: {len(items)} BYTES elements for a shape of {count}")
    return np.array(items, dtype=np.object_)


def _pack_bytes(array: np.ndarray) -> bytes:
    parts = []
    for v in array.reshape(-1):
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(b)) + b)
    return b"".join(parts)


def encode_response(
    model: Model, results: dict[str, np.ndarray], request: InferRequest
) -> tuple[bytes, dict[str, str]]:
    """Body and extra headers of an infer response (JSON, or JSON header + binary tensors)."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in results.items():
        spec = model.output_names[name]
        entry: dict[str, Any] = {"name": name, "datatype": spec.datatype, "shape": list(array.shape)}
        if request.binary.get(name, request.binary_default):
            raw = (
                _pack_bytes(array)
                if spec.datatype == "BYTES"
                else np.ascontiguousarray(array)
                .astype(np.dtype(array.dtype).newbyteorder("<"), copy=False)
                .tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif spec.datatype == "BYTES":
            entry["data"] = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)
            ]
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    header: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request.id is not None:
        header["id"] = request.id
    head = json.dumps(header, separators=(",", ":")).encode()
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }
