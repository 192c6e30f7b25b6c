"""Trace context: W3C ``traceparent`` validated, logged and echoed by a real ``onnxfn serve``; OpenTelemetry
spans (in-memory exporter) when an SDK is configured; and the path without OpenTelemetry at all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from models import digit_png
from onnxfn.runtime._tracing import parse_traceparent
from servers import onnxfn_serve

TESTS = Path(__file__).resolve().parents[1]
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
HEADER = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

INVALID = [
    f"ff-{TRACE}-{PARENT}-01",  # version ff is forbidden
    f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
    f"00-{TRACE.upper()}-{PARENT}-01",  # upper-case hex
    f"00-{TRACE[:-1]}-{PARENT}-01",  # short trace id
    f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
    "not a traceparent",
    "",
]


def test_parse_traceparent():
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-01") == (TRACE, PARENT, "01")
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-00-future-fields") == (TRACE, PARENT, "00")
    for value in INVALID:
        assert parse_traceparent(value) is None, value


@pytest.mark.slow
def test_traceparent_is_continued_logged_and_echoed(digits_dir, digits_data, tmp_path):
    _, x_test, _, _ = digits_data
    log = tmp_path / "server.log"
    image = digit_png(x_test[0])

    def predict(url: str, **headers: str) -> requests.Response:
        headers = {"content-type": "application/octet-stream", **headers}
        return requests.post(f"{url}/predict", data=image, headers=headers, timeout=10)

    with onnxfn_serve(digits_dir, log_file=log) as (url, _):
        r = predict(url, traceparent=f"00-{TRACE}-{PARENT}-01")
        assert r.status_code == 200
        trace_id, span_id, flags = HEADER.match(r.headers["traceparent"]).groups()
        assert (trace_id, flags) == (TRACE, "01") and span_id != PARENT  # same trace, the server's own span
        sampled_off = requests.get(
            f"{url}/v2/health/live", headers={"traceparent": f"00-{TRACE}-{PARENT}-00"}
        )
        assert sampled_off.headers["traceparent"].endswith("-00")  # flags travel unchanged
        invalid = []
        for value in INVALID:  # a bad traceparent is ignored (a new trace starts), never a 400
            r2 = predict(url, traceparent=value)
            assert r2.status_code == 200
            invalid.append(HEADER.match(r2.headers["traceparent"]).group(1))
        plain = predict(url)
        new_trace = HEADER.match(plain.headers["traceparent"]).group(1)
    assert TRACE not in invalid and len(set(invalid)) == len(INVALID) and new_trace not in invalid
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith('{"')]
    logged = [x for x in lines if x.get("event") == "request" and x["path"] == "/predict"]
    first = logged[0]
    assert (first["trace_id"], first["span_id"], first["parent_span_id"]) == (TRACE, span_id, PARENT)
    assert all("parent_span_id" not in x for x in logged[1:])
    assert [x["trace_id"] for x in logged[1:]] == [*invalid, new_trace]


_OTEL_SCRIPT = r"""
import json, sys, threading, time
sys.path.insert(0, {tests!r})
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

import numpy as np, requests, uvicorn
from models import digit_png
from servers import free_port
from onnxfn.runtime import Settings, create_app
app = create_app({models!r}, settings=Settings(metrics=False))
port = free_port()
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
thread = threading.Thread(target=server.run, daemon=True)
thread.start()
while not server.started:
    time.sleep(0.05)
url = f"http://127.0.0.1:{{port}}"
headers = {{"traceparent": "00-{trace}-{parent}-01"}}
r1 = requests.post(url + "/v1/models/digits:predict", data=digit_png(np.full((8, 8), 8.0)),
                   headers={{**headers, "content-type": "application/octet-stream"}})
x = np.zeros((2, 8, 8, 1), np.float32).tolist()
r2 = requests.post(url + "/v2/models/digits/infer",
                   json={{"inputs": [{{"name": "input", "shape": [2, 8, 8, 1], "datatype": "FP32", "data": x}}]}})
r3 = requests.post(url + "/v1/models/digits:predict", data=b"junk", headers={{"content-type": "image/png"}})
server.should_exit = True
thread.join(10)
spans = [
    {{"name": s.name, "trace": f"{{s.context.trace_id:032x}}", "id": f"{{s.context.span_id:016x}}",
      "parent": f"{{s.parent.span_id:016x}}" if s.parent else None, "kind": s.kind.name,
      "attributes": dict(s.attributes or {{}}), "status": s.status.status_code.name}}
    for s in exporter.get_finished_spans()
]

# Without a framework server span (an ASGI app that makes none), onnxfn's middleware makes its own.
import asyncio
from onnxfn.runtime._middleware import RequestMiddleware
from onnxfn.runtime._tracing import span

async def bare_app(scope, receive, send):
    with span("onnxfn.inference", model="bare"):
        pass
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{{}}"}})

sent = []
async def send(message):
    sent.append(message)
async def receive():
    return {{"type": "http.request", "body": b"", "more_body": False}}
exporter.clear()
scope = {{"type": "http", "method": "GET", "path": "/v2/models/bare", "headers": [
    (b"traceparent", b"00-{trace}-{parent}-01")]}}
asyncio.run(RequestMiddleware(bare_app, api_key_hashes=(), max_body_bytes=100)(scope, receive, send))
bare = [
    {{"name": s.name, "trace": f"{{s.context.trace_id:032x}}", "id": f"{{s.context.span_id:016x}}",
      "parent": f"{{s.parent.span_id:016x}}" if s.parent else None, "kind": s.kind.name}}
    for s in exporter.get_finished_spans()
]
bare_header = dict(sent[0]["headers"])[b"traceparent"].decode()
print(json.dumps({{"bare": bare, "bare_header": bare_header, "spans": spans, "headers": [r.headers["traceparent"] for r in (r1, r2, r3)],
                  "status": [r1.status_code, r2.status_code, r3.status_code]}}))
"""


@pytest.mark.slow
def test_opentelemetry_spans_when_an_sdk_is_configured(digits_dir):
    pytest.importorskip("opentelemetry.sdk")
    script = _OTEL_SCRIPT.format(tests=str(TESTS), models=str(digits_dir), trace=TRACE, parent=PARENT)
    env = {k: v for k, v in os.environ.items() if k != "ONNXFN_API_KEY_HASHES"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == [200, 200, 400]
    spans = result["spans"]
    by_id = {s["id"]: s for s in spans}
    servers = [s for s in spans if s["kind"] == "SERVER"]  # one per request (the framework's or ours)
    assert [s["attributes"]["http.route"] for s in servers] == [
        "/v1/models/{name}:predict",
        "/v2/models/{name}/infer",
        "/v1/models/{name}:predict",
    ]
    predict, infer, bad = servers
    # The first request continues the caller's trace; each response names its server span.
    assert (predict["trace"], predict["parent"]) == (TRACE, PARENT)
    assert result["headers"] == [f"00-{s['trace']}-{s['id']}-01" for s in servers]
    assert infer["parent"] is None and infer["trace"] != TRACE
    assert [s["attributes"]["http.response.status_code"] for s in servers] == [200, 200, 400]

    def under(server: dict) -> list[str]:
        """Names of onnxfn's spans whose ancestors include ``server``, in the same trace."""
        names = []
        for s in spans:
            if not s["name"].startswith("onnxfn."):
                continue
            parent = by_id.get(s["parent"])
            while parent is not None and parent is not server:
                parent = by_id.get(parent["parent"])
            if parent is server:
                assert s["trace"] == server["trace"]
                names.append(s["name"])
        return sorted(names)

    assert under(predict) == ["onnxfn.decode", "onnxfn.inference", "onnxfn.preprocess"]
    assert under(infer) == ["onnxfn.decode", "onnxfn.inference"]
    (run,) = [s for s in spans if s["name"] == "onnxfn.inference" and s["trace"] == infer["trace"]]
    assert run["attributes"] == {"model": "digits", "rows": 2}
    # The bad image fails in preprocessing: no inference span, and a 400 is not a server error.
    assert under(bad) == ["onnxfn.decode", "onnxfn.preprocess"] and bad["status"] == "UNSET"
    # onnxfn's own server span, where the framework makes none.
    own, child = sorted(result["bare"], key=lambda s: s["kind"] != "SERVER")
    assert (own["kind"], own["name"], own["trace"], own["parent"]) == (
        "SERVER",
        "GET /v2/models/{name}",
        TRACE,
        PARENT,
    )
    assert (child["name"], child["parent"], child["trace"]) == ("onnxfn.inference", own["id"], TRACE)
    assert result["bare_header"] == f"00-{TRACE}-{own['id']}-01"


_NO_OTEL_SCRIPT = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError("no opentelemetry here: " + name)
sys.meta_path.insert(0, Block())
import numpy as np
from onnxfn.runtime import load_models
from onnxfn.runtime._dataplane import Call, DataPlane
from onnxfn.runtime._tracing import span, start_request
dataplane = DataPlane(load_models({models!r}))
reply = dataplane.handle("infer", Call(params={{"name": "digits"}}, body=b'{{"inputs": [{{"name": "input", '
    b'"shape": [1, 8, 8, 1], "datatype": "FP32", "data": ' + str([0.0] * 64).encode() + b'}}]}}'))
assert reply.status == 200, reply.body
trace = start_request({{"traceparent": "00-{trace}-{parent}-01"}}, "POST", "/predict")
assert trace.trace_id == "{trace}" and trace.parent_id == "{parent}" and trace.otel_span is None
trace.end(200)
with span("x"):
    pass
assert not [m for m in sys.modules if m.startswith("opentelemetry")]
print("ok")
"""


def test_without_opentelemetry_everything_still_works(digits_dir):
    """FastAPI itself now needs opentelemetry-api, so the app cannot run without it; the data plane
    (``Client.local``, edge use) and the trace helpers can, and must not import it."""
    script = _NO_OTEL_SCRIPT.format(models=str(digits_dir), trace=TRACE, parent=PARENT)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
