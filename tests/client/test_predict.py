"""predict() against a real ``onnxfn serve`` and in process: every input kind, auth, typed results."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from onnxfn.client import (
    AuthenticationError,
    BadRequestError,
    Client,
    NotFoundError,
    Prediction,
)

from .helpers import API_KEY


def test_import_is_light():
    code = (
        "import sys, onnxfn.client\n"
        "heavy = [m for m in ('fastapi', 'tensorflow', 'onnxruntime', 'requests', 'aiohttp', 'PIL', 'starlette') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_predict_every_input_kind(client, digit_pngs, expected, tmp_path):
    from PIL import Image

    png = digit_pngs[0]
    path = tmp_path / "digit.png"
    path.write_bytes(png)
    pixels = np.asarray(Image.open(io.BytesIO(png)))
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 8)
    inputs = [
        str(path),
        path,
        png,
        bytearray(png),
        io.BytesIO(png),
        Image.open(io.BytesIO(png)),
        pixels,
        pixels[:, :, None],
        np.stack([pixels] * 3, axis=-1),  # RGB: the server converts to the model's L
    ]
    want = expected[0]
    for x in inputs:
        p = client.predict(x)
        assert isinstance(p, Prediction)
        assert p.label == want.label, type(x)
        assert p.score == pytest.approx(want.score, rel=1e-5)
        assert [t.label for t in p.top_k] == [t.label for t in want.top_k[:5]]
        assert p.model == "digits" and p.version == "1" and p.request_id


def test_predict_matches_local_on_many(client, digit_pngs, expected):
    for png, want in zip(digit_pngs[:40], expected[:40], strict=True):
        assert client.predict(png, top_k=3).label == want.label


def test_named_text_and_tensor_models(client):
    p = client.predict("a good good film", model="words", top_k=2)
    assert p.label == "positive" and p.score > 0.9 and len(p.top_k) == 2
    assert client.predict("bad", model="words").label == "negative"
    t = client.predict(np.array([1.0, 2.0, 3.0], dtype=np.float32), model="dot3")
    assert t.label is None and t.outputs.tolist() == [14.0]
    assert client.predict([[0.5, 0, 1]][0], model="dot3").outputs.tolist() == [3.5]
    assert "outputs" in repr(t)


def test_top_k_and_repr(client, digit_pngs):
    p = client.predict(digit_pngs[1], top_k=3)
    assert len(p.top_k) == 3 and p.top_k[0].score >= p.top_k[1].score >= p.top_k[2].score
    text = repr(p)
    assert text.startswith("Prediction(label=") and "top_k=[" in text and "model='digits'" in text
    assert p.to_dict()["top_k"][0]["label"] == p.label


def test_api_key_from_env_and_missing_key(server, digit_pngs, monkeypatch):
    monkeypatch.setenv("ONNXFN_URL", server)
    monkeypatch.setenv("ONNXFN_API_KEY", API_KEY)
    with Client() as c:
        assert c.predict(digit_pngs[0]).label
    monkeypatch.delenv("ONNXFN_API_KEY")
    with Client() as c:
        with pytest.raises(AuthenticationError) as info:
            c.predict(digit_pngs[0])
    err = info.value
    assert err.status == 401 and err.request_id and "missing API key" in err.error
    assert "401" in str(err) and err.request_id in str(err) and err.attempts == 1
    with Client(server, api_key="wrong") as c, pytest.raises(AuthenticationError, match="invalid API key"):
        c.predict(digit_pngs[0])


def test_bearer_auth(server, digit_pngs):
    from onnxfn.client import BearerAuth

    with Client(server, auth=BearerAuth(API_KEY)) as c:
        assert c.predict(digit_pngs[0]).label
    with Client(server, auth=("bearer", API_KEY)) as c:
        assert c.predict(digit_pngs[0]).label


def test_server_errors_are_typed(client, digit_pngs):
    with pytest.raises(NotFoundError, match="unknown model 'nope'") as info:
        client.predict(digit_pngs[0], model="nope")
    assert info.value.status == 404 and info.value.request_id
    with pytest.raises(BadRequestError) as info:
        client.predict(b"not an image at all")
    assert info.value.status == 400 and "not an image" in info.value.error


def test_client_side_input_errors(client):
    with pytest.raises(FileNotFoundError):
        client.predict("missing.png")
    with pytest.raises(TypeError, match="input 'a': cannot send a object"):
        client.predict({"a": object()})
    # A dict is a multi-input instance; this model has one input, and the server says so.
    with pytest.raises(BadRequestError, match=r"has one input 'input'.*not with keys \['a'\]"):
        client.predict({"a": 1})
    with pytest.raises(ValueError, match="NaN"):
        client.predict(np.array([np.nan, 1.0, 2.0]), model="dot3")


def test_metadata_models_health(client):
    meta = client.metadata()
    assert meta["name"] == "digits" and meta["inputs"][0]["name"] == "input"
    assert client.metadata("words")["parameters"]["task"] == "text-classification"
    names = {m["name"] for m in client.models()}
    assert names == {"digits", "words", "dot3"}
    assert client.health() is True
    assert Client("http://127.0.0.1:9", max_retries=0).health(timeout=1) is False


def test_local_client_same_api(local, digit_pngs, expected, models_dir):
    p = local.predict(digit_pngs[2])
    assert p.label == expected[2].label and p.request_id
    assert local.predict("good", model="words").label == "positive"
    assert local.metadata("dot3")["outputs"][0]["name"] == "y"
    assert local.health()
    with pytest.raises(NotFoundError):
        local.predict(digit_pngs[0], model="nope")
    with pytest.raises(BadRequestError):
        local.predict(b"garbage")
    single = Client.local(models_dir / "digits.onnx")
    assert single.predict(digit_pngs[2]).label == expected[2].label
    assert "local:" in repr(single)


def test_constructor_checks(monkeypatch):
    monkeypatch.delenv("ONNXFN_URL", raising=False)
    with pytest.raises(ValueError, match="ONNXFN_URL"):
        Client()
    with pytest.raises(ValueError, match="http"):
        Client("model.onnx")
    with pytest.raises(TypeError):
        Client("http://127.0.0.1:1", auth=123)
