"""The HTTP API in process (Starlette's TestClient drives the real ASGI app, middleware included)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from models import digit_png
from onnxfn.runtime import Settings, create_app
from onnxfn.runtime._auth import hash_key


@pytest.fixture(scope="module")
def client(digits_dir):
    app = create_app(digits_dir, settings=Settings(max_batch=8, max_body_bytes=200_000, threads=1))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def png(digits_data):
    return digit_png(digits_data[1][0])


def test_health_server_and_model_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "onnxfn"
    meta = client.get("/v2/models/digits").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get("/v2/models/digits/versions/1").status_code == 200
    assert client.get("/v2/models/digits/ready").json() == {"name": "digits", "ready": True}
    assert client.get("/v1/models").json()["default"] == "digits"


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream", None])
def test_predict_raw_image(client, png, digits_data, content_type):
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/predict", content=png, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "digits" and body["version"] == "1"
    assert body["predictions"][0][0]["label"] == str(digits_data[3][0])
    assert len(body["predictions"][0]) == 5
    timing = r.headers["server-timing"]
    assert "decode;dur=" in timing and "inference;dur=" in timing and "preprocess;dur=" in timing


def test_predict_multipart_many_files(client, digits_data):
    _, x_test, _, _ = digits_data
    files = [("file", (f"{i}.png", digit_png(x_test[i]), "image/png")) for i in range(4)]
    r = client.post("/v1/models/digits:predict?top_k=2", files=files)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 4 and all(len(p) == 2 for p in predictions)


def test_predict_json_base64_and_numeric(client, digits_data):
    _, x_test, _, y_test = digits_data
    b64 = [base64.b64encode(digit_png(x)).decode() for x in x_test[:3]]
    r = client.post("/predict", json={"instances": b64, "top_k": 1})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    # Already-preprocessed tensors, one per instance.
    r = client.post("/predict", json={"instances": (x_test[:2, :, :, None]).tolist()})
    assert r.status_code == 200, r.text
    assert [p[0]["label"] for p in r.json()["predictions"]] == [str(y) for y in y_test[:2]]


def test_v2_infer_json_and_binary(client, digits_data):
    x = digits_data[1][:3, :, :, None].astype(np.float32)
    r = client.post(
        "/v2/models/digits/infer",
        json={
            "id": "42",
            "inputs": [
                {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
            ],
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "42" and out["model_name"] == "digits" and out["outputs"][0]["shape"] == [3, 10]
    json_probs = np.array(out["outputs"][0]["data"], dtype=np.float32).reshape(3, 10)

    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [3, 8, 8, 1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    r = client.post(
        "/v2/models/digits/infer",
        content=header + x.astype("<f4").tobytes(),
        headers={
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:n])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 3 * 10 * 4
    probs = np.frombuffer(r.content[n:], dtype="<f4").reshape(3, 10)
    assert np.allclose(probs, json_probs, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"content": b"GIF89a broken", "headers": {"content-type": "image/gif"}}, 400, "cannot decode GIF"),
        ({"content": b"hello", "headers": {"content-type": "image/png"}}, 400, "not an image"),
        ({"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty"),
        ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"json": {"instances": "x"}}, 400, "must be a list"),
        ({"json": {"foo": 1}}, 400, '"instances"'),
        ({"json": {"instances": ["%%%"]}}, 400, "not valid base64"),
        ({"json": {"instances": [[[1.0]]]}}, 400, "shape"),
        ({"json": {"instances": []}}, 400, "no instances"),
        ({"json": {"instances": ["aGk="] * 9}}, 413, "ONNXFN_MAX_BATCH"),
        ({"content": b"x" * 300_000, "headers": {"content-type": "image/png"}}, 413, "ONNXFN_MAX_BODY_BYTES"),
        ({"content": b"a=b", "headers": {"content-type": "text/plain"}}, 415, "unsupported Content-Type"),
        ({"content": b"plain words"}, 415, "cannot tell"),
    ],
)
def test_bad_predict_input_is_a_clear_4xx(client, kwargs, status, fragment):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    assert r.headers["content-type"] == "application/json"


def test_nan_and_wrong_shapes_in_v2(client):
    def infer(inp):
        body = json.dumps({"inputs": [inp]})  # json.dumps writes NaN as the bare token NaN
        return client.post(
            "/v2/models/digits/infer", content=body, headers={"content-type": "application/json"}
        )

    base = {"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32"}
    r = infer({**base, "data": [float("nan")] + [0.0] * 63})
    assert r.status_code == 400 and "NaN" in r.json()["error"]
    r = infer({**base, "shape": [1, 8, 8], "data": [0.0] * 64})
    assert r.status_code == 400 and "expected [-1, 8, 8, 1]" in r.json()["error"]
    r = infer({**base, "datatype": "INT64", "data": [0] * 64})
    assert r.status_code == 400 and "FP32 in the model" in r.json()["error"]
    r = infer({**base, "data": [0.0] * 10})
    assert r.status_code == 400 and "do not fill" in r.json()["error"]
    r = infer({**base, "name": "nope", "data": [0.0] * 64})
    assert r.status_code == 400 and "no input 'nope'" in r.json()["error"]


def test_unknown_things_are_404_and_405(client):
    r = client.post("/v1/models/cats:predict", content=b"x")
    assert r.status_code == 404 and "available models: digits" in r.json()["error"]
    assert client.get("/v2/models/digits/versions/7").status_code == 404
    assert client.get("/nowhere").status_code == 404
    r = client.get("/predict")
    assert r.status_code == 405 and "error" in r.json() and r.headers["allow"] == "POST"
    assert client.delete("/v2/health/live").headers["allow"] == "GET, HEAD"


def test_head_is_a_get_without_the_body(client):
    get, head = client.get("/v2/models/digits"), client.head("/v2/models/digits")
    assert head.status_code == get.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert client.head("/v2/health/live").status_code == 200


def test_request_and_idempotency_ids_are_echoed(client, png):
    r = client.post(
        "/predict", content=png, headers={"content-type": "image/png", "idempotency-key": "abc-123"}
    )
    assert r.headers["idempotency-key"] == "abc-123"
    assert len(r.headers["x-request-id"]) >= 16
    r = client.post("/predict", content=png, headers={"content-type": "image/png", "x-request-id": "req-1"})
    assert r.headers["x-request-id"] == "req-1"


def test_auth(digits_dir, png):
    app = create_app(digits_dir, settings=Settings(api_key_hashes=(hash_key("k1"), hash_key("k2"))))
    with TestClient(app) as c:
        assert c.get("/v2/health/ready").status_code == 200
        assert c.get("/openapi.json").status_code == 200
        r = c.post("/predict", content=png, headers={"content-type": "image/png"})
        assert r.status_code == 401 and "missing API key" in r.json()["error"]
        r = c.post("/predict", content=png, headers={"content-type": "image/png", "x-api-key": "k3"})
        assert r.status_code == 401 and "invalid API key" in r.json()["error"]
        assert (
            c.post(
                "/predict", content=png, headers={"content-type": "image/png", "x-api-key": "k2"}
            ).status_code
            == 200
        )
        assert c.get("/v2/models/digits", headers={"authorization": "Bearer k1"}).status_code == 200
        assert c.get("/v2", headers={"authorization": "Basic k1"}).status_code == 401


def test_inference_beyond_the_request_timeout_is_a_503(digits_dir, png):
    app = create_app(digits_dir, settings=Settings(request_timeout=1e-9, threads=1))
    with TestClient(app) as c:
        r = c.post("/predict", content=png, headers={"content-type": "image/png"})
    assert r.status_code == 503 and "ONNXFN_REQUEST_TIMEOUT" in r.json()["error"]
    assert r.headers["retry-after"] == "1"
