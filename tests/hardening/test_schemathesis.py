"""Property-based API testing: schemathesis generates requests from the app's own /openapi.json.

Every operation, in process and against a real `onnxfn serve`, with and without a valid key:
no server errors, and every response (status, content type, body) matches the schema.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from models import digits_logreg
from onnxfn.runtime import Settings, create_app, write_manifest
from onnxfn.runtime._auth import hash_key
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from servers import onnxfn_serve

KEY = "schemathesis-key"
pytestmark = pytest.mark.slow

# schemathesis reads the schema at collection time, so the model is built here (≈0.5 s, real digits).
MODEL_DIR = Path(tempfile.mkdtemp(prefix="onnxfn-schemathesis-"))
digits_logreg(MODEL_DIR / "digits.onnx")
write_manifest(MODEL_DIR)
APP = create_app(MODEL_DIR, settings=Settings(api_key_hashes=(hash_key(KEY),), max_batch=8, threads=1))
in_process = schemathesis.openapi.from_asgi("/openapi.json", APP)
live = schemathesis.openapi.from_dict(APP.openapi())
FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
OPEN = ("/v2/health/live", "/v2/health/ready")
# Every check but positive_data_acceptance: a schema cannot say "a decodable PNG" or "the model's tensor
# shape", so a schema-valid body may rightly get a 400. No 5xx, documented statuses, content types, headers
# and bodies, negative data rejected, auth enforced.
CHECKS = {
    "checks": [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
        ignored_auth,
    ]
}


@pytest.fixture(scope="module")
def server_url():
    env = {"ONNXFN_API_KEY_HASHES": hash_key(KEY), "ONNXFN_LOG_LEVEL": "WARNING"}
    with onnxfn_serve(MODEL_DIR, env=env) as (url, _):
        yield url


@in_process.parametrize()
@FAST
def test_in_process_with_key(case):
    case.call_and_validate(headers={"x-api-key": KEY}, **CHECKS)


@in_process.parametrize()
@FAST
def test_in_process_without_key(case):
    response = case.call_and_validate(**CHECKS)
    if case.path not in OPEN:
        assert response.status_code == 401


@live.parametrize()
@FAST
def test_live_server_with_key(case, server_url):
    case.call_and_validate(base_url=server_url, headers={"x-api-key": KEY}, **CHECKS)


@live.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_live_server_with_wrong_key(case, server_url):
    response = case.call_and_validate(base_url=server_url, headers={"x-api-key": "wrong"}, **CHECKS)
    if case.path not in OPEN:
        assert response.status_code == 401
