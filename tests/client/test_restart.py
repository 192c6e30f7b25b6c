"""A server that restarts mid-batch (issue 16): with default settings every item is answered once, because
connection failures are retried until the deadline; a batch that still fails keeps what finished."""

from __future__ import annotations

import json
import threading
import time

import pytest
from onnxfn.client import APIConnectionError, BatchError, Client, Prediction, RetryPolicy
from servers import free_port

from .helpers import RestartableServe, call, predict_batch

DOWN_FOR = 3.0  # seconds the server is gone (plus its start-up time)


class _Chaos:
    """Kills the server when the batch has read ``at`` items, keeps it down ``DOWN_FOR`` s, restarts it."""

    def __init__(self, serve: RestartableServe, at: int) -> None:
        self.serve, self.at = serve, at
        self.thread = threading.Thread(target=self._run)
        self.killed_at: float | None = None
        self.back_at: float | None = None

    def items(self, xs):
        for i, x in enumerate(xs):
            if i == self.at:
                self.thread.start()
            yield x

    def _run(self) -> None:
        self.serve.kill()  # SIGKILL: no graceful drain, in-flight requests are lost
        self.killed_at = time.monotonic()
        time.sleep(DOWN_FOR)
        self.serve.start()
        self.back_at = time.monotonic()


@pytest.fixture
def serve(models_dir):
    s = RestartableServe(models_dir)
    s.start()
    yield s
    s.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_restart_mid_batch_with_defaults_answers_every_item_once(serve, digit_pngs, expected, kind):
    images = digit_pngs * 4  # 1,800 items
    want = [expected[i % len(expected)] for i in range(len(images))]
    chaos = _Chaos(serve, at=600)
    result = predict_batch(kind, serve.url, chaos.items(images), {}, batch_size=4)  # default settings
    finished = time.monotonic()
    chaos.thread.join()
    assert chaos.killed_at is not None and chaos.back_at is not None and chaos.back_at < finished
    assert len(result) == len(images) and result.ok
    assert all(isinstance(p, Prediction) for p in result)
    assert [p.label for p in result] == [w.label for w in want]  # each item once, in order


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_connection_failures_back_off_until_the_deadline(kind):
    """Not "gave up after ~7.5 s" with a message naming the deadline: retries go on until it."""
    import aiohttp  # noqa: F401 - imported before the clock starts: its import is not the retries' time

    dead = f"http://127.0.0.1:{free_port()}"
    policy = RetryPolicy(max_retries=1, backoff_base=0.05, backoff_max=0.2)
    started = time.monotonic()
    with pytest.raises(APIConnectionError) as info:
        call(kind, dead, {"retry": policy, "deadline": 2}, "predict", b"\x89PNG")
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed <= 2.5, elapsed
    assert info.value.attempts > 2  # more than max_retries + 1: connection failures count the deadline
    assert "within the 2 s deadline" in str(info.value) and "refused" in str(info.value).lower()


def test_max_retries_zero_is_one_attempt_even_for_connection_failures():
    dead = f"http://127.0.0.1:{free_port()}"
    with Client(dead, max_retries=0, deadline=5) as c, pytest.raises(APIConnectionError) as info:
        c.predict(b"\x89PNG")
    assert info.value.attempts == 1
    assert c.health() is False


def test_a_failed_batch_keeps_what_finished(stub, digit_pngs):
    """A server that starts failing mid-batch: BatchError.results holds the finished predictions."""
    top = [{"label": "7", "index": 7, "score": 0.9}]
    ok = json.dumps({"model": "digits", "version": "1", "predictions": [top, top]}).encode()

    def reply(seen, n):
        return (200, {}, ok) if n < 3 else (500, {}, b'{"error": "disk on fire"}')

    s = stub(reply)
    with Client(s.url, max_retries=0) as c, pytest.raises(BatchError) as info:
        c.predict_batch(digit_pngs[:20], batch_size=2, max_concurrency=1)
    error = info.value
    assert set(error.results) == {0, 1, 2, 3, 4, 5} and all(p.label == "7" for p in error.results.values())
    assert error.index == 6 and set(error.errors) == {6, 7} and error.count >= 8
    assert "disk on fire" in str(error) and "6 of" in str(error) and ".results" in str(error)
