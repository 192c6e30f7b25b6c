"""User errors caught before any TensorFlow work: ``--preprocess`` validation and data-layout advice.

No TensorFlow here (fast): the CLI validates ``--preprocess`` before it loads the model, and the layout
advice is checked on a tiny hand-built ONNX model.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnxfn.converter import ConversionError, quantize
from onnxfn.converter._cli import parse_preprocess

from onnxfn.cli import main


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"scale": 0.5, "size": [8, 8]}', {"scale": 0.5, "size": [8, 8]}),
        ("caffe", "caffe"),
        ('"torch"', "torch"),
        (" none ", "none"),
        (
            '{"vocab": ["a"], "max_len": 4, "lowercase": true}',
            {"vocab": ["a"], "max_len": 4, "lowercase": True},
        ),
    ],
)
def test_preprocess_flag_accepts_known_keys_and_presets(text, expected):
    assert parse_preprocess(text) == expected


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('{"scal": 0.5}', ["--preprocess", "'scal'", "did you mean 'scale'"]),
        ('{"scale": 0.5,}', ["--preprocess is not valid JSON", "preset name"]),
        ("{scale: 0.5}", ["--preprocess is not valid JSON"]),
        ("[1, 2]", ["--preprocess must be a JSON object", "list"]),
        ('"bgr"', ["--preprocess preset 'bgr' is unknown", "caffe"]),
        ('{"inputs": {"image": {"sclae": 1}}}', ["--preprocess \"inputs\" 'image'", "did you mean 'scale'"]),
    ],
)
def test_preprocess_flag_refuses_bad_values(text, needles):
    with pytest.raises(ConversionError) as caught:
        parse_preprocess(text)
    for needle in needles:
        assert needle in str(caught.value)


def test_cli_refuses_unknown_preprocess_key_before_loading(tmp_path, capsys):
    model = tmp_path / "model.keras"
    model.write_bytes(b"not read: the flag is checked first")
    code = main(["convert", str(model), "-o", str(tmp_path / "m.onnx"), "--preprocess", '{"scal": 0.0039}'])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown key 'scal'" in err and "did you mean 'scale'" in err
    assert "Traceback" not in err


def _nhwc_model(path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8, 8, 3])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["output"]),
    ]
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], np.arange(6, dtype=np.float32).tolist())
    graph = helper.make_graph(nodes, "nhwc", [x], [y], initializer=[w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_channels_first_data_gets_transpose_advice(tmp_path):
    _nhwc_model(tmp_path / "nhwc.onnx")
    nchw = np.random.default_rng(0).random((16, 3, 8, 8), dtype=np.float32)
    with pytest.raises(ConversionError) as caught:
        quantize(tmp_path / "nhwc.onnx", tmp_path / "q.onnx", mode="static", calibration=nchw)
    message = str(caught.value)
    assert "x.transpose(0, 2, 3, 1)" in message and "channels-first" in message
    assert "reshape" not in message
    # The advised transpose is right: it makes the data fit.
    quantize(
        tmp_path / "nhwc.onnx",
        tmp_path / "q.onnx",
        mode="static",
        calibration=nchw.transpose(0, 2, 3, 1),
        runs=2,
    )
