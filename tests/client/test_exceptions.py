"""The error types: fields, messages, pickling (errors cross process pools), BatchError."""

from __future__ import annotations

import pickle

from onnxfn.client import APIConnectionError, APITimeoutError, BatchError, OnnxfnError, PayloadTooLargeError
from onnxfn.client._exceptions import error_from_response


def test_errors_pickle_and_keep_their_fields():
    err = error_from_response(
        413,
        {"x-amzn-requestid": "abc"},
        b'{"message":"Request Too Long"}',
        method="POST",
        url="https://x/predict",
    )
    assert isinstance(err, PayloadTooLargeError)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is PayloadTooLargeError and copy.status == 413 and copy.request_id == "abc"
    assert str(copy) == str(err) and "Request Too Long" in str(err) and "POST https://x/predict" in str(err)
    timeout = pickle.loads(pickle.dumps(APITimeoutError("slow", idempotency_key="k")))
    assert isinstance(timeout, APIConnectionError) and timeout.idempotency_key == "k"


def test_batch_error_says_what_finished_and_pickles():
    first = error_from_response(500, {"x-request-id": "r5"}, b'{"error": "boom"}', method="POST", url="u")
    err = BatchError.from_run({0: "p0", 1: "p1"}, {2: first, 4: ValueError("bad")}, count=6)
    assert isinstance(err, OnnxfnError) and err.index == 2 and err.error is first
    text = str(err)
    assert "item 2" in text and "boom" in text and "2 of 6" in text and "2 were not sent" in text
    assert ".results" in text and ".errors" in text
    copy = pickle.loads(pickle.dumps(err))
    assert copy.results == {0: "p0", 1: "p1"} and set(copy.errors) == {2, 4} and copy.index == 2
