"""Client against scripted servers on 127.0.0.1: each status maps to its exception, retries keep the
Idempotency-Key, Retry-After and deadlines are honoured, dead and hanging servers fail in time."""

from __future__ import annotations

import json
import logging
import time

import pytest
from onnxfn.client import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Client,
    NotFoundError,
    OnnxfnError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from servers import free_port

from .helpers import OK_PREDICTION, silent_server

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32

ERRORS = [
    # status, headers, body, exception, text the message must carry, request id
    (
        400,
        {"x-request-id": "r400"},
        {"error": "image is 0x0", "request_id": "r400"},
        BadRequestError,
        "image is 0x0",
        "r400",
    ),
    (
        401,
        {"x-request-id": "r401"},
        {"error": "missing API key"},
        AuthenticationError,
        "missing API key",
        "r401",
    ),
    (
        403,
        {"x-amzn-requestid": "gw403"},
        {"message": "Forbidden"},
        PermissionDeniedError,
        "Forbidden",
        "gw403",
    ),
    (404, {"x-request-id": "r404"}, {"error": "unknown model 'x'"}, NotFoundError, "unknown model", "r404"),
    (
        405,
        {"x-request-id": "r405"},
        {"error": "method GET is not allowed"},
        BadRequestError,
        "not allowed",
        "r405",
    ),
    # API Gateway HTTP API: a plain-text 413
    (
        413,
        {"apigw-requestid": "gw413", "content-type": "text/plain"},
        "HTTP content length exceeded 10485760 bytes.",
        PayloadTooLargeError,
        "HTTP content length exceeded",
        "gw413",
    ),
    # Lambda's own 6 MB limit, through API Gateway REST
    (
        413,
        {"x-amzn-requestid": "lambda413"},
        {"message": "Request Too Long"},
        PayloadTooLargeError,
        "Request Too Long",
        "lambda413",
    ),
    # onnxfn's own
    (
        413,
        {},
        {"error": "request body of 7,000,000 bytes is above the limit", "request_id": "own413"},
        PayloadTooLargeError,
        "above the limit",
        "own413",
    ),
    (
        415,
        {"x-request-id": "r415"},
        {"error": "unsupported Content-Type"},
        BadRequestError,
        "unsupported",
        "r415",
    ),
    (422, {"x-request-id": "r422"}, {"detail": "unprocessable"}, BadRequestError, "unprocessable", "r422"),
    (500, {"x-request-id": "r500"}, {"error": "internal error"}, ServerError, "internal error", "r500"),
    (
        429,
        {"x-amzn-requestid": "gw429"},
        {"message": "Too Many Requests"},
        RateLimitError,
        "Too Many Requests",
        "gw429",
    ),
    (
        502,
        {"x-amzn-requestid": "gw502"},
        {"message": "Internal server error"},
        ServerError,
        "Internal server",
        "gw502",
    ),
    (503, {"x-request-id": "r503"}, {"error": "no model is loaded"}, ServerError, "no model", "r503"),
    (
        504,
        {"x-amzn-requestid": "gw504"},
        {"message": "Endpoint request timed out"},
        ServerError,
        "timed out",
        "gw504",
    ),
]


@pytest.mark.parametrize(
    ("status", "headers", "body", "exc", "text", "rid"), ERRORS, ids=[str(e[0]) for e in ERRORS]
)
def test_each_status_maps_to_its_exception(stub, status, headers, body, exc, text, rid):
    payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    s = stub(lambda seen, n: (status, headers, payload))
    retryable = status in (429, 502, 503, 504)
    policy = RetryPolicy(max_retries=2 if retryable else 4, backoff_base=0.01)
    with Client(s.url, retry=policy) as c:
        with pytest.raises(exc) as info:
            c.predict(PNG)
    err = info.value
    assert isinstance(err, APIError) and isinstance(err, OnnxfnError)
    assert err.status == status and err.request_id == rid and text in err.error
    message = str(err)
    assert str(status) in message and rid in message and text in message
    # 4xx (and 500) are sent exactly once; 429/502/503/504 are retried
    assert len(s.seen) == (3 if retryable else 1)
    assert err.attempts == len(s.seen)


def test_400_is_sent_exactly_once_with_default_retries(stub):
    s = stub(lambda seen, n: (400, {}, b'{"error": "bad"}'))
    with Client(s.url) as c, pytest.raises(BadRequestError):
        c.predict(PNG)
    assert len(s.seen) == 1


def test_retries_keep_the_idempotency_key_and_log_each_attempt(stub):
    script = [
        (503, {"retry-after-ms": "20"}, b'{"error": "not ready"}'),
        (502, {}, b'{"message": "Internal server error"}'),
        (504, {}, b'{"message": "Endpoint request timed out"}'),
        (429, {"retry-after": "0"}, b'{"message": "Too Many Requests"}'),
        (200, {}, OK_PREDICTION),
    ]
    s = stub(lambda seen, n: script[n] if n < len(script) else (200, {}, OK_PREDICTION))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("onnxfn.client")  # the runtime may own the "onnxfn" logger's propagation
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with Client(s.url, retry=RetryPolicy(max_retries=4, backoff_base=0.02)) as c:
            p = c.predict(PNG)
            assert p.label == "7"
            c.predict(PNG)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    keys = [seen.headers["idempotency-key"] for seen in s.seen]
    assert len(s.seen) == 6 and len(set(keys[:5])) == 1 and keys[5] != keys[0]
    attempts = [r.getMessage() for r in records if " attempt " in r.getMessage()]
    assert len(attempts) == 6
    assert (
        "attempt 1/5 -> 503" in attempts[0] and "attempt 5/5 -> 200" in attempts[4] and keys[0] in attempts[0]
    )


def test_gives_up_after_max_retries(stub):
    s = stub(lambda seen, n: (503, {"retry-after-ms": "1"}, b'{"error": "busy"}'))
    with Client(s.url, max_retries=3) as c, pytest.raises(ServerError, match="after 4 attempts") as info:
        c.predict(PNG)
    assert len(s.seen) == 4 and info.value.attempts == 4


def test_retry_after_seconds_is_honoured(stub):
    s = stub(lambda seen, n: (429, {"retry-after": "2"}, b"{}") if n == 0 else (200, {}, OK_PREDICTION))
    with Client(s.url) as c:
        assert c.predict(PNG).label == "7"
    gap = s.seen[1].at - s.seen[0].at
    assert 2.0 <= gap <= 2.5, gap


def test_retry_after_above_the_cap_raises_at_once(stub):
    s = stub(lambda seen, n: (429, {"retry-after": "3600"}, b'{"message": "slow down"}'))
    started = time.monotonic()
    with Client(s.url) as c, pytest.raises(RateLimitError, match="3600") as info:
        c.predict(PNG)
    assert len(s.seen) == 1 and time.monotonic() - started < 1.0
    assert info.value.headers["retry-after"] == "3600"


def test_retry_after_longer_than_the_deadline_raises_at_once(stub):
    s = stub(lambda seen, n: (503, {"retry-after": "5"}, b'{"error": "busy"}'))
    started = time.monotonic()
    with Client(s.url, deadline=2) as c, pytest.raises(ServerError):
        c.predict(PNG)
    assert len(s.seen) == 1 and time.monotonic() - started < 1.0


def test_dead_server_fails_with_connection_error_by_the_deadline():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url, deadline=2.0, max_retries=50) as c, pytest.raises(APIConnectionError) as info:
        c.predict(PNG)
    elapsed = time.monotonic() - started
    assert elapsed <= 2.5, elapsed
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.attempts > 1 and "refused" in str(info.value).lower()


@pytest.mark.slow
def test_hanging_server_times_out_within_the_deadline():
    with silent_server() as (url, conns):
        started = time.monotonic()
        with Client(url, timeout=2, deadline=10) as c, pytest.raises(APITimeoutError) as info:
            c.predict(PNG)
        elapsed = time.monotonic() - started
        assert elapsed <= 10.5, elapsed
        assert info.value.attempts >= 3 and len(conns) == info.value.attempts
        assert "within the 10 s deadline" in str(info.value)


def test_server_echoes_the_idempotency_key(client):
    from onnxfn.client._base import Options, drive

    resp = drive(client._call("GET", "/v2/models/digits", Options()), client._transport)
    assert resp.status == 200 and resp.headers["idempotency-key"] and resp.headers["x-request-id"]
