"""Fuzzing the request decoders and preprocessing with hypothesis: whatever comes in, the only exceptions
that escape are onnxfn's own APIError types (which the app turns into 4xx JSON), never a 500."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models import digit_png, topics_bow
from onnxfn.runtime import APIError, load_models
from onnxfn.runtime._bodies import parse_body, parse_json
from onnxfn.runtime._dataplane import predict_payload
from onnxfn.runtime._v2 import parse_request
from onnxfn.runtime.preprocess import IMAGE_FORMATS, ImagePreprocessor, TextPreprocessor

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)
MAGIC = st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBP", b""])
CONTENT_TYPES = st.sampled_from(
    ["", "image/png", "application/octet-stream", "application/json", "text/plain", "x/y"]
)


@pytest.fixture(scope="module")
def models(digits_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    digits_model_copy = root / "digits.onnx"
    digits_model_copy.write_bytes(digits_model.read_bytes())
    topics_bow(root / "topics.onnx")
    return load_models(root)


@pytest.fixture(scope="module")
def png(digits_data):
    return digit_png(digits_data[1][0])


def only_api_errors(fn, *args):
    try:
        return fn(*args)
    except APIError as exc:
        assert 400 <= exc.status < 500 and exc.message
        return None


@FUZZ
@given(body=st.binary(max_size=300), content_type=CONTENT_TYPES)
def test_parse_body(body, content_type):
    only_api_errors(parse_body, content_type, body)


@FUZZ
@given(payload=JSON)
def test_parse_json_of_any_json(payload):
    only_api_errors(parse_json, json.dumps(payload).encode())


@FUZZ
@given(magic=MAGIC, tail=st.binary(max_size=400))
def test_image_decoding_of_garbage_behind_real_magic(magic, tail):
    only_api_errors(ImagePreprocessor({"size": [8, 8], "color": "L"}), [magic + tail])


@FUZZ
@given(data=st.data())
def test_image_decoding_of_mutated_real_images(png, data):
    raw = bytearray(png)
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(raw)))
    out = only_api_errors(ImagePreprocessor({"size": [8, 8], "color": "RGB"}), [bytes(raw[:cut])])
    assert out is None or (out.shape == (1, 8, 8, 3) and np.isfinite(out).all())


@FUZZ
@given(text=st.text(max_size=500))
def test_text_preprocessing_of_any_unicode(text):
    pre = TextPreprocessor({"vocab": ["", "[UNK]", "a", "b"], "max_len": 16})
    out = only_api_errors(pre, [text])
    assert out is None or out.shape == (1, 16)


@FUZZ
@given(
    header=JSON,
    binary=st.binary(max_size=64),
    length=st.none() | st.integers(-5, 400).map(str) | st.text(max_size=4),
)
def test_v2_request_decoding(models, header, binary, length):
    body = json.dumps(header).encode() + binary if length is not None else json.dumps(header).encode()
    only_api_errors(parse_request, body, length, models.get("digits"), 64)


@FUZZ
@given(
    inputs=st.lists(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(["input", "x"]),
                "shape": st.lists(st.integers(0, 9), max_size=5),
                "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", "FP16", "nope"]),
                "data": JSON,
            }
        ),
        min_size=1,
        max_size=2,
    )
)
def test_v2_structured_inputs(models, inputs):
    only_api_errors(parse_request, json.dumps({"inputs": inputs}).encode(), None, models.get("digits"), 64)


@FUZZ
@given(instances=st.lists(JSON, min_size=1, max_size=3), model=st.sampled_from(["digits", "topics"]))
def test_predict_with_any_json_instances(models, instances, model):
    out = only_api_errors(predict_payload, models.get(model), instances, 3)
    assert out is None or len(out["predictions"]) == len(instances)


def test_accepted_formats_are_what_the_sniffer_knows():
    assert set(IMAGE_FORMATS) == {"PNG", "JPEG", "WEBP", "BMP", "GIF"}
