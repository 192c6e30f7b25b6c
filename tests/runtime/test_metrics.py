"""``GET /metrics`` on a real ``onnxfn serve`` (one worker and two), and Lambda's EMF line per invocation."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from models import digit_png
from onnxfn.runtime._auth import hash_key
from servers import onnxfn_serve

TESTS = Path(__file__).resolve().parents[1]
PREDICT = "/v1/models/{name}:predict"


def scrape(url: str, **kwargs) -> dict[tuple[str, frozenset], float]:
    """The exposition as ``{(sample name, labels): value}`` (parsed with prometheus_client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    r = requests.get(f"{url}/metrics", timeout=10, **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def traffic(url: str, images, good: int, bad: int, headers: dict | None = None) -> None:
    """``good`` predicts (one image each, fresh connections so workers share them) and ``bad`` 400s."""
    headers = {"content-type": "application/octet-stream", **(headers or {})}
    for i in range(good):
        r = requests.post(f"{url}/v1/models/digits:predict", data=digit_png(images[i]), headers=headers)
        assert r.status_code == 200, r.text
    for _ in range(bad):
        r = requests.post(f"{url}/v1/models/digits:predict", data=b"\x89PNG\r\n\x1a\nbroken", headers=headers)
        assert r.status_code == 400, r.text


@pytest.mark.slow
def test_counters_move_by_exactly_the_requests_sent(digits_dir, digits_data):
    _, x_test, _, _ = digits_data
    key = "metrics-test-key"
    auth = {"x-api-key": key}
    with onnxfn_serve(digits_dir, "--api-key-hashes", hash_key(key)) as (url, _):
        # Keys are set and ONNXFN_METRICS_PUBLIC is not: /metrics needs one.
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 401
        before = scrape(url, headers=auth)
        traffic(url, x_test, good=7, bad=4, headers=auth)
        # Unknown model names and a batch of three in one request (one session.run with three rows).
        for name in ("nope-1", "nope-2"):
            r = requests.post(f"{url}/v1/models/{name}:predict", data=b"x", headers=auth)
            assert r.status_code == 404
        batch = {"instances": [base64.b64encode(digit_png(img)).decode() for img in x_test[:3]]}
        assert requests.post(f"{url}/predict", json=batch, headers=auth).status_code == 200
        after = scrape(url, headers=auth)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    total = "onnxfn_requests_total"
    assert delta(total, model="digits", route=PREDICT, status="200") == 7
    assert delta(total, model="digits", route=PREDICT, status="400") == 4
    # Unknown names never become label values: no label grows with what clients send.
    assert delta(total, model="", route=PREDICT, status="404") == 2
    assert not any("nope" in str(labels) for _, labels in after)
    assert delta(total, model="digits", route="/predict", status="200") == 1
    # The first scrape itself was counted once it was answered.
    assert delta(total, model="", route="/metrics", status="200") == 1
    assert delta("onnxfn_request_duration_seconds_count", route=PREDICT) == 7 + 4 + 2
    # The 400s fail in decoding, before the model runs: 7 single-image runs + one run of three rows.
    assert delta("onnxfn_inference_duration_seconds_count", model="digits") == 8
    assert delta("onnxfn_batch_size_count", model="digits") == 8
    assert delta("onnxfn_batch_size_sum", model="digits") == 7 + 3
    assert delta("onnxfn_inference_duration_seconds_sum", model="digits") > 0
    assert value(after, "onnxfn_models_loaded") == 1
    assert value(after, "onnxfn_model_load_failures_total", model="digits") == 0


@pytest.mark.slow
def test_two_workers_sum_into_one_exposition(digits_dir, digits_data, tmp_path):
    """--workers 2: every scrape, whichever worker answers it, shows the sum over both workers."""
    _, x_test, _, _ = digits_data
    env = {"TMPDIR": str(tmp_path), "ONNXFN_METRICS_PUBLIC": "true", "ONNXFN_API_KEY_HASHES": hash_key("k")}
    with onnxfn_serve(digits_dir, "--workers", "2", env=env, log_file=tmp_path / "log") as (url, proc):
        (metrics_dir,) = tmp_path.glob("onnxfn-metrics-*")  # serve's own multiprocess dir
        before = scrape(url)  # public: no key needed
        # The kernel spreads fresh connections over the two workers, but not evenly on a busy machine:
        # send rounds until both workers have answered some (bounded), and count what was sent.
        rounds = 0
        while rounds < 20:
            traffic(url, x_test, good=10, bad=3, headers={"x-api-key": "k"})
            rounds += 1
            pids = {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}
            if len(pids) == 2 and rounds >= 3:
                break
        assert len(pids) == 2, f"only one worker answered {rounds * 13} fresh connections"
        scrapes = [scrape(url) for _ in range(6)]
        for after in scrapes:
            ok = value(after, "onnxfn_requests_total", model="digits", route=PREDICT, status="200")
            bad = value(after, "onnxfn_requests_total", model="digits", route=PREDICT, status="400")
            ok0 = value(before, "onnxfn_requests_total", model="digits", route=PREDICT, status="200")
            bad0 = value(before, "onnxfn_requests_total", model="digits", route=PREDICT, status="400")
            assert (ok - ok0, bad - bad0) == (10 * rounds, 3 * rounds)
            assert value(after, "onnxfn_batch_size_count", model="digits") == 10 * rounds
            assert value(after, "onnxfn_models_loaded") == 1  # livemin over the two workers, not 2
    assert proc.returncode == 0
    assert not metrics_dir.exists()  # removed at exit


def test_metrics_off_never_imports_prometheus_client(digits_dir):
    code = f"""
import sys
from onnxfn.runtime import Settings, create_app
from fastapi.testclient import TestClient
app = create_app({str(digits_dir)!r}, settings=Settings(metrics=False))
r = TestClient(app).get("/metrics")
assert r.status_code == 404 and "metrics are off" in r.json()["error"], r.text
assert "prometheus_client" not in sys.modules
import onnxfn.runtime.aws
assert "prometheus_client" not in sys.modules
print("ok")
"""
    env = {**os.environ, "ONNXFN_MODEL_DIR": str(digits_dir)}
    env.pop("ONNXFN_API_KEY_HASHES", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


# -- Lambda: one CloudWatch EMF line per invocation ----------------------------------------------------

_INVOKE = """
import json, os, sys
sys.path.insert(0, {tests!r})
from events import LambdaContext, event
from models import digit_png
import numpy as np
import onnxfn.runtime.aws as aws
png = digit_png(np.full((8, 8), 8.0))
calls = [
    ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", event("http_api_v2", body=png)),
    ("Root=1-5759e988-00000000000000000000aaaa;Sampled=0", event("apigw_rest_v1", body=b"not an image")),
    ("Root=1-5759e988-00000000000000000000bbbb", event("alb", path="/v1/models/nope:predict", body=png)),
]
for trace, ev in calls:
    os.environ["_X_AMZN_TRACE_ID"] = trace  # the Lambda runtime sets it per invocation
    aws.handler(ev, LambdaContext())
"""


def test_lambda_handler_prints_one_emf_line_per_invocation(digits_dir):
    env = {**os.environ, "ONNXFN_MODEL_DIR": str(digits_dir), "PYTHONPATH": str(TESTS)}
    env.pop("ONNXFN_API_KEY_HASHES", None)
    out = subprocess.run(
        [sys.executable, "-c", _INVOKE.format(tests=str(TESTS))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    emf = [line for line in lines if "_aws" in line]
    assert len(emf) == 3 == len(lines)  # one per invocation, and nothing else on stdout
    for line in emf:
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "onnxfn"
        assert directive["Dimensions"] == [["model", "status_class"]]
        for metric in directive["Metrics"]:  # every declared metric is a number on the line
            assert isinstance(line[metric["Name"]], (int, float)), metric
        for dimension in directive["Dimensions"][0]:
            assert isinstance(line[dimension], str)
        assert isinstance(line["_aws"]["Timestamp"], int) and line["latency"] > 0 and line["requests"] == 1
    first, second, third = emf
    assert (first["model"], first["status_class"], first["cold_start"]) == ("digits", "2xx", 1)
    assert first["init_duration"] > 0 and any(
        m["Name"] == "init_duration" for m in first["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    )
    assert (second["model"], second["status_class"], second["status"], second["cold_start"]) == (
        "digits",
        "4xx",
        400,
        0,
    )
    assert (third["model"], third["status_class"], third["status"]) == ("none", "4xx", 404)
    assert "init_duration" not in second and "init_duration" not in third
    assert [x["xray_trace_id"] for x in emf] == [
        "1-5759e988-bd862e3fe1be46a994272793",
        "1-5759e988-00000000000000000000aaaa",
        "1-5759e988-00000000000000000000bbbb",
    ]
    assert all(x["aws_request_id"] for x in emf)
    # Every runtime log line of an invocation (stderr) carries that invocation's X-Ray trace id.
    logs = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    requests_logged = [x for x in logs if x.get("event") == "request"]
    assert [x["xray_trace_id"] for x in requests_logged] == [x["xray_trace_id"] for x in emf]


_WORKER = """
import os, sys
from onnxfn.runtime import _metrics
m = _metrics.enable()
m.models_loaded.set(int(sys.argv[1]))
m.requests.labels("digits", "/predict", "200").inc()
body, _ = m.render()
print(body.decode())
if sys.argv[2] == "crash":
    os._exit(1)  # killed: no lifespan shutdown, no mark_process_dead
m.mark_dead()
"""


def test_a_crashed_workers_live_gauge_is_dropped_but_its_counts_stay(tmp_path):
    """Multiprocess mode: the replacement of a worker that died without cleaning up forgets its gauges."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(models: int, how: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", _WORKER, str(models), how],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        return out.stdout

    worker(0, "crash")  # a worker that had lost its models, then died
    assert list(tmp_path.glob("gauge_livemin_*.db"))
    text = worker(2, "clean")  # its replacement
    assert "onnxfn_models_loaded 2.0" in text  # livemin over live workers only: not 0 from the dead one
    assert 'onnxfn_requests_total{model="digits",route="/predict",status="200"} 2.0' in text  # counts kept
    assert not list(tmp_path.glob("gauge_livemin_*.db"))  # the clean one marked itself dead on exit
