"""The retry policy without any I/O: ``attempts()`` driven by hand with answers and connection errors,
Retry-After parsing, full-jitter backoff."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest
from onnxfn.client import APIConnectionError, APITimeoutError, RateLimitError, RetryPolicy, ServerError
from onnxfn.client._retry import Send, Sleep, attempts, parse_retry_after
from onnxfn.client._transports import Request, Response


def _request() -> Request:
    return Request("POST", "/predict", None, {"idempotency-key": "k1"}, b"x")


def _start(policy: RetryPolicy, *, timeout: float | None = 30.0, deadline: float | None = 10.0):
    flow = attempts(_request(), policy=policy, timeout=timeout, deadline=deadline, url="http://h/predict")
    return flow, next(flow)


def test_a_2xx_ends_the_flow_with_its_response():
    flow, step = _start(RetryPolicy())
    assert isinstance(step, Send) and step.request.headers["idempotency-key"] == "k1"
    assert 9.9 < step.timeout <= 10.0  # the attempt timeout is cut to the deadline
    with pytest.raises(StopIteration) as done:
        flow.send(Response(200, {}, b"{}"))
    assert done.value.value.status == 200


def test_answers_count_against_max_retries_and_honour_retry_after():
    flow, _ = _start(RetryPolicy(max_retries=2, backoff_base=0.5))
    wait = flow.send(Response(429, {"retry-after": "1"}, b"{}"))
    assert isinstance(wait, Sleep) and 1.0 <= wait.seconds <= 1.1
    assert isinstance(next(flow), Send)
    wait = flow.send(Response(503, {}, b"{}"))
    assert isinstance(wait, Sleep) and 0 <= wait.seconds <= 1.0  # full jitter, second retry: cap 1 s
    next(flow)
    with pytest.raises(ServerError, match="after 3 attempts") as info:
        flow.send(Response(502, {"x-request-id": "r9"}, b'{"error": "down"}'))
    assert info.value.attempts == 3 and info.value.idempotency_key == "k1" and info.value.request_id == "r9"


def test_other_statuses_are_never_retried():
    for status in (400, 401, 403, 404, 413, 422, 500):
        flow, _ = _start(RetryPolicy(max_retries=5))
        with pytest.raises(Exception) as info:
            flow.send(Response(status, {}, b"{}"))
        assert info.value.status == status and info.value.attempts == 1


def test_connection_failures_retry_until_the_deadline_not_max_retries():
    flow, _ = _start(RetryPolicy(max_retries=1, backoff_base=0.001, backoff_max=0.001), deadline=0.5)
    started, count = time.monotonic(), 1
    with pytest.raises(APIConnectionError) as info:
        while True:
            step = flow.throw(APIConnectionError("connection refused"))
            assert isinstance(step, Sleep)
            time.sleep(step.seconds)
            step = next(flow)
            assert isinstance(step, Send) and step.timeout <= 0.5
            count += 1
    assert count > 10 and info.value.attempts == count and time.monotonic() - started < 1.0
    assert "within the 0.5 s deadline" in str(info.value) and info.value.idempotency_key == "k1"


def test_without_a_deadline_max_retries_bounds_connection_failures_too():
    flow, _ = _start(RetryPolicy(max_retries=2, backoff_base=0.0), deadline=None)
    assert isinstance(flow.throw(APITimeoutError("slow")), Sleep)
    next(flow)
    assert isinstance(flow.throw(APITimeoutError("slow")), Sleep)
    next(flow)
    with pytest.raises(APITimeoutError, match="gave up after 3 attempts"):
        flow.throw(APITimeoutError("slow"))


def test_max_retries_zero_and_unretryable_connection_errors_raise_at_once():
    flow, _ = _start(RetryPolicy(max_retries=0))
    with pytest.raises(APIConnectionError):
        flow.throw(APIConnectionError("refused"))
    flow, _ = _start(RetryPolicy())
    with pytest.raises(APIConnectionError, match="TLS"):
        flow.throw(APIConnectionError("TLS error", retryable=False))


def test_a_server_wait_past_the_cap_or_the_deadline_raises_at_once():
    flow, _ = _start(RetryPolicy(max_retry_after=30))
    with pytest.raises(RateLimitError, match="above the max_retry_after"):
        flow.send(Response(429, {"retry-after": "60"}, b"{}"))
    flow, _ = _start(RetryPolicy(), deadline=2.0)
    with pytest.raises(ServerError):
        flow.send(Response(503, {"retry-after": "5"}, b"{}"))


def test_a_jittered_wait_is_cut_to_fit_one_more_attempt():
    flow, _ = _start(RetryPolicy(backoff_base=100, backoff_max=100), deadline=1.0)
    random.seed(1)
    wait = flow.throw(APIConnectionError("reset"))
    assert isinstance(wait, Sleep) and wait.seconds < 1.0


def test_parse_retry_after():
    now = time.time()
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(
        30, abs=1
    )
    assert parse_retry_after({"retry-after": formatdate(now - 30, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-1"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_full_jitter_and_capped():
    policy = RetryPolicy(backoff_base=0.5, backoff_max=4.0)
    rng = random.Random(0)
    for retry, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0)]:
        waits = [policy.backoff(retry, rng) for _ in range(500)]
        assert 0 <= min(waits) and max(waits) <= cap
        assert max(waits) > 0.8 * cap and min(waits) < 0.2 * cap  # spread over [0, cap]
    assert 2.0 <= policy.honoured_wait(2.0, rng) <= 2.2
