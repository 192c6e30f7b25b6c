"""KServe V2 infer requests and answers for the client, over the shared codec ``onnxfn._wire``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from onnxfn._wire import HEADER, WireError, datatype_of, decode_tensor, encode_tensor, join_body, split_body

__all__ = ["HEADER", "decode_infer_response", "encode_infer_request"]


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
        datatype = datatype_of(array)
        if not binary and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"input {name!r} contains NaN or infinity: send finite numbers")
        entry, raw = encode_tensor(name, array, datatype, binary=binary)
        entries.append(entry)
        if binary:
            chunks.append(raw)
    header: dict[str, Any] = {}
    if request_id:
        header["id"] = request_id
    header["inputs"] = entries
    if outputs is not None:
        header["outputs"] = [{"name": o, "parameters": {"binary_data": binary}} for o in outputs]
    elif binary:
        header["parameters"] = {"binary_data_output": True}
    body, length = join_body(header, chunks)
    return body, length if binary else None


def decode_infer_response(
    body: bytes, header_length: int | str | None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and the output tensors (by name) of a V2 infer answer, JSON or binary.

    Raises ``ValueError`` (``onnxfn._wire.WireError``) on a malformed or truncated answer.
    """
    header, binary = split_body(body, header_length)
    if not isinstance(header.get("outputs"), list):
        raise WireError("infer answer has no 'outputs' list")
    offset = 0
    outputs: dict[str, np.ndarray] = {}
    for item in header["outputs"]:
        name, array, used = decode_tensor(item, binary[offset:])
        offset += used
        outputs[name] = array
    return header, outputs
