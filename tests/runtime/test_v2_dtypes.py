"""KServe V2 with every datatype: an ONNX model with one Identity per V2 datatype, JSON and binary, both ways."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from onnxfn.runtime import Settings, create_app

from onnxfn._wire import DATATYPES

DTYPES = DATATYPES  # the runtime's V2 datatype → numpy table


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper
    from onnxfn.runtime import ModelMetadata

    onnx_types = {
        "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
        "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
        "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
        "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
        "BYTES": TensorProto.STRING,
    }  # fmt: skip
    inputs, outputs, nodes = [], [], []
    for name, t in onnx_types.items():
        inputs.append(helper.make_tensor_value_info(f"in_{name}", t, ["batch", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", t, ["batch", 3]))
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
    graph = helper.make_graph(nodes, "identities", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ModelMetadata(task="tensor", version=2).write(model)
    path = tmp_path_factory.mktemp("dtypes") / "identity.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def client(identity_model):
    with TestClient(create_app(identity_model, settings=Settings(threads=1))) as c:
        yield c


def sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"a", "é".encode(), b""], [b"xyz", b"\x00\x01", b"long" * 10]], dtype=np.object_)
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    info = np.iinfo(DTYPES[datatype]) if np.dtype(DTYPES[datatype]).kind in "iu" else None
    if info is not None:
        return np.array([[info.min, 0, info.max], [1, 2, 3]], dtype=DTYPES[datatype])
    return np.array([[-1.5, 0.0, 65504.0], [1e-3, 2.5, -7.25]], dtype=DTYPES[datatype])


def json_request(arrays: dict[str, np.ndarray]) -> dict:
    inputs = []
    for name, arr in arrays.items():
        datatype = name.removeprefix("in_")
        if datatype == "BYTES":
            data = [v.decode() if isinstance(v, bytes) else v for v in arr.ravel()]
        else:
            data = arr.ravel().tolist()
        inputs.append({"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data})
    return {"inputs": inputs}


def test_metadata_lists_every_datatype(client):
    meta = client.get("/v2/models/identity/versions/2").json()
    assert {i["datatype"] for i in meta["inputs"]} == set(DTYPES)
    assert all(i["shape"] == [-1, 3] for i in meta["inputs"])


def test_json_round_trip_of_every_datatype(client):
    arrays = {f"in_{d}": sample(d) for d in DTYPES if d != "BYTES"}
    arrays["in_BYTES"] = np.array([["a", "é", ""], ["xyz", "q", "long"]], dtype=np.object_)
    r = client.post("/v2/models/identity/infer", json=json_request(arrays))
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    for d in DTYPES:
        out = outputs[f"out_{d}"]
        assert out["datatype"] == d and out["shape"] == [2, 3]
        expected = arrays[f"in_{d}"].ravel().tolist()
        assert out["data"] == expected, d


def _pack(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(len(v).to_bytes(4, "little") + v for v in arr.ravel())
    return arr.astype(np.dtype(arr.dtype).newbyteorder("<")).tobytes()


def _unpack(raw: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            n = int.from_bytes(raw[pos : pos + 4], "little")
            items.append(raw[pos + 4 : pos + 4 + n])
            pos += 4 + n
        return np.array(items, dtype=np.object_).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(DTYPES[datatype]).newbyteorder("<")).reshape(shape)


@pytest.mark.parametrize("datatype", list(DTYPES))
def test_binary_round_trip_and_requested_output(client, datatype):
    arrays = {f"in_{d}": sample(d) for d in DTYPES}
    blobs = [_pack(arr, name.removeprefix("in_")) for name, arr in arrays.items()]
    header = {
        "inputs": [
            {"name": name, "shape": list(arr.shape), "datatype": name.removeprefix("in_"),
             "parameters": {"binary_data_size": len(blob)}}
            for (name, arr), blob in zip(arrays.items(), blobs, strict=True)
        ],
        "outputs": [{"name": f"out_{datatype}", "parameters": {"binary_data": True}}],
    }  # fmt: skip
    head = json.dumps(header).encode()
    r = client.post(
        "/v2/models/identity/infer",
        content=head + b"".join(blobs),
        headers={
            "inference-header-content-length": str(len(head)),
            "content-type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:n])
    assert [o["name"] for o in meta["outputs"]] == [f"out_{datatype}"]  # only the requested output
    got = _unpack(r.content[n:], datatype, meta["outputs"][0]["shape"])
    assert got.tolist() == arrays[f"in_{datatype}"].tolist()


def test_integer_overflow_and_fractions_are_rejected(client):
    arrays = {f"in_{d}": sample(d) for d in DTYPES if d != "BYTES"}
    arrays["in_BYTES"] = np.array([["a"] * 3] * 2, dtype=np.object_)
    body = json_request(arrays)
    for item in body["inputs"]:
        if item["datatype"] == "UINT8":
            item["data"][0] = 300
    r = client.post("/v2/models/identity/infer", json=body)
    assert r.status_code == 400 and "in_UINT8" in r.json()["error"]
    body = json_request(arrays)
    for item in body["inputs"]:
        if item["datatype"] == "INT32":
            item["data"][0] = 1.5
    r = client.post("/v2/models/identity/infer", json=body)
    assert r.status_code == 400 and "fractions" in r.json()["error"]
