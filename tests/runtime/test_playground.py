"""The playground page and the offline docs over HTTP (the real ASGI app) and through the real Lambda handler
(HTTP API v2 events): open pages and assets, a strict CSP, API calls still need a key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from onnxfn.runtime import Settings, create_app
from onnxfn.runtime._auth import hash_key
from onnxfn.runtime._pages import STATIC

TESTS = Path(__file__).resolve().parents[1]
KEY = "page-test-key"


@pytest.fixture(scope="module")
def client(digits_dir):
    settings = Settings(threads=1, api_key_hashes=(hash_key(KEY),), max_body_bytes=100_000)
    with TestClient(create_app(digits_dir, settings=settings)) as c:
        yield c


def test_page_is_open_small_and_has_a_strict_csp(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    csp = dict(part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'" and csp["connect-src"] == "'self'"
    assert "unsafe" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    assert 'data-auth="key"' in html  # keys are configured: the page asks for one first
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert scripts and all(not body.strip() for body in scripts), "inline script in the page"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler in the page"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "the page loads something from elsewhere"
    sizes = {
        name: (STATIC / name).stat().st_size
        for name in ("playground.html", "playground.css", "playground.js")
    }
    assert sum(sizes.values()) < 40_000, sizes
    for name, media in (("playground.js", "text/javascript"), ("playground.css", "text/css")):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media)
        assert asset.content == (STATIC / name).read_bytes()


def test_page_on_an_open_server_loads_models_at_once(digits_dir):
    with TestClient(create_app(digits_dir, settings=Settings(threads=1))) as open_client:
        assert 'data-auth="open"' in open_client.get("/").text


def test_page_js_keeps_the_key_in_memory_and_calls_only_its_server():
    js = (STATIC / "playground.js").read_text()
    for storage in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
        assert storage not in js.replace("never in\n// localStorage, sessionStorage or a cookie", "")
    assert not re.search(r"['\"]https?://", js)
    assert "innerHTML" not in js  # server text goes into the page as text, never as markup


def test_api_calls_from_the_page_still_need_a_key(client):
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"x-api-key": KEY}).status_code == 200
    assert client.post("/explain", content=b"x").status_code == 401


def test_static_files_are_only_the_shipped_ones(client):
    for path in (
        "/static/../_app.py",
        "/static/..%2f_app.py",
        "/static/_app.py",
        "/static/nope.js",
        "/static/docs/../../_auth.py",
        "/static/docs/index.html",
        "/static/__init__.py",
    ):
        r = client.get(path)
        assert r.status_code in (401, 404), (path, r.status_code)
        assert "onnxfn" not in r.text or r.json().get("error")


def test_docs_are_offline_and_open(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger-ui-bundle.js" in r.text
    assert not re.search(r"(src|href)=\"(https?:)?//", r.text)
    assert "unsafe-inline" not in r.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    bundle = client.get("/static/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 500_000
    assert client.get("/static/docs/swagger-ui.css").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_openapi_describes_explain_and_not_the_pages(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)
    for path in ("/v1/models/{name}:explain", "/explain"):
        op = paths[path]["post"]
        assert op["security"] == [{"ApiKey": []}, {"Bearer": []}]
        assert {p["name"] for p in op["parameters"]} >= {"target", "method"}
        assert set(op["requestBody"]["content"]) >= {"application/json", "application/octet-stream"}
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "ExplainResponse"
        )
    schemas = spec["components"]["schemas"]
    assert {"ExplainRequest", "ExplainResponse", "Explanation"} <= set(schemas)


def test_page_docs_and_explain_through_the_lambda_handler(digits_dir):
    """A fresh interpreter, keys configured, HTTP API v2 events into onnxfn.runtime.aws.handler."""
    script = f"""
import base64, json, sys
sys.path.insert(0, {str(TESTS)!r})
from events import event, LambdaContext, response_body, response_headers, response_json
from models import digit_png, digits_split
from onnxfn.runtime.aws import handler

def get(path, **kw):
    return handler(event("http_api_v2", method="GET", path=path, body=None, **kw), LambdaContext())

out = {{}}
page = get("/")
out["page"] = [page["statusCode"], response_headers(page)["content-type"],
               "script-src 'self'" in response_headers(page)["content-security-policy"],
               b"onnxfn playground" in response_body(page)]
js = get("/static/playground.js")
out["js"] = [js["statusCode"], js["isBase64Encoded"], b"use strict" in response_body(js)]
docs = get("/docs")
out["docs"] = [docs["statusCode"], b"swagger-ui-bundle.js" in response_body(docs)]
bundle = get("/static/docs/swagger-ui-bundle.js")
out["bundle"] = [bundle["statusCode"], len(response_body(bundle)) > 500_000]
out["models_no_key"] = get("/v1/models")["statusCode"]
png = digit_png(digits_split()[1][0])
r = handler(event("http_api_v2", path="/v1/models/digits:explain", body=png,
                  headers={{"content-type": "image/png", "x-api-key": {KEY!r}}}), LambdaContext())
body = response_json(r)
e = body["explanations"][0]
out["explain"] = [r["statusCode"], e["label"], len(e["heatmap"]), base64.b64decode(e["overlay"])[:4] == b"\\x89PNG"]
r = handler(event("http_api_v2", path="/v1/models/digits:explain", body=png,
                  headers={{"content-type": "image/png"}}), LambdaContext())
out["explain_no_key"] = r["statusCode"]
print(json.dumps(out))
"""
    env = {
        "ONNXFN_MODEL_DIR": str(digits_dir),
        "ONNXFN_API_KEY_HASHES": hash_key(KEY),
        "PATH": "/usr/bin:/bin",
        "ONNXFN_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["page"] == [200, "text/html; charset=utf-8", True, True]
    assert out["js"] == [200, False, True]  # text assets travel as text, not base64
    assert out["docs"] == [200, True] and out["bundle"] == [200, True]
    assert out["models_no_key"] == 401 and out["explain_no_key"] == 401
    assert out["explain"][0] == 200 and out["explain"][2:] == [8, True]
