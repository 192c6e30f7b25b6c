"""KServe V2 infer requests and answers, checked against a model (the codec itself is ``onnxfn._wire``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxfn._wire import DATATYPES as _KNOWN
from onnxfn._wire import WireError, decode_tensor, encode_tensor, join_body, split_body

from ._errors import BadRequest, PayloadTooLarge
from ._model import Model
from ._tensors import check_shape, to_array


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None
    binary: dict[str, bool]  # output name -> send as binary
    binary_default: bool


def parse_request(body: bytes, header_length: str | None, model: Model, max_batch: int) -> InferRequest:
    """Decode and validate a V2 infer request against ``model``; BadRequest says what is wrong."""
    try:
        header, binary = split_body(body, header_length)
    except WireError as exc:
        raise BadRequest(f"infer request: {exc}") from None
    if not isinstance(header.get("inputs"), list) or not header["inputs"]:
        raise BadRequest('infer request needs {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    offset = 0
    inputs: dict[str, np.ndarray] = {}
    for item in header["inputs"]:
        _check_input_entry(item, model)
        try:
            name, array, used = decode_tensor(item, binary[offset:], text=True, convert=_convert)
        except WireError as exc:
            raise BadRequest(f"input {exc}") from None
        offset += used
        if name in inputs:
            raise BadRequest(f"input {name!r} is given twice")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise BadRequest(f"input {name!r} contains NaN or infinity: send finite numbers")
        check_shape(array.shape, model.input_names[name].shape, name=name)
        if array.ndim and array.shape[0] > max_batch:
            raise PayloadTooLarge(
                f"batch of {array.shape[0]} in input {name!r} is above the limit of {max_batch} (ONNXFN_MAX_BATCH)"
            )
        inputs[name] = array
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


def _check_input_entry(item: Any, model: Model) -> None:
    """The model-side checks that come before decoding: a known input of the model's datatype."""
    if not isinstance(item, dict):
        raise BadRequest("each input must be an object with name, shape, datatype and data")
    name, datatype = item.get("name"), item.get("datatype")
    if not isinstance(name, str):
        raise BadRequest("an input has no 'name'")
    spec = model.input_names.get(name)
    if spec is None:
        raise BadRequest(f"model {model.name!r} has no input {name!r}; inputs: {sorted(model.input_names)}")
    if isinstance(datatype, str) and datatype in _KNOWN and datatype != spec.datatype:
        raise BadRequest(f"input {name!r} is {spec.datatype} in the model, got {datatype}")


def _convert(data: Any, name: str, dtype: np.dtype) -> np.ndarray:
    return to_array(data, name=name, dtype=dtype)


def encode_response(
    model: Model, results: dict[str, np.ndarray], request: InferRequest
) -> tuple[bytes, dict[str, str]]:
    """Body and extra headers of an infer response (JSON, or JSON header + binary tensors)."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in results.items():
        binary = request.binary.get(name, request.binary_default)
        entry, raw = encode_tensor(name, array, model.output_names[name].datatype, binary=binary)
        outputs.append(entry)
        if binary:
            chunks.append(raw)
    header: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request.id is not None:
        header["id"] = request.id
    body, length = join_body(header, chunks)
    if length is None:
        return body, {"content-type": "application/json"}
    return body, {"content-type": "application/octet-stream", "inference-header-content-length": str(length)}
