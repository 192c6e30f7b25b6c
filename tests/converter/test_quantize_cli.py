"""`onnxfn convert --quantize`, `onnxfn quantize`, input formats, and clear errors (exit 2, cause + fix)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from converter_data import DIGIT_LABELS
from models import DIGITS_PREPROCESS
from onnxfn.converter import ConversionError, convert, quantize

from onnxfn.cli import main

pytestmark = pytest.mark.convert


def quantization(path):
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    raw = props["onnxfn.quantization"]
    return raw if raw == "none" else json.loads(raw)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_with_quantize_static_in_one_command(cnn_keras, digits, tmp_path, capsys):
    x_train, x_test, _, y_test = digits
    np.save(tmp_path / "calib.npy", x_train[:128])
    np.savez(tmp_path / "eval.npz", x=x_test, y=y_test)
    (tmp_path / "labels.txt").write_text("\n".join(DIGIT_LABELS))
    out = tmp_path / "models" / "digits.onnx"
    code, stdout, _ = cli(
        capsys,
        "convert", cnn_keras, "-o", out, "--labels", tmp_path / "labels.txt",
        "--preprocess", json.dumps(DIGITS_PREPROCESS), "--quantize", "static",
        "--calibration", tmp_path / "calib.npy", "--eval-data", tmp_path / "eval.npz",
        "--runs", 2, "--report", tmp_path / "report",
    )  # fmt: skip
    assert code == 0
    assert "parity" in stdout and "chosen: static" in stdout and "max|Δ| vs keras" in stdout
    assert quantization(out)["mode"] == "static" and quantization(out)["calibration_size"] == 128
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert list(manifest["models"]) == ["digits"]  # the fp32 intermediate is not left beside it
    assert sorted(p.suffix for p in (tmp_path / "report").iterdir()) == [".json", ".md", ".png"]


def test_quantize_command_prints_json(mlp_onnx, digits, tmp_path, capsys):
    flat = digits[1].reshape(-1, 64)
    np.save(tmp_path / "eval.npy", flat)
    out = tmp_path / "q" / "mlp.onnx"
    code, stdout, _ = cli(
        capsys, "quantize", mlp_onnx, "-o", out, "--mode", "fp16", "--eval-data", tmp_path / "eval.npy",
        "--runs", 2, "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(stdout)
    assert report["chosen"] == "fp16" and report["metric"] == "agreement"
    assert report["variants"][1]["agreement"] >= 0.995
    assert quantization(out)["mode"] == "fp16"


@pytest.mark.parametrize("fmt", ["h5", "savedmodel"])
def test_h5_and_savedmodel_inputs_convert_and_keep_a_dynamic_batch(
    mlp_keras, mlp_onnx, digits, tmp_path, fmt
):
    import keras

    model = keras.models.load_model(mlp_keras)
    if fmt == "h5":
        source = tmp_path / "mlp.h5"
        model.save(source)
    else:
        source = tmp_path / "mlp_savedmodel"
        model.export(source, verbose=False)
    flat = digits[1].reshape(-1, 64)
    fp32 = tmp_path / "fp32" / "mlp.onnx"
    convert(source, fp32, labels=DIGIT_LABELS, preprocess=DIGITS_PREPROCESS, sample=flat[:32])
    out = tmp_path / "int8" / "mlp.onnx"
    quantize(fp32, out, mode="dynamic", eval_data=flat, runs=1)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    expected = ort.InferenceSession(str(mlp_onnx), providers=["CPUExecutionProvider"]).run(
        None, {"input": flat}
    )[0]
    for batch in (1, 32):
        got = session.run(None, {"input": flat[:batch]})[0]
        assert got.shape == (batch, 10)
        assert np.mean(got.argmax(1) == expected[:batch].argmax(1)) >= 0.9


# -- errors -----------------------------------------------------------------------------------------


def test_missing_file_and_not_a_keras_model(tmp_path, capsys):
    code, _, err = cli(capsys, "convert", tmp_path / "nope.keras", "-o", tmp_path / "m.onnx")
    assert code == 2 and "does not exist" in err
    garbage = tmp_path / "model.keras"
    garbage.write_bytes(b"this is not a zip archive")
    code, _, err = cli(capsys, "convert", garbage, "-o", tmp_path / "m.onnx", "--quantize", "dynamic")
    assert code == 2 and "is not a Keras model" in err
    code, _, err = cli(capsys, "quantize", tmp_path / "nope.onnx", "-o", tmp_path / "q.onnx")
    assert code == 2 and "does not exist" in err
    code, _, err = cli(capsys, "quantize", garbage, "-o", tmp_path / "q.onnx")
    assert code == 2 and "not an .onnx file" in err and "onnxfn convert" in err


def test_a_layer_tf2onnx_cannot_convert_is_named(tmp_path, capsys):
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="onnxfn_tests")
    class LogGamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.lgamma(x)

    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), LogGamma(name="log_gamma"), keras.layers.Dense(2)]
    )
    with pytest.raises(ConversionError, match=r"layer 'log_gamma' \(LogGamma\) uses TensorFlow op Lgamma"):
        convert(model, tmp_path / "a.onnx")
    model.save(tmp_path / "bad.keras")
    code, _, err = cli(capsys, "convert", tmp_path / "bad.keras", "-o", tmp_path / "b.onnx", "--no-check")
    assert code == 2 and "log_gamma" in err and "Lgamma" in err and "outside" in err
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()


def test_calibration_errors_name_the_cause_and_the_fix(cnn_onnx, lstm_onnx, digits, tmp_path, capsys):
    x_train = digits[0]
    np.save(tmp_path / "flat.npy", x_train[:50].reshape(50, 64))
    code, _, err = cli(
        capsys, "quantize", cnn_onnx, "-o", tmp_path / "q.onnx", "--mode", "static", "--calibration",
        tmp_path / "flat.npy",
    )  # fmt: skip
    assert code == 2 and "[50, 64]" in err and "[batch, 8, 8, 1]" in err and "reshape(-1, 8, 8, 1)" in err

    code, _, err = cli(capsys, "quantize", cnn_onnx, "-o", tmp_path / "q.onnx", "--mode", "static")
    assert code == 2 and "static quantization needs calibration data" in err and "--calibration" in err

    code, _, err = cli(capsys, "convert", "m.keras", "-o", tmp_path / "m.onnx", "--calibration", "x.npy")
    assert code == 2 and "--quantize" in err

    with pytest.raises(ConversionError, match="one sample; add a batch axis"):
        quantize(cnn_onnx, tmp_path / "q.onnx", mode="static", calibration=x_train[0])
    with pytest.raises(ConversionError, match="text but the model has no vocabulary"):
        quantize(cnn_onnx, tmp_path / "q.onnx", mode="static", calibration=["some text"])
    with pytest.raises(ConversionError, match="images but the model has no image preprocessing"):
        folder = tmp_path / "imgs"
        folder.mkdir()
        from models import digit_png

        (folder / "a.png").write_bytes(digit_png(x_train[0][..., 0]))
        quantize(lstm_onnx, tmp_path / "q.onnx", mode="static", calibration=folder)
    with pytest.raises(ConversionError, match="has fractions"):
        quantize(lstm_onnx, tmp_path / "q.onnx", mode="static", calibration=np.full((4, 24), 0.5))
    with pytest.raises(ConversionError, match="unknown mode"):
        quantize(cnn_onnx, tmp_path / "q.onnx", mode="int4")
    assert not (tmp_path / "q.onnx").exists()


def test_quantizing_twice_is_refused(mlp_onnx, digits, tmp_path):
    flat = digits[1].reshape(-1, 64)
    once = tmp_path / "once.onnx"
    quantize(mlp_onnx, once, mode="dynamic", eval_data=flat, runs=1)
    with pytest.raises(ConversionError, match="already quantized"):
        quantize(once, tmp_path / "twice.onnx", mode="fp16")
