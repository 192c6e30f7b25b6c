"""serverless.yml with the Serverless Framework (osls) and serverless-offline, without AWS credentials.

``osls package`` must produce the CloudFormation a deploy would send; serverless-offline must answer
``Client.predict`` exactly like ``onnxfn serve`` on the same models, binary bodies included.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from deploy_helpers import API_KEY, sha256_hex
from models import digit_jpeg, digit_png
from onnxfn.client import AuthenticationError, Client

pytestmark = pytest.mark.slow


def osls(service: Path, env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["npx", "--no-install", "osls", *args],
        cwd=service,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- osls package ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(offline_service):
    service, env = offline_service
    env = {k: v for k, v in env.items() if k != "ONNXFN_MODEL_DIR"}  # as in a real deploy
    result = osls(service, env, "package", "--stage", "prod")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = json.loads((service / ".serverless" / "serverless-state.json").read_text())
    cfn = json.loads((service / ".serverless" / "cloudformation-template-update-stack.json").read_text())
    return cfn, state


def test_package_has_the_function_for_python312_arm64(template):
    cfn, _ = template
    functions = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) == 1
    props = functions[0]["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "onnxfn.runtime.aws.handler"
    assert props["MemorySize"] == 1769
    assert props["Timeout"] < 30  # under the HTTP API's hard 30 s
    assert props["Code"]["S3Key"].endswith("/onnxfn-lambda.zip")
    assert props.get("Layers", []) == []  # a plain bundle: no layer (test_layer.py: --layer)
    assert not [r for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    variables = props["Environment"]["Variables"]
    assert int(variables["ONNXFN_REQUEST_TIMEOUT"]) < props["Timeout"]
    assert variables["ONNXFN_MODEL_DIR"] == ""  # $LAMBDA_TASK_ROOT/models, inside the bundle
    assert variables["ONNXFN_MAX_BODY_BYTES"] == str(6 * 1024 * 1024)


def test_package_has_the_http_api_routes(template):
    cfn, _ = template
    routes = {
        r["Properties"]["RouteKey"]
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert {"POST /predict", "ANY /v1/{proxy+}", "ANY /v2/{proxy+}", "GET /v2"} <= routes
    integrations = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Integration"]
    assert {i["Properties"]["PayloadFormatVersion"] for i in integrations} == {"2.0"}


def test_package_uses_the_bundle_as_artifact(template, offline_service):
    service, _ = offline_service
    _, state = template
    # Deploy uploads this file as is (the framework's own packager never runs).
    assert state["service"]["initialServerlessConfig"]["package"]["artifact"] == "dist/onnxfn-lambda.zip"
    assert state["package"]["artifact"] == "onnxfn-lambda.zip"
    assert (service / "dist" / "onnxfn-lambda.zip").is_file()


def test_package_keeps_logs_14_days_and_model_bucket_access_optional(template):
    cfn, _ = template
    groups = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert [g["Properties"]["RetentionInDays"] for g in groups] == [14]
    policy = cfn["Resources"]["ModelBucketReadPolicy"]
    assert policy["Condition"] == "ModelsFromS3"
    assert cfn["Conditions"]["ModelsFromS3"] == {"Fn::Not": [{"Fn::Equals": ["", ""]}]}  # off by default


def test_api_key_hashes_come_from_the_env_fallback_offline(template):
    cfn, _ = template
    function = next(r for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    assert function["Properties"]["Environment"]["Variables"]["ONNXFN_API_KEY_HASHES"] == sha256_hex(API_KEY)


def test_without_the_env_fallback_the_hashes_are_read_from_ssm(offline_service):
    """No ONNXFN_API_KEY_HASHES: osls goes to SSM for /onnxfn/<stage>/api-key-hashes, and with no credentials
    it stops before any network call, naming the problem."""
    service, env = offline_service
    env = {k: v for k, v in env.items() if k != "ONNXFN_API_KEY_HASHES"}
    result = osls(service, env, "print", "--stage", "prod", timeout=60)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "apiKeyHashes" in output and "credentials" in output
    text = (service / "serverless.yml").read_text()
    assert "ssm:/onnxfn/${sls:stage}/api-key-hashes" in text


# -- serverless-offline against onnxfn serve ---------------------------------------------------


@pytest.fixture(scope="module")
def clients(offline_url, serve_url):
    with Client(offline_url, api_key=API_KEY, timeout=60) as offline, Client(serve_url, timeout=60) as serve:
        yield offline, serve


def same(a, b):
    assert a.label == b.label and a.index == b.index
    assert [t.label for t in a.top_k] == [t.label for t in b.top_k]
    np.testing.assert_allclose([t.score for t in a.top_k], [t.score for t in b.top_k], rtol=1e-6, atol=1e-7)
    assert a.model == b.model and a.version == b.version


def test_png_as_octet_stream(clients, digits_data):
    offline, serve = clients
    x_test, y_test = digits_data[1], digits_data[3]
    for i in range(3):
        png = digit_png(x_test[i])
        ours = offline.predict(png)
        same(ours, serve.predict(png))
        assert ours.label == str(y_test[i])


def test_jpeg(clients, digits_data):
    offline, serve = clients
    jpeg = digit_jpeg(digits_data[1][5])
    ours = offline.predict(jpeg)
    same(ours, serve.predict(jpeg))
    assert ours.label == str(digits_data[3][5])


def test_batch(clients, digits_data):
    offline, serve = clients
    images = [digit_png(x) for x in digits_data[1][10:26]]
    ours, theirs = offline.predict_batch(images, batch_size=8), serve.predict_batch(images, batch_size=8)
    assert len(ours) == len(theirs) == 16
    for a, b in zip(ours, theirs, strict=True):
        same(a, b)
    accuracy = np.mean([p.label == str(y) for p, y in zip(ours, digits_data[3][10:26], strict=True)])
    assert accuracy >= 0.85


def test_text_instance(clients):
    offline, serve = clients
    for text, expected in [
        ("Storm and rain in the forecast", "weather"),
        ("The team scored a late goal", "sports"),
    ]:
        ours = offline.predict(text, model="topics")
        same(ours, serve.predict(text, model="topics"))
        assert ours.label == expected


def test_raw_png_bytes_survive_the_trip(offline_url, serve_url, digits_data):
    """Below the client: the exact bytes of a PNG sent as application/octet-stream give the same answer."""
    png = digit_png(digits_data[1][7])
    headers = {"content-type": "application/octet-stream", "x-api-key": API_KEY}
    ours = requests.post(f"{offline_url}/v1/models/digits:predict", data=png, headers=headers, timeout=60)
    theirs = requests.post(f"{serve_url}/v1/models/digits:predict", data=png, headers=headers, timeout=60)
    assert ours.status_code == theirs.status_code == 200
    assert ours.json() == theirs.json()


def test_api_keys_are_enforced_offline(offline_url, digits_data):
    with Client(offline_url, timeout=30, max_retries=0) as anonymous, pytest.raises(AuthenticationError):
        anonymous.predict(digit_png(digits_data[1][0]))
    assert requests.get(f"{offline_url}/v2/health/live", timeout=30).status_code == 200  # open route
