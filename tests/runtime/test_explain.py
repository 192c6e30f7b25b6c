"""``:explain`` on models whose evidence is known by construction, int8 against fp32, bad input, auth, limits.

The image model below answers only from one 4×4 patch of a 16×16 image (a Slice of the input feeds the
classifier), the text model only from one word: the explanation must point there, and nowhere else.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from models import _save, digit_png, digits_logreg, quantize_int8
from onnxfn.runtime import ModelMetadata, Settings, create_app, write_manifest
from onnxfn.runtime._auth import hash_key

REGION = (slice(4, 8), slice(10, 14))  # rows 4-7, columns 10-13: the only pixels the image model reads
DISTRACTOR = (slice(10, 14), slice(2, 6))  # as bright as the evidence, and ignored by the model
KEY = "explain-test-key"


def _patch_model(path, resize: str = "stretch"):
    """16×16 RGB → Slice(REGION) → Flatten → MatMul → Softmax over ("bright", "dark", "other")."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((48, 3), dtype=np.float32)
    w[:, 0], w[:, 1] = 10 / 48, -10 / 48
    inits = [
        numpy_helper.from_array(np.array([4, 10], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([8, 14], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.array([-5, 5, 0], dtype=np.float32), "B"),
    ]
    nodes = [
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["patch"]),
        helper.make_node("Flatten", ["patch"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["logits0"]),
        helper.make_node("Add", ["logits0", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "patch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16, 16, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        initializer=inits,
    )
    meta = ModelMetadata(
        task="image-classification",
        labels=["bright", "dark", "other"],
        preprocess={"size": [16, 16], "layout": "NHWC", "color": "RGB", "scale": 1 / 255, "resize": resize},
    )
    return _save(graph, meta, path)


VOCAB = ["", "[UNK]", "alpha", "beta", "gamma", "delta", "magic"]


def _word_model(path):
    """Multi-hot words → MatMul → Softmax over ("magic", "plain"): only the word "magic" has a weight."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((len(VOCAB), 2), dtype=np.float32)
    w[VOCAB.index("magic")] = [6.0, -6.0]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "word",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", len(VOCAB)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    meta = ModelMetadata(
        task="text-classification",
        labels=["magic", "plain"],
        preprocess={"vocab": VOCAB, "output_mode": "multi_hot", "max_len": 16},
    )
    return _save(graph, meta, path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, digits_data):
    root = tmp_path_factory.mktemp("explain-models")
    _patch_model(root / "patch.onnx")
    _patch_model(root / "patch_crop.onnx", resize="crop")
    _word_model(root / "word.onnx")
    digits_logreg(root / "digits.onnx")
    x_train = digits_data[0]
    quantize_int8(
        root / "digits.onnx", root / "digits_int8.onnx", x_train[:200, :, :, None].astype(np.float32)
    )
    write_manifest(root)
    return root


@pytest.fixture(scope="module")
def client(model_dir):
    app = create_app(
        model_dir, settings=Settings(max_batch=8, max_body_bytes=200_000, threads=1, default_model="patch")
    )
    with TestClient(app) as c:
        yield c


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def patch_png() -> bytes:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 90, size=(16, 16, 3))
    pixels[REGION] = 255
    pixels[DISTRACTOR] = 255
    return _png(pixels)


def _mask(*regions: tuple[slice, slice]) -> np.ndarray:
    mask = np.zeros((16, 16), dtype=bool)
    for region in regions:
        mask[region] = True
    return mask


@pytest.mark.parametrize("method", ["occlusion", "rise"])
def test_heatmap_points_at_the_only_evidence(client, patch_png, method):
    r = client.post(f"/explain?method={method}", content=patch_png, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "patch" and body["version"] == "1"
    (e,) = body["explanations"]
    assert (e["label"], e["index"], e["method"], e["complete"]) == ("bright", 0, method, True)
    assert e["score"] > 0.9
    heat = np.asarray(e["heatmap"])
    assert heat.shape == (16, 16) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    region = _mask(REGION)
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert region[peak], f"the hottest pixel {peak} is outside the evidence"
    assert heat[region].mean() > 3 * heat[~region].mean()
    assert heat[REGION].mean() > 3 * heat[DISTRACTOR].mean()  # as bright, but not evidence
    if method == "occlusion":  # windows that never touch the evidence change nothing
        assert heat[DISTRACTOR].max() == 0.0
        assert heat[region].sum() / heat.sum() > 0.6
    overlay = base64.b64decode(e["overlay"])
    from PIL import Image

    shown = Image.open(io.BytesIO(overlay))
    assert shown.format == "PNG" and max(shown.size) >= 224


def test_overlay_covers_what_the_model_saw(client):
    """A 48×24 image: stretched, the overlay keeps its 2:1 shape; centre-cropped, it is the square crop."""
    from PIL import Image

    wide = _png(np.random.default_rng(5).integers(0, 255, size=(24, 48, 3)))
    sizes = {}
    for name in ("patch", "patch_crop"):
        r = client.post(f"/v1/models/{name}:explain", content=wide, headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        overlay = Image.open(io.BytesIO(base64.b64decode(r.json()["explanations"][0]["overlay"])))
        sizes[name] = overlay.size
    assert sizes["patch"][0] == 2 * sizes["patch"][1]
    assert sizes["patch_crop"][0] == sizes["patch_crop"][1]


def test_text_score_points_at_the_only_word(client):
    r = client.post("/v1/models/word:explain", json={"instances": ["Alpha beta MAGIC, gamma delta!"]})
    assert r.status_code == 200, r.text
    (e,) = r.json()["explanations"]
    assert e["label"] == "magic" and e["score"] > 0.99
    assert e["tokens"] == ["Alpha", "beta", "MAGIC,", "gamma", "delta!"]
    scores = np.asarray(e["scores"])
    assert int(np.argmax(scores)) == 2 and scores[2] > 0.45  # p(magic): 1.0 with the word, 0.5 without
    assert np.all(np.abs(np.delete(scores, 2)) < 1e-6)
    # The other class: the same word is the evidence against it.
    r = client.post("/v1/models/word:explain", json={"instances": ["alpha magic"], "target": "plain"})
    (e,) = r.json()["explanations"]
    assert e["label"] == "plain" and e["scores"][1] < -0.45 and abs(e["scores"][0]) < 1e-6


def test_target_by_label_and_index(client, patch_png):
    b64 = base64.b64encode(patch_png).decode()
    by_label = client.post("/explain", json={"instances": [b64], "target": "dark"}).json()
    by_index = client.post("/explain", json={"instances": [{"b64": b64}], "target": 1}).json()
    by_query = client.post(
        "/explain?target=1", content=patch_png, headers={"content-type": "image/png"}
    ).json()
    for body in (by_label, by_index, by_query):
        (e,) = body["explanations"]
        assert (e["label"], e["index"]) == ("dark", 1) and e["score"] < 0.01
    assert by_label["explanations"][0]["heatmap"] == by_index["explanations"][0]["heatmap"]


@pytest.mark.parametrize("method", ["occlusion", "rise"])
def test_int8_and_fp32_explanations_agree(client, digits_data, method):
    _, x_test, _, y_test = digits_data
    agree = []
    for image, label in zip(x_test[:6], y_test[:6], strict=True):
        png = digit_png(image)
        maps = {}
        for name in ("digits", "digits_int8"):
            r = client.post(f"/v1/models/{name}:explain?method={method}&target={label}", content=png)
            assert r.status_code == 200, r.text
            (e,) = r.json()["explanations"]
            assert e["label"] == str(label)
            maps[name] = np.asarray(e["heatmap"]).ravel()
        agree.append(np.corrcoef(maps["digits"], maps["digits_int8"])[0, 1])
    assert min(agree) > 0.8, agree
    assert np.mean(agree) > 0.9, agree


# -- bad input: the same 4xx as predict ------------------------------------------------------------------
BAD_BODIES = [
    ("image/png", b"\x89PNG\r\n\x1a\nnot really a png"),
    ("image/png", b""),
    ("application/octet-stream", b"plain text, not an image"),
    ("application/json", b"{not json"),
    ("application/json", b'{"images": []}'),
    ("application/json", b'{"instances": "x"}'),
    ("application/json", b'{"instances": []}'),
    ("application/json", b'{"instances": ["%%%not base64"]}'),
    ("application/json", json.dumps({"instances": ["aGVsbG8="] * 9}).encode()),  # 9 > max_batch 8
    ("text/plain", b"hello"),
    (None, b"neither an image nor json"),
]


@pytest.mark.parametrize(("content_type", "body"), BAD_BODIES)
def test_bad_input_gets_the_same_error_as_predict(client, content_type, body):
    headers = {"content-type": content_type} if content_type else {}
    predicted = client.post("/v1/models/patch:predict", content=body, headers=headers)
    explained = client.post("/v1/models/patch:explain", content=body, headers=headers)
    assert 400 <= predicted.status_code < 500
    assert explained.status_code == predicted.status_code, explained.text
    assert explained.json()["error"] == predicted.json()["error"]


def test_unknown_model_and_method_not_allowed(client):
    assert client.post("/v1/models/nope:explain", content=b"x").status_code == 404
    assert client.post("/v1/models/nope:predict", content=b"x").status_code == 404
    r = client.get("/v1/models/patch:explain")
    assert r.status_code == 405 and "error" in r.json()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"target": "purple"}, "is not a label"),
        ({"target": 7}, "out of range"),
        ({"target": "²"}, "is not a label"),
        ({"target": "-1"}, "out of range"),
        ({"target": True}, "label (string) or a class index"),
        ({"target": [0]}, "label (string) or a class index"),
        ({"method": "gradcam"}, "unknown method"),
        ({"method": ""}, "unknown method"),
        ({"method": "RISE"}, "unknown method"),
        ({"method": 3}, '"method" must be a string'),
    ],
)
def test_bad_target_or_method_is_400(client, patch_png, payload, message):
    body = {"instances": [base64.b64encode(patch_png).decode()], **payload}
    r = client.post("/explain", json=body)
    assert r.status_code == 400 and message in r.json()["error"]


def test_text_model_refuses_image_methods_and_images(client, patch_png):
    r = client.post("/v1/models/word:explain", json={"instances": ["magic"], "method": "rise"})
    assert r.status_code == 400 and "text models use 'occlusion'" in r.json()["error"]
    r = client.post("/v1/models/word:explain", content=patch_png, headers={"content-type": "image/png"})
    assert r.status_code == 400


def test_too_many_instances_for_one_explanation_is_413(client, patch_png):
    b64 = base64.b64encode(patch_png).decode()
    r = client.post("/explain", json={"instances": [b64] * 5})  # default ONNXFN_EXPLAIN_MAX_INSTANCES = 4
    assert r.status_code == 413 and "ONNXFN_EXPLAIN_MAX_INSTANCES" in r.json()["error"]
    r = client.post("/explain", json={"instances": [b64] * 2})
    assert r.status_code == 200 and len(r.json()["explanations"]) == 2


def test_multipart_and_base64_bodies(client, patch_png):
    r = client.post("/explain?method=rise", files=[("file", ("a.png", patch_png, "image/png"))])
    assert r.status_code == 200, r.text
    assert r.json()["explanations"][0]["method"] == "rise"


# -- cost bounds ------------------------------------------------------------------------------------------
def test_mask_count_and_time_budget_bound_the_work(model_dir, patch_png):
    from onnxfn.runtime import load_models
    from onnxfn.runtime._explain import ExplainSettings, explain_payload

    model = load_models(model_dir / "patch.onnx", threads=1).get("patch")
    few = explain_payload(model, [patch_png], None, "occlusion", ExplainSettings(masks=16, batch=8))
    assert few["explanations"][0]["masks"] <= 16 and few["explanations"][0]["complete"]
    for method in ("occlusion", "rise"):
        cut = explain_payload(model, [patch_png], None, method, ExplainSettings(batch=8, budget=1e-9))
        (e,) = cut["explanations"]
        assert e["masks"] == 8 and e["complete"] is False  # one batch, then the budget stops it


def test_explain_settings_from_env(monkeypatch):
    from onnxfn.runtime._explain import ExplainSettings

    monkeypatch.setenv("ONNXFN_EXPLAIN_MASKS", "64")
    monkeypatch.setenv("ONNXFN_EXPLAIN_METHOD", "RISE")
    monkeypatch.setenv("ONNXFN_EXPLAIN_BUDGET_S", "2.5")
    s = ExplainSettings.from_env()
    assert (s.masks, s.method, s.budget) == (64, "rise", 2.5)
    monkeypatch.setenv("ONNXFN_EXPLAIN_MASKS", "0")
    with pytest.raises(ValueError, match="ONNXFN_EXPLAIN_MASKS"):
        ExplainSettings.from_env()
    monkeypatch.setenv("ONNXFN_EXPLAIN_MASKS", "64")
    monkeypatch.setenv("ONNXFN_EXPLAIN_METHOD", "lime")
    with pytest.raises(ValueError, match="ONNXFN_EXPLAIN_METHOD"):
        ExplainSettings.from_env()


# -- auth and body limits ---------------------------------------------------------------------------------
def test_explain_needs_a_key_and_honours_the_body_limit(model_dir, patch_png):
    settings = Settings(
        threads=1, max_body_bytes=4096, api_key_hashes=(hash_key(KEY),), default_model="patch"
    )
    with TestClient(create_app(model_dir, settings=settings)) as c:
        r = c.post("/explain", content=patch_png, headers={"content-type": "image/png"})
        assert r.status_code == 401 and "missing API key" in r.json()["error"]
        r = c.post("/explain", content=patch_png, headers={"content-type": "image/png", "x-api-key": "nope"})
        assert r.status_code == 401 and r.json()["error"] == "invalid API key"
        r = c.post("/explain", content=patch_png, headers={"content-type": "image/png", "x-api-key": KEY})
        assert r.status_code == 200
        big = b"\x89PNG\r\n\x1a\n" + bytes(5000)
        r = c.post("/explain", content=big, headers={"content-type": "image/png", "x-api-key": KEY})
        assert r.status_code == 413 and "ONNXFN_MAX_BODY_BYTES" in r.json()["error"]


# -- the client, in process and over HTTP ----------------------------------------------------------------
def test_client_local_explain(model_dir, patch_png):
    from onnxfn.client import Client, Explanation

    with Client.local(model_dir) as local:
        e = local.explain(patch_png, model="patch")
        assert isinstance(e, Explanation) and e.label == "bright"
        assert e.heatmap.shape == (16, 16) and e.heatmap.dtype == np.float32
        assert e.overlay.startswith(b"\x89PNG") and e.model == "patch"
        assert _mask(REGION)[np.unravel_index(np.argmax(e.heatmap), e.heatmap.shape)]
        words = local.explain("beta magic", model="word", target="magic")
        assert words.tokens == ["beta", "magic"] and words.scores[1] > 0.45 and words.heatmap is None
        with pytest.raises(TypeError, match="not a tensor"):
            local.explain(np.zeros((2, 3), dtype=np.float32), model="patch")


def test_async_client_local_explain(model_dir, patch_png):
    import asyncio

    from onnxfn.client import AsyncClient

    async def main():
        async with AsyncClient.local(model_dir) as local:
            return await local.explain(patch_png, model="patch", method="rise")

    e = asyncio.run(main())
    assert e.label == "bright" and e.method == "rise" and e.heatmap.shape == (16, 16)
    assert _mask(REGION)[np.unravel_index(np.argmax(e.heatmap), e.heatmap.shape)]


@pytest.mark.slow
def test_client_and_cli_explain_over_http(model_dir, patch_png, tmp_path):
    import subprocess
    import sys

    from onnxfn.client import AuthenticationError, Client
    from servers import onnxfn_serve

    image = tmp_path / "patch.png"
    image.write_bytes(patch_png)
    env = {"ONNXFN_API_KEY_HASHES": hash_key(KEY)}
    with onnxfn_serve(model_dir, "--default-model", "patch", env=env) as (url, _):
        with Client(url, api_key=KEY) as c:
            e = c.explain(image, method="rise")
            assert e.label == "bright" and e.method == "rise" and e.heatmap.shape == (16, 16)
        with Client(url, api_key="wrong") as c, pytest.raises(AuthenticationError):
            c.explain(image)
        out = tmp_path / "overlay.png"
        cli = [sys.executable, "-m", "onnxfn", "explain", url, str(image), "-o", str(out), "--api-key", KEY]
        done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "bright" in done.stdout and out.read_bytes().startswith(b"\x89PNG")
        done = subprocess.run([*cli[:-1], "wrong"], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "invalid API key" in done.stderr


def _passthrough_image_model(path, *, layout: str, color: str, integer: bool, flatten: bool):
    """A 16×16 image model whose output is its input flattened: any preprocessing is visible."""
    from onnx import TensorProto, helper

    shape = {"NHWC": ["batch", 16, 16, 3], "NCHW": ["batch", 3, 16, 16]}[layout]
    shape = ["batch", 768] if flatten else shape
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["scores"], axis=1)],
        "passthrough",
        [helper.make_tensor_value_info("input", TensorProto.UINT8 if integer else TensorProto.FLOAT, shape)],
        [
            helper.make_tensor_value_info(
                "scores", TensorProto.UINT8 if integer else TensorProto.FLOAT, ["batch", 768]
            )
        ],
    )
    preprocess = {"size": [16, 16], "layout": layout, "color": color, "flatten": flatten}
    if not integer:  # distinct per-channel units, so that a channel in the wrong order shows
        preprocess |= {"scale": 1.0, "mean": [10.0, 20.0, 30.0], "std": [1.0, 2.0, 4.0]}
    return _save(graph, ModelMetadata(task="image-classification", preprocess=preprocess), path)


@pytest.mark.parametrize(
    "layout, color, integer, flatten",
    [
        ("NHWC", "RGB", False, False),
        ("NHWC", "BGR", False, False),  # Caffe-style models: explanations once fed them RGB
        ("NCHW", "BGR", False, False),
        ("NHWC", "RGB", True, False),
        ("NHWC", "BGR", False, True),
    ],
)
def test_an_unmasked_explanation_input_is_the_predict_input(tmp_path, layout, color, integer, flatten):
    from onnxfn.runtime import load_models
    from onnxfn.runtime._attribution import ImageInput

    _passthrough_image_model(
        tmp_path / "m.onnx", layout=layout, color=color, integer=integer, flatten=flatten
    )
    model = load_models(tmp_path).models["m"]
    png = _png(np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    unmasked = ImageInput(model, png).tensor(np.ones((1, 16, 16), np.float32))
    np.testing.assert_array_equal(unmasked, model.prepare([png]))
