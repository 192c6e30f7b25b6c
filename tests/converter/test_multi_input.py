"""Multi-input, multi-output functional models: Keras names kept, served by V2, the friendly JSON form,
``Client.predict({...})`` over HTTP and ``Client.local``, and calibrated from a dict or an ``.npz``."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import onnx
import pytest
import requests
from onnxfn.client import BadRequestError, Client
from onnxfn.converter import ConversionError, convert, quantize
from PIL import Image
from servers import onnxfn_serve

pytestmark = pytest.mark.convert

LABELS = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def two_inputs(keras_seed):
    """image (16×16 RGB, rescaled inside) + features (4 floats) -> class softmax and a regression head."""
    import keras

    image = keras.Input((16, 16, 3), name="image")
    features = keras.Input((4,), name="features")
    x = keras.layers.Rescaling(1 / 255)(image)
    x = keras.layers.Conv2D(6, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    y = keras.layers.Dense(6, activation="relu")(features)
    z = keras.layers.Concatenate()([x, y])
    classes = keras.layers.Dense(3, activation="softmax", name="classes")(z)
    value = keras.layers.Dense(1, name="value")(z)
    model = keras.Model([image, features], [classes, value])
    model.set_weights([w * 3 for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def converted(two_inputs, tmp_path_factory):
    path = tmp_path_factory.mktemp("multi") / "multi.onnx"
    report = convert(two_inputs, path, labels=LABELS)
    return path, report


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(3)
    out = []
    for _ in range(3):
        pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)  # not 16×16: the runtime resizes
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def keras_outputs(model, pngs, features):
    pixels = np.stack(
        [np.asarray(Image.open(io.BytesIO(p)).resize((16, 16), Image.Resampling.BILINEAR)) for p in pngs]
    ).astype(np.float32)
    classes, value = model([pixels, np.asarray(features, np.float32)], training=False)
    return np.asarray(classes), np.asarray(value)


def test_inputs_keep_their_keras_names_and_get_their_own_preprocessing(converted):
    path, report = converted
    assert [i["name"] for i in report.inputs] == ["image", "features"]
    assert [o["name"] for o in report.outputs] == ["output_0", "output_1"]
    spec = report.preprocess["inputs"]
    assert spec["features"] is None
    assert spec["image"]["size"] == [16, 16] and spec["image"]["scale"] == 1.0  # Rescaling is inside
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["image", "features"]
    assert (
        json.loads({p.key: p.value for p in proto.metadata_props}["onnxfn.preprocess"]) == report.preprocess
    )
    notes = "\n".join(report.notes)
    assert "input 'image': model starts with Rescaling" in notes and "input 'features': numeric" in notes


@pytest.mark.slow
def test_served_by_friendly_json_v2_and_the_client(two_inputs, converted, pictures):
    path, _ = converted
    features = [[0.5, -1.0, 2.0, 0.1], [1.5, 0.0, -0.3, 0.7], [0.0, 0.2, 0.4, -2.0]]
    classes, value = keras_outputs(two_inputs, pictures, features)
    instances = [
        {"image": base64.b64encode(p).decode(), "features": f}
        for p, f in zip(pictures, features, strict=True)
    ]
    with onnxfn_serve(path) as (url, _):
        reply = requests.post(f"{url}/predict", json={"instances": instances, "top_k": 3}, timeout=30)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["output"] == "output_0"  # the friendly answer is the first output's, and says so
        for row, expected in zip(answer["predictions"], classes, strict=True):
            assert row[0]["label"] == LABELS[int(np.argmax(expected))]
            np.testing.assert_allclose(sorted(p["score"] for p in row), sorted(expected.tolist()), atol=1e-5)

        # V2: both inputs as tensors, both outputs back.
        pixels = np.stack(
            [
                np.asarray(Image.open(io.BytesIO(p)).resize((16, 16), Image.Resampling.BILINEAR))
                for p in pictures
            ]
        ).astype(np.float32)
        body = {
            "inputs": [
                {
                    "name": "image",
                    "shape": list(pixels.shape),
                    "datatype": "FP32",
                    "data": pixels.ravel().tolist(),
                },
                {
                    "name": "features",
                    "shape": [3, 4],
                    "datatype": "FP32",
                    "data": np.ravel(features).tolist(),
                },
            ]
        }
        reply = requests.post(f"{url}/v2/models/multi/infer", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        outputs = {o["name"]: np.reshape(o["data"], o["shape"]) for o in reply.json()["outputs"]}
        np.testing.assert_allclose(outputs["output_0"], classes, atol=1e-5)
        np.testing.assert_allclose(outputs["output_1"], value, atol=1e-5)

        # Bad instances are clear 400s that name the input.
        bad = [
            ({"instances": [base64.b64encode(pictures[0]).decode()]}, "keyed by input name"),
            ({"instances": [{"image": instances[0]["image"]}]}, "lacks ['features']"),
            ({"instances": [{**instances[0], "extra": 1}]}, "unknown key(s) ['extra']"),
            ({"instances": [{**instances[0], "features": [1, 2]}]}, "input 'features' has shape [1, 2]"),
            ({"instances": [{**instances[0], "image": [1, 2]}]}, "input 'image' is an image"),
            ({"instances": [{**instances[0], "features": "abc"}]}, "input 'features' takes numeric arrays"),
        ]
        for payload, fragment in bad:
            reply = requests.post(f"{url}/predict", json=payload, timeout=30)
            assert reply.status_code == 400, (payload, reply.text)
            assert fragment in reply.json()["error"], reply.json()

        # The client: a dict instance, images as bytes or paths, arrays as numpy.
        with Client(url) as client:
            got = client.predict({"image": pictures[1], "features": np.asarray(features[1])}, top_k=3)
            assert got.label == LABELS[int(np.argmax(classes[1]))]
            assert got.score == pytest.approx(float(np.max(classes[1])), abs=1e-5)
            with pytest.raises(BadRequestError, match="lacks"):
                client.predict({"image": pictures[1]})


def test_client_local_and_batches(two_inputs, converted, pictures, tmp_path):
    path, _ = converted
    features = np.asarray([[0.5, -1.0, 2.0, 0.1], [1.5, 0.0, -0.3, 0.7], [0.0, 0.2, 0.4, -2.0]], np.float32)
    classes, _ = keras_outputs(two_inputs, pictures, features)
    files = []
    for i, data in enumerate(pictures):
        files.append(tmp_path / f"p{i}.png")
        files[-1].write_bytes(data)
    with Client.local(path) as client:
        results = client.predict_batch(
            [{"image": str(f), "features": x} for f, x in zip(files, features, strict=True)], top_k=3
        )
        for got, expected in zip(results, classes, strict=True):
            assert got.index == int(np.argmax(expected))
            assert got.score == pytest.approx(float(np.max(expected)), abs=1e-5)
        out = client.infer({"image": np.zeros((1, 16, 16, 3), np.float32), "features": features[:1]})
        assert set(out) == {"output_0", "output_1"}


def test_calibration_from_a_dict_and_an_npz_keyed_by_input_name(converted, tmp_path):
    path, _ = converted
    rng = np.random.default_rng(0)
    data = {
        "image": rng.integers(0, 256, size=(40, 16, 16, 3)).astype(np.float32),
        "features": rng.normal(size=(40, 4)).astype(np.float32),
    }
    report = quantize(path, tmp_path / "dict.onnx", mode="static", calibration=data, runs=2, progress=False)
    assert report.chosen == "static"
    np.savez(tmp_path / "calib.npz", **data)
    report = quantize(
        path, tmp_path / "npz.onnx", mode="static", calibration=tmp_path / "calib.npz", runs=2, progress=False
    )
    assert report.chosen == "static"
    with pytest.raises(ConversionError, match=r"use the model's input names \['image', 'features'\]"):
        quantize(
            path, tmp_path / "bad.onnx", mode="static", calibration={"image": data["image"]}, progress=False
        )


def test_per_input_preprocess_and_its_errors(two_inputs, tmp_path):
    report = convert(
        two_inputs,
        tmp_path / "caffe.onnx",
        preprocess={"inputs": {"image": "caffe", "features": None}},
        check=False,
    )
    assert report.preprocess["inputs"]["image"]["color"] == "BGR"
    assert any("transformed twice" in w for w in report.warnings)  # caffe on top of the model's Rescaling
    flat = convert(two_inputs, tmp_path / "flat.onnx", preprocess={"resize": "pad"}, check=False)
    assert flat.preprocess["inputs"]["image"]["resize"] == "pad"  # a flat spec goes to the one image input
    with pytest.raises(ConversionError, match=r"names input\(s\) \['photo'\]"):
        convert(two_inputs, tmp_path / "x.onnx", preprocess={"inputs": {"photo": {}}}, check=False)


def test_parity_covers_every_output(two_inputs, converted):
    import keras
    from onnxfn.converter._load import load
    from onnxfn.converter._outputs import other_outputs_diff

    path, _ = converted
    rng = np.random.default_rng(1)
    samples = [
        rng.uniform(0, 255, (4, 16, 16, 3)).astype(np.float32),
        rng.normal(size=(4, 4)).astype(np.float32),
    ]
    assert other_outputs_diff(load(two_inputs), path, samples) < 1e-5
    other = keras.models.clone_model(two_inputs)
    weights = two_inputs.get_weights()
    weights[-2] = weights[-2] + 1.0  # the second head ("value") only: the first output stays equal
    other.set_weights(weights)
    assert other_outputs_diff(load(other), path, samples) > 1e-2
