"""Quantizing image models (CIFAR-style CNN, dense MLP) trained on real sklearn digits."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from converter_data import DIGIT_LABELS
from models import DIGITS_PREPROCESS, digit_png, first_output
from onnxfn.converter import quantize
from onnxfn.runtime import load_models
from onnxfn.runtime._repository import sha256_file

pytestmark = pytest.mark.convert


def metadata(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_cnn_static_int8_keeps_accuracy_metadata_and_dynamic_batch(cnn_onnx, digits, tmp_path):
    x_train, x_test, _, y_test = digits
    out = tmp_path / "models" / "digits.onnx"
    report = quantize(
        cnn_onnx,
        out,
        mode="static",
        calibration=x_train[:200],
        eval_data=(x_test, y_test),
        runs=3,
        progress=False,
    )

    fp32, static = report.baseline, report.variant("static")
    assert report.chosen == "static" and static.status == "chosen"
    assert fp32.accuracy > 0.93  # the CNN really learned the held-out digits
    assert static.accuracy >= fp32.accuracy - 0.02
    assert static.size_bytes < 0.6 * fp32.size_bytes  # int8 weights (16k parameters: QDQ overhead weighs)
    assert static.quantized_ops.get("Conv") == 3 and not static.float_ops.get("Conv")
    assert "QLinearConv" in static.int8_kernels  # onnxruntime really runs the convolutions in int8
    assert static.max_abs_diff is not None and static.max_abs_diff < 0.3

    meta = metadata(out)
    assert json.loads(meta["onnxfn.labels"]) == DIGIT_LABELS
    assert json.loads(meta["onnxfn.preprocess"]) == json.loads(metadata(cnn_onnx)["onnxfn.preprocess"])
    assert meta["onnxfn.task"] == "image-classification"
    q = json.loads(meta["onnxfn.quantization"])
    assert q["mode"] == "static" and q["per_channel"] is True and q["calibration_size"] == 200
    assert q["method"] == "minmax" and q["format"] == "QDQ"

    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["models"]["digits"] == {"file": "digits.onnx", "sha256": sha256_file(out)}

    # The batch axis stays dynamic: batch 1 and 32 both run.
    assert onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert run(out, x_test[:1]).shape == (1, 10)
    assert run(out, x_test[:32]).shape == (32, 10)

    # And the runtime serves it: raw PNG digits in, labels out.
    model = load_models(out.parent).get("digits")
    pngs = [digit_png(img[..., 0]) for img in x_test[:40]]
    predicted = [row[0]["label"] for row in model.classify(first_output(model, pngs))]
    assert np.mean(np.asarray(predicted, dtype=int) == y_test[:40]) > 0.9


def test_image_folder_calibration_uses_the_runtime_preprocessing(cnn_onnx, digits, tmp_path, monkeypatch):
    from onnxfn.converter._calibration import InputInfo, load_eval, load_samples
    from onnxfn.runtime import preprocess

    _, x_test, _, y_test = digits
    folder = tmp_path / "images"
    for i, (image, label) in enumerate(zip(x_test[:60], y_test[:60], strict=True)):
        (folder / DIGIT_LABELS[label]).mkdir(parents=True, exist_ok=True)
        (folder / DIGIT_LABELS[label] / f"{i:03d}.png").write_bytes(digit_png(image[..., 0]))

    calls = []
    original = preprocess.ImagePreprocessor.array
    monkeypatch.setattr(
        preprocess.ImagePreprocessor, "array", lambda self, image: calls.append(1) or original(self, image)
    )
    info = InputInfo.from_proto(onnx.load(str(cnn_onnx)))
    feeds = load_samples(folder, info)
    assert len(calls) == 60  # every image went through the runtime's ImagePreprocessor

    files = sorted(folder.rglob("*.png"))
    expected = preprocess.ImagePreprocessor(DIGITS_PREPROCESS)([f.read_bytes() for f in files])
    np.testing.assert_array_equal(feeds["input"], expected)

    _, labels = load_eval(folder, info)  # class subfolders give labels
    assert labels.tolist() == [int(f.parent.name) for f in files]

    report = quantize(
        cnn_onnx,
        tmp_path / "out" / "cnn.onnx",
        mode="static",
        calibration=folder,
        eval_data=folder,
        runs=2,
        progress=False,
    )
    # The same folder as calibration and eval: a quarter is held out from calibration and measured on.
    assert report.labelled and report.calibration_samples == 45 and report.eval_samples == 15
    assert any("the eval data is the calibration data" in w for w in report.warnings)
    assert report.variant("static").accuracy > 0.85


def test_mlp_dynamic_and_fp16(mlp_onnx, digits, tmp_path):
    _, x_test, _, y_test = digits
    flat = x_test.reshape(len(x_test), 64)

    dynamic = quantize(
        mlp_onnx, tmp_path / "dyn" / "mlp.onnx", mode="dynamic", eval_data=(flat, y_test), runs=2
    )
    v = dynamic.variant("dynamic")
    assert v.agreement >= 0.98 and v.accuracy >= dynamic.baseline.accuracy - 0.02
    assert v.quantized_ops == {"MatMul": 3} and not v.float_ops
    assert v.size_bytes < 0.4 * dynamic.baseline.size_bytes
    assert run(tmp_path / "dyn" / "mlp.onnx", flat[:1]).shape == (1, 10)
    assert run(tmp_path / "dyn" / "mlp.onnx", flat[:32]).shape == (32, 10)

    half = quantize(mlp_onnx, tmp_path / "fp16" / "mlp.onnx", mode="fp16", eval_data=flat, runs=2)
    v = half.variant("fp16")
    assert not half.labelled and v.agreement >= 0.995
    assert v.size_bytes <= 0.6 * half.baseline.size_bytes
    assert v.max_abs_diff < 1e-2
    # float32 in and out: the runtime and clients need no change.
    session = ort.InferenceSession(str(tmp_path / "fp16" / "mlp.onnx"), providers=["CPUExecutionProvider"])
    assert (
        session.get_inputs()[0].type == "tensor(float)" and session.get_outputs()[0].type == "tensor(float)"
    )
    assert json.loads(metadata(tmp_path / "fp16" / "mlp.onnx")["onnxfn.quantization"])["mode"] == "fp16"


def test_auto_measures_every_candidate_and_reports_in_four_forms(mlp_onnx, mlp_keras, digits, tmp_path):
    x_train, x_test, _, y_test = digits
    flat_train, flat_test = x_train.reshape(-1, 64), x_test.reshape(-1, 64)
    np.savez(tmp_path / "eval.npz", x=flat_test, y=y_test)
    report = quantize(
        mlp_onnx,
        tmp_path / "auto" / "mlp.onnx",
        mode="auto",
        calibration=flat_train[:128],
        eval_data=tmp_path / "eval.npz",
        reference=mlp_keras,
        runs=3,
        progress=False,
        report_dir=tmp_path / "report",
    )
    names = [v.name for v in report.variants]
    assert names == ["fp32", "static", "dynamic", "fp16"]
    assert report.reference == "keras" and report.baseline.max_abs_diff < 1e-4  # fp32 ONNX == Keras
    chosen = report.result
    assert chosen.status == "chosen" and chosen.reason
    assert chosen.name == "fp32" or chosen.drop <= 0.01
    for v in report.variants:
        assert v.latency_ms.keys() == {1, 32} and all(ms > 0 for ms in v.latency_ms.values())
        if v.name not in ("fp32", report.chosen):
            assert v.status == "rejected" and v.reason  # the report says why each lost
    recorded = metadata(tmp_path / "auto" / "mlp.onnx")["onnxfn.quantization"]
    if report.chosen == "fp32":
        assert recorded == "none"
    else:
        assert json.loads(recorded)["mode"] == report.chosen and json.loads(recorded)["requested"] == "auto"
    print(report.table())

    table = report.table()
    assert all(name in table for name in names) and "accuracy" in table and "chosen:" in table
    data = json.loads(report.to_json())
    assert data["chosen"] == report.chosen and len(data["variants"]) == 4 and data["metric"] == "accuracy"
    assert data["variants"][0]["latency_ms"].keys() == {"1", "32"}
    markdown = report.to_markdown()
    assert markdown.count("\n| ") == 5 and "| variant |" in markdown
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert files == {"mlp.quantization.json", "mlp.quantization.md", "mlp.quantization.png"}
    png = (tmp_path / "report" / "mlp.quantization.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_static_calibration_methods(mlp_onnx, digits, tmp_path, method):
    x_train, x_test, _, y_test = digits
    out = tmp_path / "mlp.onnx"
    report = quantize(
        mlp_onnx,
        out,
        mode="static",
        calibration=x_train.reshape(-1, 64)[:128],
        calibrate_method=method,
        per_channel=False,
        eval_data=(x_test.reshape(-1, 64), y_test),
        runs=1,
        progress=False,
    )
    v = report.variant("static")
    assert v.settings["method"] == method and v.settings["per_channel"] is False
    assert v.accuracy >= report.baseline.accuracy - 0.03
    assert json.loads(metadata(out)["onnxfn.quantization"])["method"] == method
