"""``onnxfn serve`` as users run it: a subprocess on 127.0.0.1, real HTTP, clean shutdown."""

from __future__ import annotations

import json
import signal

import pytest
import requests
from models import digit_png
from servers import onnxfn_serve

pytestmark = pytest.mark.slow


def test_serve_answers_over_http_and_stops_cleanly(digits_dir, digits_data):
    _, x_test, _, y_test = digits_data
    with onnxfn_serve(digits_dir) as (url, proc):
        correct = 0
        with requests.Session() as s:
            for image, label in zip(x_test[:60], y_test[:60], strict=True):
                r = s.post(
                    f"{url}/predict",
                    data=digit_png(image),
                    headers={"content-type": "application/octet-stream"},
                )
                assert r.status_code == 200
                correct += r.json()["predictions"][0][0]["label"] == str(label)
            assert s.get(f"{url}/docs").status_code == 200
            assert "paths" in s.get(f"{url}/openapi.json").json()
            r = s.post(f"{url}/predict", data=b"junk", headers={"content-type": "image/jpeg"})
            assert r.status_code == 400 and "error" in r.json()
        assert correct >= 52
        proc.send_signal(signal.SIGTERM)
        # uvicorn drains, then re-raises SIGTERM so the parent sees how it ended.
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        logs = proc.stdout.read().decode()
    assert "Finished server process" in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    requests_logged = [x for x in lines if x.get("event") == "request"]
    assert len(requests_logged) >= 63
    assert all({"path", "status", "ms", "request_id"} <= set(x) for x in requests_logged)
    assert any(x.get("event") == "open_server" for x in lines)  # warned: no API keys configured


def test_serve_refuses_a_missing_model(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "onnxfn", "serve", str(tmp_path / "nothing.onnx")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "neither an .onnx file nor a directory" in result.stderr


def test_serve_with_two_workers(digits_dir, digits_data):
    _, x_test, _, y_test = digits_data
    with onnxfn_serve(digits_dir, "--workers", "2") as (url, proc):
        with requests.Session() as s:
            labels = [
                s.post(f"{url}/predict", data=digit_png(img), headers={"content-type": "image/png"}).json()[
                    "predictions"
                ][0][0]["label"]
                for img in x_test[:20]
            ]
        assert sum(label == str(y) for label, y in zip(labels, y_test[:20], strict=True)) >= 17
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)


def test_two_workers_answer_a_kept_alive_connection_as_fast_as_one(digits_dir, digits_data):
    """No Nagle stall with ``--workers 2`` (uvicorn#3149: ~40 ms per request on a reused connection).

    A behaviour test of a 40 ms stall, not a benchmark: both servers run at once and get alternate requests
    on one kept-alive connection each (so the machine's background load hits both alike); medians of 200.
    """
    import statistics
    import time

    body = digit_png(digits_data[1][0])
    headers = {"content-type": "application/octet-stream"}
    latencies: dict[str, list[float]] = {"one": [], "two": []}
    quiet = {"ONNXFN_LOG_LEVEL": "WARNING"}  # 440 request log lines would fill the unread stdout pipe
    with (
        onnxfn_serve(digits_dir, env=quiet) as (one, _),
        onnxfn_serve(digits_dir, "--workers", "2", env=quiet) as (two, _),
    ):
        with requests.Session() as s1, requests.Session() as s2:
            for i in range(220):
                for name, url, s in (("one", one, s1), ("two", two, s2)):
                    t0 = time.perf_counter()
                    r = s.post(f"{url}/predict", data=body, headers=headers)
                    if i >= 20:  # after the connection and the workers are warm
                        latencies[name].append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200
    p50 = {name: statistics.median(values) for name, values in latencies.items()}
    assert p50["two"] <= 1.5 * p50["one"] + 1.0, (
        f"p50 ms: --workers 2 {p50['two']:.1f}, one worker {p50['one']:.1f}"
    )
