"""AsyncClient against real servers: the same answers, errors, retries, deadline and Idempotency-Key as
Client; a silent server; the event loop never blocked. (Through the fault proxy: test_batch.py, with
both clients; a server restarting mid-batch: test_restart.py.)"""

from __future__ import annotations

import asyncio
import gc
import time

import numpy as np
import pytest
from onnxfn.client import (
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    BatchError,
    Client,
    NotFoundError,
    RetryPolicy,
)

from .helpers import API_KEY, OK_PREDICTION, same, silent_server

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def test_every_method_answers_as_the_sync_client(server, digit_pngs, expected):
    async def main():
        async with AsyncClient(server, api_key=API_KEY) as c:
            one = await c.predict(digit_pngs[3], top_k=10)
            batch = await c.predict_batch(digit_pngs[:100], batch_size=16, top_k=10)
            text = await c.predict("a good film", model="words")
            y = await c.infer({"x": np.array([[1.0, 1.0, 1.0]], np.float32)}, model="dot3")
            bare = await c.infer(np.array([[0.0, 1.0, 0.0]], np.float32), model="dot3")
            meta = await c.metadata("digits")
            models = await c.models()
            up = await c.health()
            return one, batch, text, y, bare, meta, models, up

    one, batch, text, y, bare, meta, models, up = asyncio.run(main())
    same([one], expected[3:4])
    same(batch, expected[:100])
    assert batch.requests == 7 and batch.ok
    assert text.label == "positive"
    np.testing.assert_allclose(y["y"], [[6.0]])
    np.testing.assert_allclose(bare["y"], [[2.0]])
    with Client(server, api_key=API_KEY) as sync:
        assert meta == sync.metadata("digits") and models == sync.models()
    assert {m["name"] for m in models} == {"digits", "words", "dot3"} and up is True


def test_errors_are_the_same_types(server, digit_pngs):
    async def main():
        async with AsyncClient(server, api_key="wrong-key") as c:
            with pytest.raises(AuthenticationError, match="API key"):
                await c.predict(digit_pngs[0])
        async with AsyncClient(server, api_key=API_KEY) as c:
            with pytest.raises(NotFoundError):
                await c.predict(digit_pngs[0], model="nope")
            with pytest.raises(BadRequestError):
                await c.predict(b"not an image")
            with pytest.raises(BatchError) as info:
                await c.predict_batch([*digit_pngs[:5], b"not an image"], batch_size=8)
            assert info.value.index == 5 and set(info.value.results) == {0, 1, 2, 3, 4}
            assert isinstance(info.value.__cause__, BadRequestError)
            result = await c.predict_batch([digit_pngs[0], b"bad", digit_pngs[1]], return_exceptions=True)
            assert list(result.errors) == [1] and isinstance(result[1], BadRequestError)

    asyncio.run(main())


def test_retries_keep_the_idempotency_key(stub):
    script = [
        (503, {"retry-after-ms": "20"}, b'{"error": "not ready"}'),
        (429, {"retry-after": "0"}, b'{"message": "Too Many Requests"}'),
        (502, {}, b'{"message": "bad gateway"}'),
        (200, {}, OK_PREDICTION),
    ]
    s = stub(lambda seen, n: script[n] if n < len(script) else (400, {}, b'{"error": "bad"}'))

    async def main():
        async with AsyncClient(s.url, retry=RetryPolicy(max_retries=4, backoff_base=0.02)) as c:
            p = await c.predict(PNG)
            with pytest.raises(BadRequestError) as info:
                await c.predict(PNG)
            return p, info.value

    p, error = asyncio.run(main())
    keys = [seen.headers["idempotency-key"] for seen in s.seen]
    assert p.label == "7" and len(s.seen) == 5  # 4 attempts, then a 400 sent exactly once
    assert len(set(keys[:4])) == 1 and keys[4] != keys[0] and error.attempts == 1
    assert s.seen[0].headers["user-agent"].startswith("onnxfn-client/")


@pytest.mark.slow
def test_deadline_against_a_silent_server():
    async def main(url):
        async with AsyncClient(url, timeout=1, deadline=3) as c:
            started = time.monotonic()
            with pytest.raises(APITimeoutError) as info:
                await c.predict(PNG)
            return time.monotonic() - started, info.value

    with silent_server() as (url, conns):
        elapsed, error = asyncio.run(main(url))
        assert 2.5 <= elapsed <= 3.6, elapsed
        assert error.attempts >= 2 and len(conns) == error.attempts
        assert "within the 3 s deadline" in str(error) and error.idempotency_key


@pytest.mark.slow
def test_the_event_loop_is_never_blocked(server):
    """A ticker sleeping 5 ms sees no gap above 100 ms while big arrays are encoded and predicted."""
    rng = np.random.default_rng(0)
    big = [rng.integers(0, 256, (768, 768, 3), dtype=np.uint8) for _ in range(6)]

    async def main():
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker():
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        async with AsyncClient(server, api_key=API_KEY) as c:
            singles = await asyncio.gather(*(c.predict(x) for x in big[:2]))
            batch = await c.predict_batch(big, batch_size=2, max_concurrency=1)
        done.set()
        await tick
        return gaps, singles, batch

    gc.collect()  # a full collection of the test session's heap is not the client's pause
    gaps, singles, batch = asyncio.run(main())
    assert len(singles) == 2 and batch.ok and len(batch) == 6
    assert len(gaps) > 20 and max(gaps) < 0.1, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"


def test_local_answers_as_client_local(models_dir, digit_pngs, expected):
    async def main():
        async with AsyncClient.local(models_dir) as c:
            return await c.predict(digit_pngs[0], top_k=10), await c.predict_batch(digit_pngs[:20], top_k=10)

    one, batch = asyncio.run(main())
    same([one, *batch], [expected[0], *expected[:20]])
