"""The shared V2 wire codec (onnxfn._wire): round trips, and only WireError out of any body."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnxfn.client._v2 import decode_infer_response, encode_infer_request

from onnxfn._wire import DATATYPES, WireError, decode_tensor, encode_tensor, join_body, split_body

SAMPLES = {
    "BOOL": np.array([[True, False]]),
    "UINT8": np.array([0, 255], dtype=np.uint8),
    "INT64": np.array([[-(2**63), 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([1.5, -2.0], dtype=np.float16),
    "FP32": np.arange(6, dtype=np.float32).reshape(2, 3),
    "FP64": np.array([1e300], dtype=np.float64),
    "BYTES": np.array(["a", "ünï", ""], dtype=object),
}


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_every_datatype_round_trips(datatype, binary):
    array = SAMPLES[datatype]
    entry, raw = encode_tensor("x", array, datatype, binary=binary)
    body, length = join_body({"outputs": [entry]}, [raw] if binary else [])
    header, section = split_body(body, length)
    name, back, used = decode_tensor(header["outputs"][0], section, text=True)
    assert name == "x" and used == len(raw) and back.shape == array.shape
    assert back.tolist() == array.tolist() and (datatype == "BYTES" or back.dtype == DATATYPES[datatype])


def test_client_request_and_answer_use_the_same_codec():
    body, length = encode_infer_request(
        {"a": np.ones((2, 2), np.float32), "t": np.array(["x", "yz"], object)}
    )
    header, section = split_body(body, length)
    offset = 0
    for item in header["inputs"]:
        _, _, used = decode_tensor(item, section[offset:])
        offset += used
    assert offset == len(section)


def test_truncated_bytes_answer_is_a_wire_error_not_struct_error():
    entry = {"name": "y", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 6}}
    body, length = join_body({"outputs": [entry]}, [struct.pack("<I", 1) + b"a" + b"\x05"])
    with pytest.raises(WireError, match="truncated BYTES"):
        decode_infer_response(body, length)
    entry["parameters"]["binary_data_size"] = 5
    body, length = join_body({"outputs": [entry]}, [struct.pack("<I", 9) + b"a"])
    with pytest.raises(WireError, match="overruns"):
        decode_infer_response(body, length)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(-5, 250), st.text(max_size=5)))
def test_any_bytes_give_an_answer_or_a_wire_error(body, length):
    try:
        decode_infer_response(body, length)
    except WireError:
        pass


_entry = st.fixed_dictionaries(
    {
        "name": st.one_of(st.text(max_size=3), st.integers()),
        "datatype": st.sampled_from([*DATATYPES, "NOPE", 3]),
        "shape": st.one_of(st.lists(st.integers(-1, 4), max_size=3), st.text(max_size=2)),
    },
    optional={
        "data": st.one_of(
            st.lists(
                st.one_of(st.integers(-300, 300), st.floats(), st.text(max_size=3), st.booleans()), max_size=8
            ),
            st.text(max_size=3),
        ),
        "parameters": st.one_of(
            st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-2, 40), st.text(max_size=2))}),
            st.none(),
        ),
    },
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entry, min_size=1, max_size=3), st.binary(max_size=40))
def test_any_answer_header_gives_arrays_or_a_wire_error(entries, section):
    header = {"outputs": entries}
    body, _ = join_body(header, [])
    try:
        decode_infer_response(body + section, len(body) if section else None)
    except WireError:
        pass
