"""infer() over KServe V2 with the binary extension: against onnxfn, in process, and Triton's wire format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton_http
from onnxfn.client import Client, NotFoundError
from onnxfn.client._v2 import decode_infer_response, encode_infer_request


def _reference(models_dir, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(models_dir / "digits.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_against_the_server(client, digits_data, models_dir, binary):
    _, x_test, _, _ = digits_data
    x = x_test[:16, :, :, None].astype(np.float32)
    out = client.infer({"input": x}, model="digits", binary=binary)
    assert set(out) == {"probabilities"} and out["probabilities"].dtype == np.float32
    np.testing.assert_allclose(out["probabilities"], _reference(models_dir, x), rtol=1e-6)


def test_infer_defaults_outputs_versions_and_errors(client, local, digits_data):
    _, x_test, _, _ = digits_data
    x = x_test[:4, :, :, None].astype(np.float32)
    # default model, bare array to its first input, a named output, an explicit version
    y = client.infer(x)["probabilities"]
    assert y.shape == (4, 10)
    y2 = client.infer({"input": x}, outputs=["probabilities"], version="1")["probabilities"]
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_allclose(local.infer(x, model="digits")["probabilities"], y, rtol=1e-6)
    with pytest.raises(NotFoundError):
        client.infer({"input": x}, version="7")
    d = client.infer({"x": np.ones((2, 3), np.float32)}, model="dot3")["y"]
    assert d.tolist() == [[6.0], [6.0]]


def test_request_matches_tritonclient_byte_for_byte(digits_data):
    _, x_test, _, _ = digits_data
    x = x_test[:3, :, :, None].astype(np.float32)
    words = np.array([b"good", b"bad film"], dtype=np.object_)
    for inputs in ({"input": x}, {"input": x, "words": words}):
        theirs_inputs = []
        for name, array in inputs.items():
            dtype = "BYTES" if array.dtype == np.object_ else "FP32"
            item = triton_http.InferInput(name, list(array.shape), dtype)
            item.set_data_from_numpy(array, binary_data=True)
            theirs_inputs.append(item)
        theirs, their_len = triton_http.InferenceServerClient.generate_request_body(theirs_inputs)
        ours, our_len = encode_infer_request(inputs)
        assert json.loads(ours[:our_len]) == json.loads(theirs[:their_len])
        assert ours[our_len:] == theirs[their_len:]


def test_decodes_triton_style_answers(stub):
    """A Triton-shaped binary answer (FP32 + BYTES outputs) decodes as tritonclient decodes it."""
    probs = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    names = np.array([b"cat", b"dog"], dtype=np.object_)
    raw_probs = probs.tobytes()
    raw_names = b"".join(len(n).to_bytes(4, "little") + n for n in names)
    header = json.dumps(
        {
            "model_name": "m",
            "model_version": "1",
            "outputs": [
                {
                    "name": "probs",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "parameters": {"binary_data_size": 24},
                },
                {
                    "name": "names",
                    "datatype": "BYTES",
                    "shape": [2],
                    "parameters": {"binary_data_size": len(raw_names)},
                },
            ],
        }
    ).encode()
    body = header + raw_probs + raw_names
    theirs = triton_http.InferResult.from_response_body(body, header_length=len(header))
    _, ours = decode_infer_response(body, len(header))
    np.testing.assert_array_equal(ours["probs"], theirs.as_numpy("probs"))
    assert list(ours["names"]) == list(theirs.as_numpy("names"))

    s = stub(
        lambda seen, n: (
            (
                200,
                {
                    "content-type": "application/octet-stream",
                    "inference-header-content-length": str(len(header)),
                },
                body,
            )
            if seen.path.endswith("/infer")
            else (404, {}, b'{"error": "Not Found"}')
        )
    )
    with Client(s.url) as c:
        out = c.infer({"x": np.zeros((2, 3), np.float32)}, model="m")
        seen = s.seen[-1]
        assert seen.path == "/v2/models/m/infer"
        assert int(seen.headers["inference-header-content-length"]) < len(seen.body)
        with pytest.raises(ValueError, match="model="):
            c.infer({"x": np.zeros((2, 3), np.float32)})  # no /v1/models on Triton: name the model
    np.testing.assert_array_equal(out["probs"], probs)
    assert list(out["names"]) == [b"cat", b"dog"]


def test_models_falls_back_to_triton_repository_index(stub):
    index = json.dumps([{"name": "resnet", "version": "1", "state": "READY"}]).encode()
    s = stub(lambda seen, n: (200, {}, index) if seen.path == "/v2/repository/index" else (404, {}, b"{}"))
    with Client(s.url) as c:
        assert c.models() == [{"name": "resnet", "version": "1", "state": "READY"}]
