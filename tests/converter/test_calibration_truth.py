"""Calibration and the quantization report tell the truth (issue #13, item 8).

The user's scenario: a digits CNN whose preprocessing is ``scale 1/255``, quantized with raw 0–255 pixels as
calibration. It used to give an int8 model with ~54% held-out accuracy while the report printed "agreement
100%" (measured on the calibration samples themselves). Now the raw pixels are preprocessed like the runtime
does (and the report says so), the report measures on data it did not calibrate on, and an explicit mode
that is slower than allowed is warned about. ``auto`` gives the same answer run after run.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

pytestmark = pytest.mark.convert


@pytest.fixture(scope="module")
def raw_digits(digits):
    """Digits as raw 8-bit pixels (0–255), the way a user holds images before preprocessing."""
    x_train, x_test, y_train, y_test = digits
    to_pixels = lambda x: np.round(x * (255 / 16)).astype(np.uint8)  # noqa: E731
    return to_pixels(x_train), to_pixels(x_test), y_train, y_test


@pytest.fixture(scope="module")
def cnn_1_255(raw_digits, tmp_path_factory, keras_seed):
    """A CNN trained on pixels / 255 (no rescaling inside), converted with the default preprocessing."""
    import keras
    from keras import layers
    from onnxfn.converter import convert

    keras.utils.set_random_seed(0)  # the same model whichever tests ran before in the session
    x_train, _, y_train, _ = raw_digits
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train / 255.0, y_train, epochs=15, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("truth") / "digits.onnx"
    report = convert(model, path, labels=[str(i) for i in range(10)])
    assert report.preprocess["scale"] == pytest.approx(1 / 255)  # the runtime divides by 255
    return path


def accuracy(path, x, y) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    return float(np.mean(scores.argmax(1) == y))


def test_raw_pixel_calibration_is_preprocessed_and_the_report_says_so(cnn_1_255, raw_digits, tmp_path):
    from onnxfn.converter import quantize

    x_train, x_test, _, y_test = raw_digits
    out = tmp_path / "static.onnx"
    report = quantize(
        cnn_1_255,
        out,
        mode="static",
        calibration=x_train[:300],
        eval_data=(x_test, y_test),
        runs=3,
        progress=False,
    )
    fp32, static = report.baseline, report.variant("static")
    assert fp32.accuracy > 0.9
    assert static.accuracy >= fp32.accuracy - 0.03  # not the silent 54% model any more
    assert any("raw pixels" in note and "uint8" in note for note in report.notes)
    assert "note: calibration data for input" in report.table()
    # The report's numbers are the model's real numbers, on the held-out digits scaled like the runtime does.
    assert accuracy(out, x_test / 255.0, y_test) == pytest.approx(static.accuracy, abs=1e-9)
    assert accuracy(cnn_1_255, x_test / 255.0, y_test) == pytest.approx(fp32.accuracy, abs=1e-9)


def test_without_eval_data_agreement_is_measured_on_held_out_calibration(cnn_1_255, raw_digits, tmp_path):
    from onnxfn.converter import quantize

    x_train, x_test, _, y_test = raw_digits
    pixels = x_train[:300].astype(np.float64)  # whole numbers 0..255, but float: still raw pixels
    report = quantize(
        cnn_1_255, tmp_path / "s.onnx", mode="static", calibration=pixels, runs=2, progress=False
    )
    assert report.eval_source == "held-out calibration" and not report.labelled
    assert report.eval_samples == 75 and report.calibration_samples == 225  # 25% held out, never calibrated
    assert any("held out from calibration" in w for w in report.warnings)
    assert "measured on 75 held-out calibration samples" in report.table()
    assert report.variant("static").agreement >= 0.95
    assert accuracy(tmp_path / "s.onnx", x_test / 255.0, y_test) > 0.85

    # Beyond calibration_samples, the rest is held out (up to 512): calibration gets exactly what was asked.
    report = quantize(
        cnn_1_255,
        tmp_path / "t.onnx",
        mode="static",
        calibration=np.concatenate([x_train, x_test]),
        calibration_samples=100,
        runs=1,
        progress=False,
    )
    assert report.calibration_samples == 100 and report.eval_samples == 512


def test_eval_samples_that_also_calibrated_are_left_out(cnn_1_255, raw_digits, tmp_path):
    from onnxfn.converter import quantize

    x_train, x_test, y_train, y_test = raw_digits
    mixed = (np.concatenate([x_train[:100], x_test]), np.concatenate([y_train[:100], y_test]))
    report = quantize(
        cnn_1_255, tmp_path / "m.onnx", mode="static", calibration=x_train[:200], eval_data=mixed, runs=1
    )
    assert any("of the" in w and "were also used to calibrate: left out" in w for w in report.warnings)
    assert report.eval_samples <= len(x_test) and report.labelled


def test_values_the_runtime_never_feeds_are_refused(cnn_1_255, raw_digits, tmp_path):
    from onnxfn.converter import ConversionError, quantize

    x_train = raw_digits[0][:100].astype(np.float32)
    with pytest.raises(ConversionError, match=r"ranges -0\.5\.\.254\.5.*runtime feeds this model 0\.\.1"):
        quantize(cnn_1_255, tmp_path / "q.onnx", mode="static", calibration=x_train - 0.5)
    with pytest.raises(ConversionError, match=r"ranges 0\.\.300"):
        quantize(cnn_1_255, tmp_path / "q.onnx", mode="static", calibration=x_train * (300 / 255))
    # Already preprocessed data (0..1) is taken as it is, without a note.
    report = quantize(
        cnn_1_255, tmp_path / "ok.onnx", mode="static", calibration=x_train / 255, runs=1, progress=False
    )
    assert report.notes == []


def test_explicit_mode_slower_than_allowed_is_warned_about(cnn_1_255, raw_digits, tmp_path, capsys):
    from onnxfn.cli import main

    _, x_test, _, y_test = raw_digits
    np.savez(tmp_path / "eval.npz", x=x_test, y=y_test)
    # fp16 on the CPU provider adds Cast nodes: it cannot be twice as fast as fp32.
    code = main(
        [
            "quantize",
            str(cnn_1_255),
            "-o",
            str(tmp_path / "half.onnx"),
            "--mode",
            "fp16",
            "--eval-data",
            str(tmp_path / "eval.npz"),
            "--max-latency-ratio",
            "0.5",
            "--runs",
            "5",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "WARNING: fp16 is" in captured.out and "slower than fp32 at batch 32" in captured.out
    assert "onnxfn quantize: warning: fp16 is" in captured.err
    assert main(["quantize", str(cnn_1_255), "-o", str(tmp_path / "x.onnx"), "--max-latency-ratio", "0"]) == 2
    assert "max_latency_ratio is a ratio" in capsys.readouterr().err


def test_auto_makes_the_same_choice_three_runs_in_a_row(cnn_1_255, raw_digits, tmp_path):
    from onnxfn.converter import quantize

    x_train, x_test, _, y_test = raw_digits
    choices, reports = [], []
    for i in range(3):
        # The limit sits between the variants: fp16 runs at 1.02–1.09× fp32 on this model and static int8
        # at 1.3–1.7× (2-core x86 host). At the default 1.1 fp16 sits within noise of the limit, and on a
        # loaded host one run in many found it slower: a check on the host's load, not on the procedure.
        report = quantize(
            cnn_1_255,
            tmp_path / f"auto{i}.onnx",
            mode="auto",
            calibration=x_train[:200],
            eval_data=(x_test, y_test),
            max_latency_ratio=1.2,
            progress=False,
        )
        choices.append(report.chosen)
        reports.append(report)
    assert choices[0] == choices[1] == choices[2], [r.table() for r in reports]
    report = reports[-1]
    for v in report.variants:
        if v.status != "failed":
            low, median, high = v.latency_ratio[32]
            assert low <= median <= high
    assert "latency is <= 1.20x fp32" in report.table()  # the limit it was given
    import inspect

    assert inspect.signature(quantize).parameters["max_latency_ratio"].default == 1.1  # the default stays
