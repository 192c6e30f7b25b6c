"""Small pieces without servers: encoding, the PNG writer, results, errors, Client.local reuse."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from onnxfn.client import (
    APIConnectionError,
    APITimeoutError,
    BatchResult,
    Client,
    Label,
    PayloadTooLargeError,
    Prediction,
)
from onnxfn.client._encode import batch_body, encode, write_png
from onnxfn.client._exceptions import error_from_response


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4), (1, 1)])
def test_png_writer_without_pillow_decodes_exactly(shape):
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(write_png(pixels))))
    np.testing.assert_array_equal(decoded, pixels)


def test_png_fallback_when_pillow_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no Pillow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    item = encode(np.zeros((3, 4), dtype=np.uint8))
    assert item.kind == "image" and item.data.startswith(b"\x89PNG")


def test_encode_kinds(tmp_path):
    text = tmp_path / "review.txt"
    text.write_text("good film")
    assert encode(text).kind == "text" and encode(text).data == "good film"
    assert encode("just some words").kind == "text"
    assert encode(np.arange(3, dtype=np.int64)).data == [0, 1, 2]
    assert encode([[1, 2], [3, 4]]).kind == "tensor"
    assert encode(np.zeros((2, 2, 2), dtype=np.uint8)).kind == "tensor"  # not image-shaped
    assert encode(io.StringIO("hello")).kind == "text"
    with pytest.raises(ValueError, match="empty"):
        encode(b"")
    with pytest.raises(TypeError):
        encode(np.array(["a", "b"]))
    body = batch_body([encode(b"\x89PNGxx"), encode("hi"), encode([1.5])], top_k=3)
    assert body == b'{"instances":["iVBOR3h4","hi",[1.5]],"top_k":3}'


def test_prediction_and_batch_result_reprs():
    p = Prediction.from_scores(
        [{"label": "cat", "index": 3, "score": 0.91}, {"label": "dog", "index": 1, "score": 0.05}],
        model="pets",
        version="2",
        request_id="r1",
    )
    assert p.label == "cat" and p.index == 3 and p.top_k[1] == Label("dog", 1, 0.05)
    assert repr(p) == "Prediction(label='cat', score=0.9100, top_k=['cat': 0.91, 'dog': 0.05], model='pets')"
    result = BatchResult([p, ValueError("x"), p], requests=2, elapsed=0.5)
    assert repr(result) == "BatchResult(3 items: 2 ok, 1 failed; 2 requests in 0.50 s, 6/s)"
    assert result.labels == ["cat", None, "cat"] and list(result.errors) == [1] and not result.ok


def test_errors_pickle_and_keep_their_fields():
    err = error_from_response(
        413,
        {"x-amzn-requestid": "abc"},
        b'{"message":"Request Too Long"}',
        method="POST",
        url="https://x/predict",
    )
    assert isinstance(err, PayloadTooLargeError)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is PayloadTooLargeError and copy.status == 413 and copy.request_id == "abc"
    assert str(copy) == str(err) and "Request Too Long" in str(err) and "POST https://x/predict" in str(err)
    timeout = pickle.loads(pickle.dumps(APITimeoutError("slow", idempotency_key="k")))
    assert isinstance(timeout, APIConnectionError) and timeout.idempotency_key == "k"


def test_local_reuses_the_runtime_preprocessing(models_dir, digit_pngs, monkeypatch):
    """Client.local runs the runtime's own Model.prepare/run/classify (no copy of preprocessing)."""
    from onnxfn.runtime._model import Model

    calls = {"prepare": 0, "classify": 0}
    real_prepare, real_classify = Model.prepare, Model.classify

    def prepare(self, instances):
        calls["prepare"] += 1
        return real_prepare(self, instances)

    def classify(self, scores, top_k=5):
        calls["classify"] += 1
        return real_classify(self, scores, top_k)

    monkeypatch.setattr(Model, "prepare", prepare)
    monkeypatch.setattr(Model, "classify", classify)
    local = Client.local(models_dir / "digits.onnx")
    local.predict(digit_pngs[0])
    local.predict_batch(digit_pngs[:10], batch_size=5)
    assert calls == {"prepare": 3, "classify": 3}
