"""The ``keras.applications`` catalogue: every architecture converts, passes parity, and quantizes.

Random weights (``weights=None``: nothing can be downloaded) at the smallest input each constructor
allows. BatchNormalization statistics are set from 256 real photographs first, as a trained model's
match its data, so activations have realistic magnitudes: with the default statistics they decay towards
zero in most nets (any parity check passes trivially) and explode in EfficientNets (logits in the
thousands, so chaotic that float32 rounding alone moves them by percents: no check can pass). With
data-matched statistics every architecture must pass the converter's own parity check, as a user gets it:
some untrained EfficientNets stay chaotic on some images and pass through its float64 reference (ONNX no
further from a float64 Keras run than Keras float32 is). ``make test`` runs the ``FAST`` subset (marked
``convert``); ``make test-models`` runs the whole catalogue (marked ``models``, deselected unless ``-m``
names it).
"""

from __future__ import annotations

import numpy as np
import pytest
from catalogue import (
    FAST,
    PARAMS_M,
    build,
    by_size,
    inputs_for,
    min_size,
    names,
    real_images,
    realistic_batchnorm,
)
from onnxfn.converter import convert, quantize
from onnxfn.converter._float64 import float64_check

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # fp16: tiny weights truncated to 1e-7

ALL = by_size(PARAMS_M)  # listed statically: collecting must not import TensorFlow (`make test-fast`)
PARAMS = [
    pytest.param(
        name, marks=[pytest.mark.convert] if name in FAST else [pytest.mark.convert, pytest.mark.models]
    )
    for name in ALL
]


@pytest.mark.convert
def test_catalogue_is_the_installed_one():
    """The static list is exactly what this Keras exports: a new architecture must be added to it."""
    import keras

    assert set(FAST) <= set(ALL)
    assert sorted(ALL) == names(), f"keras {keras.__version__}: update catalogue.PARAMS_M"


@pytest.mark.parametrize("name", PARAMS)
def test_application_converts_and_quantizes(name, tmp_path):
    size = min_size(name)
    model = build(name, size, classes=10)
    realistic_batchnorm(model, name, size)
    sample = inputs_for(name, real_images(size, 8, seed=1))
    calibration = inputs_for(name, real_images(size, 32, seed=0))
    held_out = inputs_for(name, real_images(size, 16, seed=2))

    fp32 = tmp_path / f"{name}.onnx"
    report = convert(model, fp32, task="tensor", sample=sample)  # the converter's own parity check
    assert report.max_abs_output < 1e3, "logits this large: BN statistics do not match the data"
    expected = np.asarray(model(held_out, training=False))
    assert np.std(expected) > 1e-3, "outputs do not vary: parity would prove nothing"
    # Independently, on held-out images: ONNX within the default tolerance of Keras, or as close to the
    # exact (float64) result as Keras float32 is, by the converter's own float64 reference.
    got = _onnx(fp32, held_out)
    tolerance = 1e-4 + 5e-4 * float(np.abs(expected).max())
    if float(np.max(np.abs(got - expected))) > tolerance:
        reference = float64_check(model, [held_out], [expected], [got])
        assert reference is not None and reference.accepted, reference

    auto = quantize(
        fp32, tmp_path / f"{name}-auto.onnx", mode="auto", calibration=calibration, eval_data=held_out, runs=2
    )
    variants = {v.name: v for v in auto.variants}
    for mode in ("static", "dynamic", "fp16"):
        assert variants[mode].status != "failed", f"{mode}: {variants[mode].reason}"
        assert variants[mode].size_bytes < variants["fp32"].size_bytes
    assert variants["static"].quantized_ops, "static int8 quantized nothing"
    assert auto.chosen in variants and variants[auto.chosen].status == "chosen"
    for mode in ("static", "dynamic", "fp16"):
        assert np.isfinite(variants[mode].max_abs_diff), mode
    # Quantized accuracy is not asserted here: random nets are chaotic (EfficientNetB0's logits move by 1% of
    # their range for 1e-3 of input noise; even fp16 moves them by a third), so it says nothing about trained
    # models. tests/converter/test_quantize_*.py measure accuracy on trained ones; the benchmark reports it.


def _onnx(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]
