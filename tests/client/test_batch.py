"""predict_batch: order, chunking by count and bytes, concurrency, per-item errors, and no request lost
through a fault-injecting proxy (with Client and AsyncClient)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from onnxfn.client import (
    BadRequestError,
    BatchError,
    BatchResult,
    Client,
    PayloadTooLargeError,
    Prediction,
    RetryPolicy,
)

from .faultproxy import FaultProxy
from .helpers import predict_batch, same


def _noise_png(size: int = 96) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_batch_order_and_types(client, digit_pngs, expected):
    result = client.predict_batch(digit_pngs[:100], batch_size=16, max_concurrency=4, top_k=10)
    assert isinstance(result, BatchResult) and result.ok and result.requests == 7
    same(result, expected[:100])
    assert [p.top_k for p in result[:3]] == [p.top_k for p in expected[:3]]
    assert result.labels == [p.label for p in expected[:100]]
    text = repr(result)
    assert "100 items: 100 ok, 0 failed; 7 requests" in text


def test_batch_of_text_tensors_and_generators(client):
    texts = ["good", "bad", "good good", "so bad", "nothing"] * 3
    result = client.predict_batch(iter(texts), model="words", batch_size=4)
    assert result.labels[:4] == ["positive", "negative", "positive", "negative"] and len(result) == 15
    rows = np.arange(30, dtype=np.float32).reshape(10, 3)
    out = client.predict_batch(list(rows), model="dot3", batch_size=3)
    assert [float(p.outputs[0]) for p in out] == [float(r @ [1, 2, 3]) for r in rows]
    assert len(client.predict_batch([], model="dot3")) == 0


def test_chunks_never_exceed_max_bytes(app_server, digit_pngs, expected):
    srv = app_server()
    max_bytes = 2_000
    with Client(srv.url) as c:
        result = c.predict_batch(digit_pngs[:200], batch_size=64, max_bytes=max_bytes, max_concurrency=3)
    same(result, expected[:200])
    assert srv.bodies and max(srv.bodies) <= max_bytes
    assert len(srv.bodies) == result.requests and result.requests > 200 * len(digit_pngs[0]) / max_bytes


def test_single_item_above_max_bytes_is_not_sent(app_server, digit_pngs):
    srv = app_server()
    big = _noise_png()
    assert len(big) > 4_000
    with Client(srv.url) as c:
        with pytest.raises(BatchError, match="above max_bytes") as info:
            c.predict_batch([big], max_bytes=4_000)
        first = info.value.error
        assert isinstance(first, PayloadTooLargeError) and info.value.__cause__ is first
        assert first.status is None and first.index == 0 and info.value.index == 0
        assert srv.bodies == []
        result = c.predict_batch([digit_pngs[0], big, digit_pngs[1]], max_bytes=4_000, return_exceptions=True)
    assert isinstance(result[1], PayloadTooLargeError) and result.errors.keys() == {1}
    assert isinstance(result[0], Prediction) and isinstance(result[2], Prediction)
    assert max(srv.bodies) <= 4_000


def test_per_item_exceptions(client, digit_pngs, expected, tmp_path):
    items = list(digit_pngs[:20])
    items[5] = b"not an image"
    items[7] = str(tmp_path / "missing.png")
    items[13] = b"GIF89a broken"
    result = client.predict_batch(items, batch_size=8, return_exceptions=True)
    assert set(result.errors) == {5, 7, 13} and not result.ok
    assert isinstance(result[5], BadRequestError) and isinstance(result[13], BadRequestError)
    assert isinstance(result[7], FileNotFoundError)
    for i in set(range(20)) - {5, 7, 13}:
        assert result[i].label == expected[i].label
    assert result.predictions[5] is None and "3 failed" in repr(result)
    with pytest.raises(BatchError) as info:
        client.predict_batch(items[:7], batch_size=8)
    assert info.value.index == 5 and isinstance(info.value.error, BadRequestError)
    # what finished is kept: the 5 items before the bad one were in the same (bisected) request
    assert set(info.value.results) == {0, 1, 2, 3, 4} and set(info.value.errors) == {5}
    assert [info.value.results[i].label for i in range(5)] == [e.label for e in expected[:5]]


def test_413_from_the_server_shrinks_the_batch(app_server, digit_pngs, expected):
    srv = app_server(max_batch=8)
    with Client(srv.url) as c:
        result = c.predict_batch(digit_pngs[:64], batch_size=32, max_concurrency=2)
    same(result, expected[:64])


def test_concurrency_is_bounded_and_progress_shows(app_server, digit_pngs, capsys):
    srv = app_server()
    with Client(srv.url) as c:
        result = c.predict_batch(digit_pngs[:60], batch_size=2, max_concurrency=3, progress=True)
    assert result.ok and srv.max_inflight <= 3
    assert "60/60" in capsys.readouterr().err


def test_local_batch(local, digit_pngs, expected):
    result = local.predict_batch(digit_pngs[:50], batch_size=7, max_concurrency=2)
    same(result, expected[:50])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_1000_predictions_through_faults_none_lost_none_duplicated(app_server, digit_pngs, expected, kind):
    srv = app_server()
    proxy = FaultProxy(srv.url, drop=0.05, unavailable=0.05, throttle=0.05, delay=0.2, max_delay=0.05, seed=1)
    items = [digit_pngs[i % len(digit_pngs)] for i in range(1000)]
    want = [expected[i % len(expected)] for i in range(1000)]
    settings = {"retry": RetryPolicy(max_retries=8, backoff_base=0.05), "timeout": 10}
    try:
        result = predict_batch(kind, proxy.url, items, settings, batch_size=1, max_concurrency=8)
    finally:
        proxy.close()
    same(result, want)  # none lost, in order
    assert result.requests == 1000
    assert proxy.faults["drop"] > 10 and proxy.faults["503"] > 10 and proxy.faults["429"] > 10
    # the server saw each request (idempotency key) exactly once: faults here never reached it
    assert len(srv.keys) == 1000 and set(srv.keys.values()) == {1}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_lost_answers_are_retried_with_the_same_idempotency_key(app_server, digit_pngs, expected, kind):
    srv = app_server()
    proxy = FaultProxy(srv.url, drop_after=0.2, seed=2)
    settings = {"retry": RetryPolicy(max_retries=8, backoff_base=0.02)}
    try:
        result = predict_batch(kind, proxy.url, digit_pngs[:100], settings, batch_size=1, max_concurrency=4)
    finally:
        proxy.close()
    same(result, expected[:100])
    # a lost answer means the server ran that request again, under the same key; nothing else repeats
    assert len(srv.keys) == 100
    assert sum(n - 1 for n in srv.keys.values()) == proxy.faults["drop_after"] > 5


def test_a_wrong_key_stops_the_batch_after_one_request(stub, digit_pngs):
    from onnxfn.client import AuthenticationError

    s = stub(lambda seen, n: (401, {"x-request-id": "r1"}, b'{"error": "invalid API key"}'))
    with Client(s.url, api_key="wrong") as c:
        result = c.predict_batch(digit_pngs[:100], batch_size=10, max_concurrency=1, return_exceptions=True)
        assert len(result.errors) == 100
        assert all(isinstance(e, AuthenticationError) for e in result.errors.values())
        assert len(s.seen) == 1
        with pytest.raises(BatchError, match="invalid API key") as info:
            c.predict_batch(digit_pngs[:100], batch_size=10, max_concurrency=2)
        assert isinstance(info.value.error, AuthenticationError) and not info.value.results
