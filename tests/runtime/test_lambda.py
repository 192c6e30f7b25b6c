"""The real Lambda handler (``onnxfn.runtime.aws.handler``) on AWS-shaped events with a context object."""

from __future__ import annotations

import base64
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from events import KINDS, LambdaContext, event, response_body, response_headers, response_json
from models import digit_png

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def handler(digits_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("ONNXFN_MODEL_DIR", str(digits_dir))
    mp.delenv("ONNXFN_API_KEY_HASHES", raising=False)
    module = importlib.import_module("onnxfn.runtime.aws")
    if module.settings.model_dir != str(digits_dir):  # imported earlier with another model dir
        module = importlib.reload(module)
    yield module.handler
    mp.undo()


@pytest.mark.parametrize("kind", KINDS)
def test_png_body_gets_right_labels(handler, digits_data, kind):
    _, x_test, _, y_test = digits_data
    correct = 0
    for image, label in zip(x_test[:40], y_test[:40], strict=True):
        response = handler(event(kind, body=digit_png(image)), LambdaContext())
        assert response["statusCode"] == 200, response_body(response)
        body = response_json(response)
        assert body["model"] == "digits"
        top = body["predictions"][0]
        assert [p["score"] for p in top] == sorted((p["score"] for p in top), reverse=True)
        correct += top[0]["label"] == str(label)
    assert correct >= 34  # the logistic regression is ~95% accurate on held-out digits


@pytest.mark.parametrize("kind", KINDS)
def test_json_base64_batch_and_top_k(handler, digits_data, kind):
    _, x_test, _, _ = digits_data
    instances = [base64.b64encode(digit_png(img)).decode() for img in x_test[:5]]
    payload = json.dumps({"instances": instances, "top_k": 3})
    response = handler(
        event(
            kind,
            path="/v1/models/digits:predict",
            body=payload,
            headers={"content-type": "application/json"},
            binary=False,
        ),
        LambdaContext(),
    )
    assert response["statusCode"] == 200, response_body(response)
    predictions = response_json(response)["predictions"]
    assert len(predictions) == 5 and all(len(p) == 3 for p in predictions)
    headers = response_headers(response)
    assert "server-timing" in headers and "x-request-id" in headers


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_is_a_json_4xx(handler, kind):
    response = handler(event(kind, body=b"\x89PNG\r\n\x1a\nnot really"), LambdaContext())
    assert response["statusCode"] == 400
    assert "cannot decode PNG" in response_json(response)["error"]
    response = handler(event(kind, path="/v1/models/nope:predict", body=b"x"), LambdaContext())
    assert response["statusCode"] == 404
    assert "available models: digits" in response_json(response)["error"]


@pytest.mark.parametrize("kind", KINDS)
def test_health_and_metadata(handler, kind):
    response = handler(event(kind, method="GET", path="/v2/health/ready", body=None), LambdaContext())
    assert response["statusCode"] == 200 and response_json(response) == {"ready": True}
    response = handler(event(kind, method="GET", path="/v2/models/digits", body=None), LambdaContext())
    meta = response_json(response)
    assert meta["inputs"][0]["shape"] == [-1, 8, 8, 1] and meta["parameters"]["labels"][3] == "3"


def test_v2_binary_infer_round_trips_through_base64(handler, digits_data):
    """KServe binary extension inside a base64 Lambda body, answered with binary output."""
    import numpy as np

    _, x_test, _, _ = digits_data
    x = (x_test[:4, :, :, None]).astype("<f4")
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = handler(
        event(
            "http_api_v2",
            path="/v2/models/digits/infer",
            body=header + x.tobytes(),
            headers={
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(len(header)),
            },
        ),
        LambdaContext(),
    )
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True  # binary output must be base64 for API Gateway
    raw = response_body(response)
    n = int(response_headers(response)["inference-header-content-length"])
    meta = json.loads(raw[:n])
    probs = np.frombuffer(raw[n:], dtype="<f4").reshape(meta["outputs"][0]["shape"])
    assert probs.shape == (4, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_api_keys_on_lambda(digits_dir):
    """A fresh interpreter with keys configured: no key → 401, right key → 200, health stays open."""
    from onnxfn.runtime._auth import hash_key

    script = f"""
import json, sys
sys.path.insert(0, {str(TESTS)!r})
from events import event, LambdaContext, response_json
from onnxfn.runtime.aws import handler
out = {{}}
out["none"] = handler(event("http_api_v2", body=b"x"), LambdaContext())["statusCode"]
out["wrong"] = handler(event("http_api_v2", body=b"x", headers={{"x-api-key": "nope"}}), LambdaContext())["statusCode"]
out["health"] = handler(event("http_api_v2", method="GET", path="/v2/health/live"), LambdaContext())["statusCode"]
r = handler(event("apigw_rest_v1", method="GET", path="/v2/models/digits", headers={{"Authorization": "Bearer s3cret"}}), LambdaContext())
out["bearer"] = r["statusCode"]
out["tf"] = "tensorflow" in sys.modules
print(json.dumps(out))
"""
    env = {
        "ONNXFN_MODEL_DIR": str(digits_dir),
        "ONNXFN_API_KEY_HASHES": hash_key("s3cret"),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"none": 401, "wrong": 401, "health": 200, "bearer": 200, "tf": False}
    assert "s3cret" not in result.stderr  # keys never reach the logs


def test_models_are_warmed_during_init(handler):
    """aws.py runs each model once at import, so the first request pays no lazy initialisation."""
    import onnxfn.runtime.aws as aws

    model = aws.app.state.repository.get("digits")
    model.warmup()  # idempotent, and safe to call again
    from PIL import Image

    assert Image._initialized >= 1  # Pillow's decoders were loaded at init, not on the first request
