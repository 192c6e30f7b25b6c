"""SigV4: signatures equal botocore's own signer, and every attempt is signed anew."""

from __future__ import annotations

import datetime as dt
import hashlib

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from onnxfn.client import Client, RetryPolicy, SigV4Auth
from onnxfn.client._auth import service_region_from_url

from .helpers import OK_PREDICTION, call

CREDS = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-123")
WHEN = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)


class _Headers(dict):
    """A case-insensitive-enough header dict for sign() (what requests' CaseInsensitiveDict offers)."""


def _botocore_authorization(method, url, headers, body, service, region, when, token=CREDS[2]):
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    signer = botocore.auth.SigV4Auth(Credentials(CREDS[0], CREDS[1], token), service, region)
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: when.replace(tzinfo=None)
    try:
        signer.add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    return request.headers["Authorization"], request.headers["X-Amz-Date"]


CASES = [
    (
        "POST",
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/v1/models/digits:predict?top_k=5",
        b"\x89PNG...",
    ),
    ("POST", "https://xyz789.lambda-url.us-east-1.on.aws/predict", b'{"instances":["aGk="],"top_k":3}'),
    ("GET", "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/v2/models/digits", b""),
    ("GET", "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/./v1//models/../v1/models?b=2&a=1", b""),
    ("POST", "https://api.example.com:8443/prod/v2/models/my%20model/infer", b"\x00\x01"),
]


@pytest.mark.parametrize(("method", "url", "body"), CASES)
def test_signature_equals_botocore(method, url, body):
    service, region = service_region_from_url(url)
    auth = SigV4Auth(credentials=CREDS, region=None if region else "ap-south-1", service=None)
    auth._now = lambda: WHEN
    headers = _Headers(
        {"content-type": "application/octet-stream", "idempotency-key": "k1", "x-api-key": "abc"}
    )
    headers["user-agent"] = "onnxfn-client/0.1"  # never signed (botocore does not sign it either)
    auth.sign(method, url, headers, body)
    signed = {k: v for k, v in headers.items() if k not in ("Authorization", "user-agent", "x-amz-date")}
    signed.pop("x-amz-security-token")
    theirs, their_date = _botocore_authorization(
        method, url, signed, body, service or "execute-api", region or "ap-south-1", WHEN
    )
    assert headers["x-amz-date"] == their_date == "20260304T050607Z"
    assert headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert headers["x-amz-security-token"] == CREDS[2]
    assert headers["Authorization"] == theirs
    assert "user-agent" not in theirs.split("SignedHeaders=")[1].split(",")[0]


def test_service_and_region_from_url():
    assert service_region_from_url("https://a1.execute-api.eu-west-1.amazonaws.com/prod") == (
        "execute-api",
        "eu-west-1",
    )
    assert service_region_from_url("https://q.lambda-url.us-east-2.on.aws/") == ("lambda", "us-east-2")
    assert service_region_from_url("https://api.example.com/") == (None, None)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_each_attempt_is_signed_anew(stub, monkeypatch, kind):
    """Through requests (and aiohttp), with a 503 first: both attempts carry valid, fresh signatures
    (botocore agrees)."""
    s = stub(
        lambda seen, n: (
            (503, {"retry-after-ms": "10"}, b'{"error": "busy"}') if n == 0 else (200, {}, OK_PREDICTION)
        )
    )
    ticks = iter([WHEN, WHEN + dt.timedelta(seconds=1)])
    auth = SigV4Auth(credentials=CREDS, region="eu-west-1", service="execute-api")
    auth._now = lambda: next(ticks)
    settings = {"auth": auth, "api_key": "k", "retry": RetryPolicy(max_retries=2, backoff_base=0.01)}
    assert call(kind, s.url, settings, "predict", b"\x89PNG\r\n\x1a\nxx").label == "7"
    assert len(s.seen) == 2
    dates = [seen.headers["x-amz-date"] for seen in s.seen]
    assert dates == ["20260304T050607Z", "20260304T050608Z"]
    for seen in s.seen:
        names = seen.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        assert {"host", "idempotency-key", "x-amz-date", "x-amz-content-sha256", "x-api-key"} <= set(names)
        headers = {n: seen.headers[n] for n in names if n != "host"}
        when = dt.datetime.strptime(seen.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=dt.timezone.utc
        )
        url = s.url + seen.path
        theirs, _ = _botocore_authorization(
            seen.method,
            url,
            {k: v for k, v in headers.items() if k not in ("x-amz-date", "x-amz-security-token")},
            seen.body,
            "execute-api",
            "eu-west-1",
            when,
        )
        assert seen.headers["authorization"] == theirs
    assert s.seen[0].headers["idempotency-key"] == s.seen[1].headers["idempotency-key"]


def test_credentials_from_the_aws_chain(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCHAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    auth = SigV4Auth()
    assert auth.credentials() == ("AKIDCHAIN", "secret", None)
    headers = _Headers()
    auth.sign("GET", "https://a1.execute-api.eu-west-1.amazonaws.com/prod/v2", headers, b"")
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDCHAIN/")
    assert "/eu-west-1/execute-api/aws4_request" in headers["Authorization"]
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(ValueError, match="region"):
        SigV4Auth(credentials=CREDS).sign("GET", "https://api.example.com/v2", _Headers(), b"")
    assert isinstance(
        Client("https://a1.execute-api.eu-west-1.amazonaws.com/prod", auth="sigv4")._transport.auth, SigV4Auth
    )
