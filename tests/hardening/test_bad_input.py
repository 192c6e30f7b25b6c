"""A corpus of hostile and broken requests against a real `onnxfn serve` (raw sockets where libraries
refuse). Each gets a 4xx JSON error naming the problem, and the server answers correctly afterwards."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import requests
from models import digit_jpeg, digit_png, png_header_only, topics_bow
from onnxfn.runtime import write_manifest
from onnxfn.runtime._auth import hash_key
from PIL import Image
from rawhttp import send
from servers import onnxfn_serve

pytestmark = pytest.mark.slow
KEY = "corpus-key"
AUTH = {"x-api-key": KEY}
MAX_BODY = 1_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, digits_model, digits_data):
    root = tmp_path_factory.mktemp("corpus-models")
    shutil.copy(digits_model, root / "digits.onnx")
    topics_bow(root / "topics.onnx")
    write_manifest(root)
    env = {
        "ONNXFN_API_KEY_HASHES": hash_key(KEY),
        "ONNXFN_MAX_BODY_BYTES": str(MAX_BODY),
        "ONNXFN_MAX_BATCH": "16",
        "ONNXFN_DEFAULT_MODEL": "digits",
    }
    with onnxfn_serve(root, env=env) as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def good(digits_data):
    _, x_test, _, y_test = digits_data
    return digit_png(x_test[0]), str(y_test[0])


def bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buf, format="PNG")  # 48 MP of zeros: ~50 KB on the wire
    return buf.getvalue()


def http(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    hdrs = {"Host": "127.0.0.1", "Connection": "close", **(headers or {})}
    if body and "Content-Length" not in hdrs and "Transfer-Encoding" not in hdrs:
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("latin-1") + body


def v2(shape, datatype="FP32", data=None, name="input"):
    data = data if data is not None else [0.0] * int(np.prod(shape))
    return json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]})


J = {"Content-Type": "application/json", "x-api-key": KEY}
V2_HEADER = (
    b'{"inputs":[{"name":"input","shape":[1,8,8,1],"datatype":"FP32","parameters":{"binary_data_size":256}}]}'
)
PNG = {"Content-Type": "image/png", "x-api-key": KEY}


def cases(good_png: bytes) -> dict[str, tuple[bytes, int, str]]:
    """name -> (raw request, expected status, words the error must contain)."""
    jpeg = digit_jpeg(np.full((8, 8), 8.0))
    nan = json.dumps({"instances": [[[[float("nan")]] * 8] * 8]})  # json.dumps writes NaN
    return {
        "malformed JSON": (http("POST", "/predict", b'{"instances": [', J), 400, "not valid JSON"),
        "JSON without instances": (http("POST", "/predict", b'{"inputs": []}', J), 400, '"instances"'),
        "wrong content type": (
            http("POST", "/predict", b"a,b,c", {**J, "Content-Type": "text/csv"}),
            415,
            "text/csv",
        ),
        "empty body": (http("POST", "/predict", b"", {**PNG, "Content-Length": "0"}), 400, "empty"),
        "truncated PNG": (
            http("POST", "/predict", good_png[: len(good_png) // 2], PNG),
            400,
            "cannot decode PNG",
        ),
        "truncated JPEG": (http("POST", "/predict", jpeg[: len(jpeg) // 2], PNG), 400, "cannot decode JPEG"),
        "non-image as image/png": (
            http("POST", "/predict", b"%PDF-1.7 not an image", PNG),
            400,
            "not an image",
        ),
        "decompression bomb": (http("POST", "/predict", bomb(), PNG), 400, "ONNXFN_MAX_IMAGE_PIXELS"),
        "20000x20000 header": (http("POST", "/predict", png_header_only(20000, 20000), PNG), 400, "pixels"),
        "bad base64": (http("POST", "/predict", b'{"instances": ["***"]}', J), 400, "base64"),
        "wrong tensor shape": (
            http("POST", "/v2/models/digits/infer", v2([1, 8, 8]).encode(), J),
            400,
            "shape",
        ),
        "wrong dtype": (
            http("POST", "/v2/models/digits/infer", v2([1, 8, 8, 1], "INT32").encode(), J),
            400,
            "FP32",
        ),
        "NaN in instances": (http("POST", "/predict", nan.encode(), J), 400, "NaN"),
        "inf in V2 data": (
            http("POST", "/v2/models/digits/infer", v2([1, 8, 8, 1], data=[1e999] * 64).encode(), J),
            400,
            "NaN or infinity",
        ),
        "ragged lists": (http("POST", "/predict", b'{"instances": [[[1,2],[3]]]}', J), 400, "rectangular"),
        "too many instances": (
            http("POST", "/predict", json.dumps({"instances": ["aGk="] * 17}).encode(), J),
            413,
            "ONNXFN_MAX_BATCH",
        ),
        "body over the limit": (
            http("POST", "/predict", b"\x89PNG" + b"\0" * (MAX_BODY + 10), PNG),
            413,
            "ONNXFN_MAX_BODY_BYTES",
        ),
        "lying Content-Length (huge)": (
            http("POST", "/predict", b"\x89PNG", {**PNG, "Content-Length": "999999999"}),
            413,
            "ONNXFN_MAX_BODY_BYTES",
        ),
        "lying Content-Length (short)": (
            http("POST", "/predict", good_png, {**PNG, "Content-Length": "20"}),
            400,
            "cannot decode PNG",
        ),
        "unknown model": (
            http("POST", "/v1/models/cats:predict", good_png, PNG),
            404,
            "available models: digits, topics",
        ),
        "path traversal ../": (
            http("POST", "/v1/models/..%2F..%2Fetc%2Fpasswd:predict", good_png, PNG),
            404,
            "no route",
        ),
        "path traversal V2": (http("GET", "/v2/models/..%2Fdigits", headers=AUTH), 404, "no route"),
        "dot-dot model name": (http("GET", "/v2/models/..", headers=AUTH), 404, "unknown model"),
        "dotted model name": (
            http("POST", "/v1/models/...onnx:predict", good_png, PNG),
            404,
            "unknown model",
        ),
        "oversized text": (
            http(
                "POST", "/v1/models/topics:predict", json.dumps({"instances": ["word " * 30000]}).encode(), J
            ),
            400,
            "characters",
        ),
        "text to an image model": (http("POST", "/predict", b'{"instances": ["hello"]}', J), 400, "base64"),
        "image to a text model": (http("POST", "/v1/models/topics:predict", good_png, PNG), 400, "text"),
        "invalid UTF-8": (
            http("POST", "/v1/models/topics:predict", b'{"instances": ["\xff\xfe"]}', J),
            400,
            "not valid JSON",
        ),
        "V2 binary size mismatch": (
            http(
                "POST",
                "/v2/models/digits/infer",
                V2_HEADER + b"\0" * 10,
                {**J, "Inference-Header-Content-Length": str(len(V2_HEADER))},
            ),
            400,
            "binary_data_size",
        ),
        "top_k zero": (http("POST", "/predict?top_k=0", good_png, PNG), 400, "top_k"),
        "multipart without files": (
            http(
                "POST",
                "/predict",
                b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n',
                {"Content-Type": "multipart/form-data; boundary=b", "x-api-key": KEY},
            ),
            400,
            "'file' parts",
        ),
        "missing key": (
            http("POST", "/predict", good_png, {"Content-Type": "image/png"}),
            401,
            "missing API key",
        ),
        "wrong key": (
            http("POST", "/predict", good_png, {**PNG, "x-api-key": "nope"}),
            401,
            "invalid API key",
        ),
        "empty key": (
            http("POST", "/predict", good_png, {**PNG, "x-api-key": "", "Authorization": "Bearer "}),
            401,
            "missing API key",
        ),
        "huge headers": (
            http("GET", "/v2/models/digits", headers={**AUTH, "X-Filler": "x" * 40_000}),
            431,
            "ONNXFN_MAX_HEADER_BYTES",
        ),
        "wrong method": (http("DELETE", "/predict", headers=AUTH), 405, "not allowed"),
        "unknown route": (http("GET", "/admin", headers=AUTH), 404, "no route"),
    }


def test_corpus_is_large_enough(good):
    assert len(cases(good[0])) >= 30


@pytest.mark.parametrize("name", list(cases(b"\x89PNG\r\n\x1a\n").keys()))
def test_bad_input_gets_a_clear_4xx_and_the_server_survives(server, good, name):
    url, proc = server
    raw, status, words = cases(good[0])[name]
    response = send(url, raw)
    assert response.status == status, (name, response)
    body = response.json()
    assert words in body["error"], body
    assert response.headers["content-type"] == "application/json"
    # ... and a good request right after is answered correctly.
    r = requests.post(
        f"{url}/predict", data=good[0], headers={"content-type": "application/octet-stream", **AUTH}
    )
    assert r.status_code == 200 and r.json()["predictions"][0][0]["label"] == good[1]
    assert proc.poll() is None


def test_chunked_body_over_the_limit_is_stopped_while_streaming(server, good):
    url, _ = server
    head = http("POST", "/predict", headers={**PNG, "Transfer-Encoding": "chunked"})
    block = b"a" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(block), block) for _ in range(40)] + [b"0\r\n\r\n"]  # 2.6 MB > 1 MB
    response = send(url, head, chunks=chunks)
    assert response.status == 413, response
    assert "ONNXFN_MAX_BODY_BYTES" in response.json()["error"]
    r = requests.post(f"{url}/predict", data=good[0], headers={"content-type": "image/png", **AUTH})
    assert r.status_code == 200


def test_body_shorter_than_content_length_is_dropped_not_crashed(server, good):
    url, proc = server
    response = send(
        url, http("POST", "/predict", b"\x89PNG", {**PNG, "Content-Length": "5000"}), half_close=True
    )
    assert response.status is None or 400 <= response.status < 500
    assert requests.get(f"{url}/v2/health/ready").status_code == 200 and proc.poll() is None


def test_protocol_garbage_is_refused_by_the_http_parser(server, good):
    """A non-numeric Content-Length never reaches the app: uvicorn's parser answers a plain 400."""
    url, proc = server
    response = send(url, http("POST", "/predict", b"x", {**PNG, "Content-Length": "ten"}))
    assert response.status == 400
    r = requests.post(f"{url}/predict", data=good[0], headers={"content-type": "image/png", **AUTH})
    assert r.status_code == 200 and proc.poll() is None


def test_tiny_images_are_served_not_refused(server):
    """A 1x1 image is a valid (if useless) image: it is upscaled to the model's size, like any other."""
    url, _ = server
    buf = io.BytesIO()
    Image.new("L", (1, 1), 255).save(buf, format="PNG")
    r = requests.post(f"{url}/predict", data=buf.getvalue(), headers={"content-type": "image/png", **AUTH})
    assert r.status_code == 200 and len(r.json()["predictions"][0]) == 5


def test_text_model_still_classifies(server):
    url, _ = server
    r = requests.post(
        f"{url}/v1/models/topics:predict",
        json={"instances": ["Rain and storm in the forecast!"]},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["predictions"][0][0]["label"] == "weather"
