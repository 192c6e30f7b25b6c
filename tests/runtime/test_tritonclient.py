"""NVIDIA's official ``tritonclient.http`` works unchanged against onnxfn (KServe V2), binary on and off."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as tritonclient_http
from servers import onnxfn_serve
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(digits_dir):
    with onnxfn_serve(digits_dir) as (url, _):
        yield url.removeprefix("http://")


@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_tritonclient(server, digits_data, binary):
    _, x_test, _, y_test = digits_data
    client = tritonclient_http.InferenceServerClient(url=server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits")
    meta = client.get_model_metadata("digits")
    assert meta["inputs"][0]["datatype"] == "FP32"
    x = x_test[:16, :, :, None].astype(np.float32)
    inp = tritonclient_http.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = tritonclient_http.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer("digits", [inp], outputs=[out], request_id="r1")
    probs = result.as_numpy("probabilities")
    assert probs.shape == (16, 10)
    assert np.mean(np.argmax(probs, axis=1) == y_test[:16]) >= 0.8
    assert result.get_response()["id"] == "r1"
    client.close()


def test_tritonclient_versioned_and_errors(server):
    client = tritonclient_http.InferenceServerClient(url=server)
    assert client.is_model_ready("digits", model_version="1")
    inp = tritonclient_http.InferInput("input", [1, 8, 8], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 8, 8), np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("digits", [inp])
    assert "expected [-1, 8, 8, 1]" in str(err.value)
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("nope")
    assert "unknown model" in str(err.value)
    client.close()
