"""The one preprocessing implementation: real image files in every accepted format, and text."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from models import _save, png_header_only
from onnxfn.runtime import BadRequest, load_models
from onnxfn.runtime._dataplane import Call, DataPlane
from onnxfn.runtime.preprocess import ImagePreprocessor, TextPreprocessor, check_tensor, sniff_image
from PIL import Image

SPEC = {"size": [8, 8], "color": "L", "scale": 1 / 255}


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def gradient(w=32, h=16, mode="RGB") -> Image.Image:
    x = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    if mode == "L":
        return Image.fromarray(x, "L")
    return Image.fromarray(np.stack([x, x[::-1], np.full_like(x, 128)], axis=-1), "RGB")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_every_format_decodes_to_the_model_shape(fmt):
    data = encode(gradient(), fmt)
    assert sniff_image(data) == fmt
    out = ImagePreprocessor({"size": [4, 6], "color": "RGB"})([data])
    assert out.shape == (1, 4, 6, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_layouts_normalisation_and_flatten():
    data = encode(gradient(mode="L"), "PNG")
    nchw = ImagePreprocessor(
        {"size": [8, 8], "color": "RGB", "layout": "NCHW", "mean": [0.5] * 3, "std": [0.5] * 3}
    )
    out = nchw([data])
    assert out.shape == (1, 3, 8, 8) and -1.0 <= out.min() and out.max() <= 1.0
    flat = ImagePreprocessor(SPEC, flatten=True)([data])
    assert flat.shape == (1, 64)
    raw = ImagePreprocessor(SPEC, dtype=np.uint8)([data])
    assert raw.dtype == np.uint8 and raw.max() > 200


def test_exif_orientation_is_applied():
    # A 16x8 image whose left half is white, saved with EXIF "rotate 90 CW" (orientation 6).
    pixels = np.zeros((8, 16), np.uint8)
    pixels[:, :8] = 255
    image = Image.fromarray(pixels, "L")
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(image, "JPEG", exif=exif.tobytes(), quality=95)
    pre = ImagePreprocessor({"size": [16, 8], "color": "L"})  # upright it is 16 tall, 8 wide
    upright = pre([data])[0, :, :, 0]
    assert upright.shape == (16, 8)
    assert upright[:8].mean() > 0.8 and upright[8:].mean() < 0.2  # white ends on top


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "1", "I;16"])
def test_other_colour_modes_convert(mode):
    base = gradient()
    image = base.convert(mode) if mode != "I;16" else base.convert("L").convert("I;16")
    data = encode(image, "PNG")
    assert ImagePreprocessor({"size": [8, 8], "color": "RGB"})([data]).shape == (1, 8, 8, 3)
    assert ImagePreprocessor(SPEC)([data]).shape == (1, 8, 8, 1)


def test_pixel_limit_stops_bombs_before_decoding():
    with pytest.raises(BadRequest, match=r"ONNXFN_MAX_IMAGE_PIXELS"):
        ImagePreprocessor(SPEC).load(png_header_only(20000, 20000))
    with pytest.raises(BadRequest, match=r"7000x7000 = 49,000,000 pixels"):
        ImagePreprocessor(SPEC).load(png_header_only(7000, 7000))
    # A real, highly compressible 50-megapixel PNG (~50 KB on the wire).
    bomb = encode(Image.new("L", (10000, 5000)), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(BadRequest, match="ONNXFN_MAX_IMAGE_PIXELS"):
        ImagePreprocessor(SPEC).load(bomb)
    tiny = encode(Image.new("L", (1, 1), 200), "PNG")
    assert ImagePreprocessor(SPEC)([tiny]).shape == (1, 8, 8, 1)  # 1x1 is upscaled, not refused


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty image"),
        (b"hello world", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "cannot decode PNG"),
        (None, "cannot decode JPEG"),
    ],
)
def test_broken_images_are_bad_requests(data, fragment):
    if data is None:
        data = encode(gradient(256, 256), "JPEG")[:400]  # truncated mid-scan
    with pytest.raises(BadRequest, match=fragment):
        ImagePreprocessor(SPEC)([data])


def test_text_matches_keras_standardisation():
    vocab = ["", "[UNK]", "the", "cat", "sat", "on", "mat"]
    pre = TextPreprocessor({"vocab": vocab, "max_len": 6})
    ids = pre(["The cat, sat on the MAT!", "dog"])
    assert ids.tolist() == [[2, 3, 4, 5, 2, 6], [1, 0, 0, 0, 0, 0]]
    hot = TextPreprocessor({"vocab": vocab, "output_mode": "count"}, dtype=np.float32)(["the the cat"])
    assert hot.tolist() == [[0, 0, 2, 1, 0, 0, 0]]
    with pytest.raises(BadRequest, match="must be strings"):
        pre([b"bytes"])
    with pytest.raises(BadRequest, match="above the limit"):
        TextPreprocessor({"vocab": vocab}, max_chars=10)(["x" * 11])


def test_check_tensor_rejects_ragged_nan_and_fractions():
    with pytest.raises(BadRequest, match=r"ragged|rectangular"):
        check_tensor([[1, 2], [3]], name="x", dtype=np.float32, shape=("n", 2))
    with pytest.raises(BadRequest, match="NaN"):
        check_tensor([[np.inf, 1]], name="x", dtype=np.float32, shape=("n", 2))
    with pytest.raises(BadRequest, match="integers"):
        check_tensor([[1.5, 1]], name="x", dtype=np.int64, shape=("n", 2))
    assert check_tensor([[1, 2]], name="x", dtype=np.float32, shape=(-1, 2)).dtype == np.float32


def blocks(w=40, h=20) -> Image.Image:
    """Left half red, right half blue, with a 2-pixel green frame: geometry is easy to read back."""
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[:, : w // 2, 0] = 200
    pixels[:, w // 2 :, 2] = 200
    pixels[:2, :, 1] = pixels[-2:, :, 1] = pixels[:, :2, 1] = pixels[:, -2:, 1] = 255
    return Image.fromarray(pixels, "RGB")


def test_bgr_reverses_channels_and_takes_mean_in_bgr_order():
    data = encode(blocks(), "PNG")
    spec = {"size": [20, 40], "scale": 1.0}
    rgb = ImagePreprocessor({**spec, "color": "RGB"})([data])[0]
    bgr = ImagePreprocessor({**spec, "color": "BGR", "mean": [103.939, 116.779, 123.68]})([data])[0]
    np.testing.assert_allclose(bgr, rgb[:, :, ::-1] - np.float32([103.939, 116.779, 123.68]), atol=1e-4)
    assert ImagePreprocessor({**spec, "color": "bgr"}).color == "BGR"


def test_crop_is_the_imagenet_centre_crop():
    image = blocks(64, 48)
    out = ImagePreprocessor({"size": [21, 21], "resize": "crop", "scale": 1.0})([encode(image, "PNG")])[0]
    # shorter side 48 -> int(21 / 0.875) = 24, longer 64 -> 32; centre 21x21 of that (offsets 5, 1)
    resized = np.asarray(image.resize((32, 24), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_array_equal(out, resized[1:22, 5:26])
    assert out[:, :, 1].max() < 255  # the green frame is cropped away
    half = ImagePreprocessor({"size": [21, 21], "resize": "crop", "crop_ratio": 1.0, "scale": 1.0})
    assert half([encode(image, "PNG")]).shape == (1, 21, 21, 3)


def test_pad_letterboxes_with_pad_value():
    image = blocks(40, 20)
    pre = ImagePreprocessor({"size": [20, 20], "resize": "pad", "pad_value": 114, "scale": 1.0})
    out = pre([encode(image, "PNG")])[0]
    assert out.shape == (20, 20, 3)
    np.testing.assert_array_equal(out[:5], 114)  # 40x20 fits as 20x10: 5 rows of padding above
    np.testing.assert_array_equal(out[15:], 114)  # and 5 below
    resized = np.asarray(image.resize((20, 10), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_array_equal(out[5:15], resized)
    grey = ImagePreprocessor({"size": [20, 20], "resize": "pad", "pad_value": 7, "color": "L", "scale": 1.0})
    assert grey([encode(image, "PNG")])[0, 0, 0, 0] == 7


def test_size_null_keeps_each_image_and_refuses_mixed_sizes():
    pre = ImagePreprocessor({"size": None, "scale": 1.0})
    a, b = encode(blocks(40, 20), "PNG"), encode(blocks(30, 30), "PNG")
    assert pre([a, a]).shape == (2, 20, 40, 3)
    np.testing.assert_array_equal(pre([a])[0], np.asarray(blocks(40, 20), np.float32))
    with pytest.raises(BadRequest, match=r"own size.*\(got 30x30, 40x20\).*separate requests"):
        pre([a, b])
    assert ImagePreprocessor({"scale": 1.0}).size is None  # no size at all: the same


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"size": [8, 8], "color": "CMYK"}, "color must be one of L, RGB, BGR"),
        ({"size": [8, 8], "resize": "squash"}, "resize must be one of stretch, crop, pad"),
        ({"size": [8, 8], "resize": "crop", "crop_ratio": 1.5}, "crop_ratio must be in (0, 1]"),
        ({"size": [8, 8], "resize": "pad", "pad_value": 300}, "pad_value must be a pixel value"),
        ({"size": None, "resize": "crop"}, "resize 'crop' needs a size"),
        ({"size": [0, 8]}, "size must be positive"),
        ({"size": "big"}, "size must be [H, W] or null"),
    ],
)
def test_bad_image_specs_are_refused(spec, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        ImagePreprocessor(spec)


def three_inputs_model(path):
    """An ONNX graph with an image, a text and a numeric input; output_0 = [mean pixel, sum of token ids,
    sum of features] per row (so each input's preprocessing is visible in the answer), output_1 = its softmax."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxfn.runtime import ModelMetadata

    f = TensorProto.FLOAT
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axes"], ["m1"]),
        helper.make_node("Cast", ["tokens"], ["tf"], to=f),
        helper.make_node("ReduceSum", ["tf", "axes"], ["t1"], keepdims=1),
        helper.make_node("ReduceSum", ["features", "axes"], ["f1"], keepdims=1),
        helper.make_node("Concat", ["m1", "t1", "f1"], ["output_0"], axis=1),
        helper.make_node("Softmax", ["output_0"], ["output_1"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "three_inputs",
        [
            helper.make_tensor_value_info("image", f, ["batch", 4, 4, 3]),
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", 5]),
            helper.make_tensor_value_info("features", f, ["batch", 2]),
        ],
        [
            helper.make_tensor_value_info("output_0", f, ["batch", 3]),
            helper.make_tensor_value_info("output_1", f, ["batch", 3]),
        ],
        initializer=[axes],
    )
    metadata = ModelMetadata(
        task="image-classification",
        labels=["image", "tokens", "features"],
        preprocess={
            "inputs": {
                "image": {"size": [4, 4], "color": "BGR", "scale": 1.0, "mean": [0, 0, 0]},
                "tokens": {"vocab": ["", "[UNK]", "hello", "world"], "max_len": 5},
                "features": None,
            }
        },
    )
    return _save(graph, metadata, path)


def test_each_input_gets_its_own_preprocessing_through_the_data_plane(tmp_path):
    import base64

    from onnxfn.client import BadRequestError, Client

    path = three_inputs_model(tmp_path / "three.onnx")
    picture = encode(Image.new("RGB", (8, 6), (30, 60, 90)), "PNG")
    with Client.local(path) as client:
        got = client.predict(
            {"image": picture, "tokens": "Hello world, hello!", "features": [1.5, 2.0]}, top_k=3
        )
        scores = {c.label: c.score for c in got.top_k}
        assert scores == pytest.approx({"image": 60.0, "tokens": 2 + 3 + 2, "features": 3.5})
        # The JSON form as a user writes it, and the answer names the output it classified.
        body = json.dumps(
            {
                "instances": [
                    {"image": base64.b64encode(picture).decode(), "tokens": "world", "features": [0, 1]}
                ]
            }
        ).encode()
        dataplane = DataPlane(load_models(path))
        reply = dataplane.handle("predict", Call(headers={"content-type": "application/json"}, body=body))
        answer = json.loads(reply.body)
        assert answer["output"] == "output_0" and answer["predictions"][0][0] == {
            "label": "image",
            "index": 0,
            "score": pytest.approx(60.0),
        }
        for instance, fragment in [
            ({"image": picture, "tokens": 3, "features": [1, 2]}, "input 'tokens' is text"),
            ({"image": "hello", "tokens": "a", "features": [1, 2]}, "input 'image'"),
            ({"image": picture, "tokens": "a", "features": [[1, 2]]}, "input 'features' has shape"),
        ]:
            with pytest.raises(BadRequestError, match=re.escape(fragment)):
                client.predict(instance)


@pytest.mark.parametrize(
    "spec",
    [
        {"size": None, "scale": 1 / 127.5, "mean": 1.0},  # one scale and offset for every channel
        {"size": None, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},  # per channel
        {"size": None, "color": "BGR", "scale": 1.0, "mean": [103.9, 116.8, 123.7]},
        {"size": None, "color": "L", "scale": 1 / 255, "mean": 0.5},
        {"size": None, "layout": "NCHW", "mean": [1.0, 2.0, 3.0], "std": [2.0, 3.0, 4.0]},
    ],
)
def test_normalisation_is_pixel_times_a_plus_b_per_channel(spec):
    # Rows are scaled by the per-channel vector tiled along the row (fast); the values must be exactly
    # the per-pixel formula, for every width (the tiled vectors are cached per width).
    pre = ImagePreprocessor(spec)
    rng = np.random.default_rng(7)
    for height, width in [(5, 7), (9, 7), (3, 31), (96, 96)] * 6 + [(2, w) for w in range(1, 30)]:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert(pre.mode)
        got = pre.array(image)
        raw = np.asarray(image, dtype=np.uint8).reshape(height, width, -1)
        raw = raw[:, :, ::-1] if pre.color == "BGR" else raw
        expected = raw.astype(np.float32) * pre._a + pre._b
        expected = expected.transpose(2, 0, 1) if pre.layout == "NCHW" else expected
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
