"""Preprocessing you can trust: presets equal Keras' ``preprocess_input``, resize modes, in-model layers.

Every served answer is compared with Keras itself run on the Python-side preprocessing of the same pixels:
PIL for the geometry (stretch, torchvision-style shorter-side resize + centre crop, letterbox) and
``keras.applications.imagenet_utils.preprocess_input`` for the values.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import requests
from onnxfn.client import Client
from onnxfn.converter import ConversionError, convert
from onnxfn.runtime import BadRequest, load_models
from onnxfn.runtime._dataplane import Call, DataPlane
from PIL import Image
from servers import onnxfn_serve

pytestmark = pytest.mark.convert

SIZE = 24
PRESETS = ("caffe", "tf", "torch", "none")
RESIZES = ("stretch", "crop", "pad")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real photo (sklearn's bundled china.jpg), non-square and small: 64×48."""
    from sklearn.datasets import load_sample_images

    pixels = load_sample_images().images[0]
    return Image.fromarray(pixels).resize((64, 48), Image.Resampling.BILINEAR)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def reference_geometry(image: Image.Image, resize: str, size: int = SIZE, pad_value: int = 0) -> np.ndarray:
    """The pixels a Python user would feed Keras, made with PIL directly."""
    w, h = image.size
    if resize == "stretch":
        return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
    if resize == "crop":  # torchvision: Resize(int(size / 0.875)) on the shorter side, CenterCrop(size)
        short = int(size / 0.875)
        nw, nh = (int(w * short / h), short) if w >= h else (short, int(h * short / w))
        resized = image.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        return np.asarray(resized.crop((left, top, left + size, top + size)))
    factor = min(size / w, size / h)  # letterbox
    nw, nh = int(w * factor), int(h * factor)
    canvas = np.full((size, size, 3), pad_value, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top : top + nh, left : left + nw] = np.asarray(image.resize((nw, nh), Image.Resampling.BILINEAR))
    return canvas


@pytest.fixture(scope="module")
def cnn(keras_seed):
    """A small CNN without preprocessing layers (what a user trained on preprocess_input'd images)."""
    import keras

    keras.utils.set_random_seed(0)  # independent of the tests that ran before

    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    # Large-ish weights so that the preprocessing differences move the scores visibly.
    model.set_weights([w * 3 for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def preset_dir(cnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("presets")
    reports = {}
    for preset in PRESETS:
        for resize in RESIZES:
            spec = {"preset": preset, "resize": resize}
            if resize == "pad":
                spec["pad_value"] = 114
            reports[preset, resize] = convert(cnn, out / f"{preset}-{resize}.onnx", preprocess=spec)
    return out, reports


def keras_scores(model, pixels: np.ndarray, mode: str) -> np.ndarray:
    from keras.applications import imagenet_utils

    x = pixels[None].astype(np.float32)
    if mode != "none":
        x = imagenet_utils.preprocess_input(x, mode=mode)
    return np.asarray(model(x, training=False))[0]


def scores_of(predictions: list[dict]) -> np.ndarray:
    out = np.zeros(len(predictions))
    for p in predictions:
        out[p["index"]] = p["score"]
    return out


@pytest.mark.slow
def test_every_preset_and_resize_mode_serves_what_keras_computes(cnn, preset_dir, photo):
    directory, reports = preset_dir
    body = png(photo)
    seen = set()
    with onnxfn_serve(directory) as (url, _):
        for preset in PRESETS:
            for resize in RESIZES:
                reply = requests.post(
                    f"{url}/v1/models/{preset}-{resize}:predict",
                    data=body,
                    headers={"content-type": "image/png"},
                    params={"top_k": 5},
                    timeout=30,
                )
                assert reply.status_code == 200, reply.text
                got = scores_of(reply.json()["predictions"][0])
                pixels = reference_geometry(photo, resize, pad_value=114)
                expected = keras_scores(cnn, pixels, preset)
                np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=f"{preset}/{resize}")
                seen.add(tuple(np.round(expected, 4)))
    assert len(seen) > 6  # the modes really differ: the comparison could fail
    caffe = reports["caffe", "crop"].preprocess
    assert caffe["color"] == "BGR" and caffe["mean"] == [103.939, 116.779, 123.68] and caffe["scale"] == 1.0
    assert any("shorter side to 27, centre crop 24x24" in n for n in reports["caffe", "crop"].notes)


def test_a_preset_string_and_its_errors(cnn, tmp_path):
    report = convert(cnn, tmp_path / "tf.onnx", preprocess="torch", check=False)
    assert report.preprocess["mean"] == [0.485, 0.456, 0.406] and report.preprocess["std"] == [
        0.229,
        0.224,
        0.225,
    ]
    with pytest.raises(ConversionError, match="unknown preprocess preset 'cafe'"):
        convert(cnn, tmp_path / "x.onnx", preprocess="cafe", check=False)
    with pytest.raises(ConversionError, match="resize must be one of stretch, crop, pad"):
        convert(cnn, tmp_path / "x.onnx", preprocess={"resize": "squash"}, check=False)
    with pytest.raises(ConversionError, match="unknown key 'scal' \\(did you mean 'scale'\\?\\)"):
        convert(cnn, tmp_path / "x.onnx", preprocess={"scal": 1.0}, check=False)
    with pytest.raises(ConversionError, match="the model has one input 'input'"):
        convert(cnn, tmp_path / "x.onnx", preprocess={"inputs": {"image": "tf"}}, check=False)
    assert not (tmp_path / "x.onnx").exists()
    # The per-input form works for one input too.
    keyed = convert(cnn, tmp_path / "keyed.onnx", preprocess={"inputs": {"input": "caffe"}}, check=False)
    assert keyed.preprocess["color"] == "BGR" and "inputs" not in keyed.preprocess


@pytest.fixture(scope="module")
def mobilenet(keras_seed):
    import keras

    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, include_preprocessing=True, classes=10
    )
    # Freshly initialised, its activations vanish (every score 0.1, so any preprocessing would "match"):
    # set the BatchNormalization statistics from one batch of raw-pixel images, as training would.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    pixels = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype(np.float32)
    model(pixels, training=True)
    return model


def test_mobilenetv3_with_its_own_preprocessing_is_fed_raw_pixels(mobilenet, photo, tmp_path):
    path = tmp_path / "mnv3.onnx"
    report = convert(mobilenet, path)
    assert report.preprocess["scale"] == 1.0 and report.preprocess["mean"] == [0.0, 0.0, 0.0]
    notes = "\n".join(report.notes)
    assert "model starts with Rescaling(scale=0.007843, offset=-1)" in notes
    assert "raw pixels 0..255" in notes
    pixels = np.asarray(photo.resize((32, 32), Image.Resampling.BILINEAR))
    expected = np.asarray(mobilenet(pixels[None].astype(np.float32), training=False))[0]
    with Client.local(path) as client:
        got = client.predict(png(photo), top_k=10)
    np.testing.assert_allclose(_vector(got), expected, atol=1e-5)
    # The old default (pixels / 255 on top of the model's own Rescaling) answers something else entirely.
    scaled_twice = np.asarray(mobilenet(pixels[None].astype(np.float32) / 255, training=False))[0]
    assert np.max(np.abs(scaled_twice - expected)) > 0.05 and np.ptp(expected) > 0.01
    # A preset on top of the model's own Rescaling is applied twice: the report warns.
    twice = convert(mobilenet, tmp_path / "twice.onnx", preprocess="tf", check=False)
    assert any("transformed twice" in w for w in twice.warnings)


@pytest.fixture(scope="module")
def dynamic_models(keras_seed, tmp_path_factory):
    import keras

    out = tmp_path_factory.mktemp("dynamic")

    def head(x):
        x = keras.layers.Conv2D(6, 3, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.layers.Dense(4, activation="softmax")(keras.layers.Dense(8, activation="relu")(x))

    free_in = keras.Input((None, None, 3))
    free = keras.Model(free_in, head(keras.layers.Rescaling(1 / 255)(free_in)))
    sized_in = keras.Input((None, None, 3))
    sized = keras.Model(
        sized_in, head(keras.layers.Rescaling(1 / 255)(keras.layers.Resizing(20, 20)(sized_in)))
    )
    reports = {
        "free": convert(free, out / "free.onnx"),
        "sized": convert(sized, out / "sized.onnx"),
    }
    return out, {"free": free, "sized": sized}, reports


def test_dynamic_image_sizes_keep_the_image_or_use_the_models_resizing(dynamic_models, photo):
    directory, models, reports = dynamic_models
    assert reports["free"].preprocess["size"] is None
    assert reports["sized"].preprocess["size"] == [20, 20]
    assert any("taken from the model's Resizing" in n for n in reports["sized"].notes)
    assert any("at its own size" in n for n in reports["free"].notes)
    raw = np.asarray(photo, dtype=np.float32)
    resized = np.asarray(photo.resize((20, 20), Image.Resampling.BILINEAR), dtype=np.float32)
    with Client.local(directory) as client:
        got = _vector(client.predict(png(photo), model="free"))
        expected = np.asarray(models["free"](raw[None]))[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        resized_instead = np.asarray(models["free"](resized[None]))[0]  # what a fixed size would give
        assert np.max(np.abs(resized_instead - expected)) > 1e-4
        got = _vector(client.predict(png(photo), model="sized"))
        np.testing.assert_allclose(got, np.asarray(models["sized"](resized[None]))[0], atol=1e-5)
        # Two sizes in one request cannot share a batch for a keep-the-size model: a clear 400.
        small = png(photo.resize((32, 24)))
        body = json.dumps(
            {"instances": [base64.b64encode(png(photo)).decode(), base64.b64encode(small).decode()]}
        )
        dataplane = DataPlane(load_models(directory))
        call = Call(params={"name": "free"}, headers={"content-type": "application/json"}, body=body.encode())
        with pytest.raises(
            BadRequest, match=r"its own size.*\(got 32x24, 64x48\).*separate requests"
        ) as info:
            dataplane.handle("predict", call)
        assert info.value.status == 400
        # Client.predict_batch splits a rejected batch and so still answers each image at its size.
        both = client.predict_batch([png(photo), small], model="free")
        assert [p.label is not None for p in both] == [True, True]
        # The same pair is fine for the model that resizes.
        assert len(client.predict_batch([png(photo), small], model="sized")) == 2


def _vector(prediction) -> np.ndarray:
    out = np.zeros(len(prediction.top_k))
    for c in prediction.top_k:
        out[c.index] = c.score
    return out


def test_rescaling_behind_augmentation_layers_is_found(keras_seed):
    """The Keras tutorial layout: a data_augmentation Sequential, then Rescaling, then the network."""
    import keras
    from onnxfn.converter._preprocessing import detect_layers

    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)])
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(keras.layers.RandomContrast(0.2)(augment(inputs)))
    x = keras.layers.Rescaling(2.0)(keras.layers.Conv2D(4, 3)(x))  # after a conv: not preprocessing
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    found = detect_layers(model, ["input"])["input"]
    assert [f.text() for f in found] == ["Rescaling(scale=0.003922, offset=0)"]
