"""Dynamic batching and model instances (DESIGN "Dynamic batching"): fused runs answer as if alone."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from models import _save, digit_png
from onnxfn.runtime import ModelMetadata, NotReady, Settings, load_models
from onnxfn.runtime._batcher import Batcher, Job
from onnxfn.runtime._dataplane import Call, DataPlane
from servers import onnxfn_serve


def _plane(source, **settings) -> DataPlane:
    s = Settings.from_env(model_dir=str(source), threads=1, **settings)
    return DataPlane(load_models(source, threads=1, instances=s.instances), s)


def _together(calls, workers: int):
    """Run every call at once (a barrier releases them together); results in order, errors as values."""
    barrier = threading.Barrier(len(calls))

    def go(call):
        barrier.wait()
        try:
            return call()
        except Exception as exc:  # the API's typed errors are results here
            return exc

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(go, calls))


def _predict(plane, png):
    return lambda: plane.handle("predict", Call(headers={"content-type": "image/png"}, body=png)).body


def _v2(plane, name, rows, binary=False):
    header = {
        "inputs": [
            {"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}
        ],
        "parameters": {"binary_data_output": binary},
    }
    body = json.dumps(header).encode()
    return lambda: plane.handle("infer", Call(params={"name": name}, body=body))


@pytest.fixture(scope="module")
def gather_dir(tmp_path_factory):
    """A tensor model whose run fails for some inputs only: Gather with user indices (0..9 valid)."""
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(30, dtype=np.float32).reshape(10, 3), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["rows"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", 3])],
        initializer=[table],
    )
    root = tmp_path_factory.mktemp("lookup")
    _save(graph, ModelMetadata(task="tensor", labels=None, preprocess=None, source={}), root / "lookup.onnx")
    return root


def test_fused_answers_are_byte_identical_to_unbatched(digits_dir, digits_data):
    """Predict (PNG) and V2 infer (JSON and binary, 1–3 rows each) fused: every body as if alone."""
    _, x_test, _, _ = digits_data
    alone = _plane(digits_dir)
    fused = _plane(digits_dir, batch_delay_ms=200, batch_max=16)
    pngs = [digit_png(img) for img in x_test[:24]]
    rows = [(x_test[i : i + 1 + i % 3, ..., None] * 16).astype(np.float32) for i in range(12)]

    def calls(plane):
        out = [_predict(plane, png) for png in pngs]
        out += [_v2(plane, "digits", r, binary=i % 2 == 1) for i, r in enumerate(rows)]
        return out

    expected = [c() for c in calls(alone)]
    got = _together(calls(fused), workers=36)
    for want, have in zip(expected, got, strict=True):
        have = have.body if hasattr(have, "body") else have
        want = want.body if hasattr(want, "body") else want
        assert have == want
    batcher = fused.batcher(fused.repository.get("digits"))
    assert batcher is not None and batcher.batches < len(got)  # requests really shared runs
    assert 1 < batcher.largest <= 16
    assert alone.batcher(alone.repository.get("digits")) is None  # batching off: the direct path


def test_one_bad_request_fails_alone(gather_dir):
    plane = _plane(gather_dir, batch_delay_ms=200)
    good = [np.array([i % 10, (i + 3) % 10], dtype=np.int64) for i in range(9)]
    items = [*good[:4], np.array([2, 99], dtype=np.int64), *good[4:]]  # 99 is out of the table

    def infer(idx):
        header = {"inputs": [{"name": "idx", "shape": [2], "datatype": "INT64", "data": idx.tolist()}]}
        return lambda: plane.handle(
            "infer", Call(params={"name": "lookup"}, body=json.dumps(header).encode())
        )

    replies = _together([infer(idx) for idx in items], workers=10)
    bad = replies[4]
    assert getattr(bad, "status", None) == 400 and "rejected the input" in bad.message
    for idx, reply in zip(good, replies[:4] + replies[5:], strict=True):
        data = json.loads(reply.body)["outputs"][0]["data"]
        assert data == np.arange(30, dtype=np.float32).reshape(10, 3)[idx].ravel().tolist()


def _job(model, x, *, gate=None, ran=None):
    """A job for ``x`` whose prepare waits for ``gate`` (a slow decode) and whose finish notes it ran."""

    def prepare():
        if gate is not None:
            assert gate.wait(10)
        return {"input": x}, None, None

    def finish(state, results):
        if ran is not None:
            ran.append(len(results["probabilities"]))
        return results["probabilities"]

    return Job(model, prepare, finish)


def test_a_request_past_its_deadline_gets_503(digits_dir, digits_data):
    """A request queued behind a busy runner times out (thread and event-loop callers), is not run
    afterwards, and the runner goes on; with nobody else in flight, no waiting for the 5 s delay."""
    _, x_test, _, _ = digits_data
    model = load_models(digits_dir, threads=1).get("digits")
    batcher = Batcher(model, delay_ms=5000, max_rows=8, timeout=0.3)
    x = (x_test[:1, ..., None] * 16).astype(np.float32)
    gate, ran = threading.Event(), []
    busy = ThreadPoolExecutor(1).submit(batcher.run, _job(model, x, gate=gate))  # holds the one runner
    time.sleep(0.05)
    t0 = time.monotonic()
    with pytest.raises(NotReady) as err:
        batcher.run(_job(model, x, ran=ran))
    assert 0.25 < time.monotonic() - t0 < 3
    assert err.value.status == 503 and err.value.headers == {"retry-after": "1"}
    assert "ONNXFN_REQUEST_TIMEOUT" in err.value.message
    with pytest.raises(NotReady):
        asyncio.run(batcher.submit(_job(model, x, ran=ran)))
    gate.set()
    with pytest.raises(NotReady):  # the busy one is past its own deadline too
        busy.result(5)
    t0 = time.monotonic()
    out = batcher.run(_job(model, x, ran=ran))
    assert time.monotonic() - t0 < 2.5  # not the 5 s delay: nobody else was in flight
    np.testing.assert_array_equal(out, model.run({"input": x})["probabilities"])
    assert ran == [1]  # the two that gave up never ran


def test_runners_share_a_session_and_run_side_by_side(digits_dir, digits_data):
    """Two runners over one session: two jobs are prepared at the same time (each waits for the other
    at a barrier, which one runner alone could never pass) and both get the answer they get alone."""
    _, x_test, _, _ = digits_data
    model = load_models(digits_dir, threads=1).get("digits")
    batcher = Batcher(model, delay_ms=0, max_rows=8, timeout=5, fuse=False, runners=2)
    barrier = threading.Barrier(2, timeout=5)
    xs = [(x_test[i : i + 1, ..., None] * 16).astype(np.float32) for i in range(2)]

    def job(x):
        def prepare():
            barrier.wait()  # BrokenBarrierError (a failed request) unless both run at once
            return {"input": x}, None, None

        return Job(model, prepare, lambda state, results: results["probabilities"])

    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda x: batcher.run(job(x)), xs))
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out, model.run({"input": x})["probabilities"])
    assert len(model.sessions) == 1 and batcher.batches == 2


def test_a_replaced_model_lets_go_of_its_runners(digits_dir, digits_data):
    """Hot reload swaps a model: its queue is closed, its runners end and the old sessions can be freed."""
    import gc
    import weakref

    _, x_test, _, _ = digits_data
    plane = _plane(digits_dir)
    png = digit_png(x_test[0])

    def predict() -> bytes:
        call = Call(headers={"content-type": "image/png"}, body=png)
        job = plane.job("predict", call)
        return asyncio.run(plane.scheduler(job.model).submit(job)).body

    first = predict()
    old = weakref.ref(plane.repository.get("digits"))
    plane.repository.replace(load_models(digits_dir, threads=1).models, {})
    assert predict() == first  # the new model answers (and its queue retires the old one's)
    assert all(m.sessions is not None and m is not old() for m in plane._batchers)  # retired
    deadline = time.monotonic() + 10
    while old() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert old() is None  # no runner, queue or job holds the replaced model


def test_instances_are_separate_sessions(digits_dir, digits_data):
    _, x_test, _, _ = digits_data
    plane = _plane(digits_dir, instances=2, batch_delay_ms=5)
    model = plane.repository.get("digits")
    assert len(model.sessions) == 2 and model.sessions[0] is not model.sessions[1]
    pngs = [digit_png(img) for img in x_test[:16]]
    expected = [_predict(_plane(digits_dir), p)() for p in pngs]
    assert _together([_predict(plane, p) for p in pngs], workers=16) == expected
    direct = _plane(digits_dir, instances=2)  # instances without batching: a free session per request
    assert _together([_predict(direct, p) for p in pngs], workers=16) == expected


def test_settings_share_the_cores_and_refuse_contradictions(monkeypatch):
    from onnxfn.runtime._settings import default_threads

    monkeypatch.delenv("ONNXFN_THREADS", raising=False)
    cores = default_threads()
    # A server: one thread per run, one run per core of this worker's share, at least one per session.
    served = Settings.from_env()
    assert (served.threads, served.runners) == (1, cores)
    assert Settings.from_env(workers=2).runners == max(1, cores // 2)
    assert Settings.from_env(instances=cores + 1).runners == cores + 1
    assert Settings.from_env(threads=cores).runners == 1  # all cores per run: one run at a time
    assert Settings.from_env(workers=2, threads=3).threads == 3  # an explicit value wins
    # One request at a time (Lambda, Client.local): the cores shared out over workers × instances.
    assert Settings.from_env(offload=False).threads == cores
    assert Settings.from_env(offload=False, workers=2).threads == max(1, cores // 2)
    assert Settings.from_env(offload=False, workers=2, instances=2).threads == max(1, cores // 4)
    monkeypatch.setenv("ONNXFN_BATCH_DELAY_MS", "2.5")
    assert Settings.from_env().batch_delay_ms == 2.5 and Settings.from_env().batch_max == 32
    monkeypatch.setenv("ONNXFN_BATCH_DELAY_MS", "soon")
    with pytest.raises(ValueError, match="ONNXFN_BATCH_DELAY_MS"):
        Settings.from_env()
    monkeypatch.setenv("ONNXFN_BATCH_DELAY_MS", "5")
    monkeypatch.setenv("ONNXFN_MAX_BATCH", "8")
    assert Settings.from_env().batch_max == 8
    monkeypatch.setenv("ONNXFN_BATCH_MAX", "16")
    with pytest.raises(ValueError, match="ONNXFN_BATCH_MAX=16 is above ONNXFN_MAX_BATCH=8"):
        Settings.from_env()


def test_lambda_never_batches(digits_dir):
    """aws.py ignores the batching and instance settings: one request per container."""
    import os
    import subprocess
    import sys

    probe = (
        "from onnxfn.runtime import aws; m = aws.app.state.repository.get('digits'); "
        "print(aws.settings.batch_delay_ms, aws.settings.instances, len(m.sessions), aws.settings.offload)"
    )
    env = {**os.environ, "ONNXFN_MODEL_DIR": str(digits_dir), "ONNXFN_BATCH_DELAY_MS": "10"}
    env["ONNXFN_INSTANCES"] = "3"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["0.0", "1", "1", "False"], out.stderr[-2000:]


@pytest.mark.slow
def test_serve_batches_over_http(digits_dir, digits_data):
    """`onnxfn serve --batch-delay-ms`: 32 concurrent clients get the bodies an unbatched server sends."""
    _, x_test, _, _ = digits_data
    pngs = [digit_png(img) for img in x_test[:64]]
    alone = _plane(digits_dir)
    expected = [_predict(alone, p)() for p in pngs]
    quiet = {"ONNXFN_LOG_LEVEL": "WARNING"}  # no request log lines filling the unread stdout pipe
    args = ("--batch-delay-ms", "20", "--batch-max", "16", "--instances", "2")
    with onnxfn_serve(digits_dir, *args, env=quiet) as (
        url,
        _,
    ):
        local = threading.local()

        def post(png):
            session = getattr(local, "s", None) or requests.Session()
            local.s = session
            r = session.post(f"{url}/predict", data=png, headers={"content-type": "application/octet-stream"})
            return r.status_code, r.content

        with ThreadPoolExecutor(32) as pool:
            got = list(pool.map(post, pngs * 2))
        b64 = base64.b64encode(pngs[0]).decode()
        r = requests.post(f"{url}/predict", json={"instances": [b64, "not an image"]})
    assert got == [(200, body) for body in expected * 2]
    assert r.status_code == 400


def test_serve_refuses_a_batch_max_above_max_batch(digits_dir):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "onnxfn", "serve", str(digits_dir), "--max-batch", "8", "--batch-max", "9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "ONNXFN_BATCH_MAX=9 is above ONNXFN_MAX_BATCH=8" in result.stderr
