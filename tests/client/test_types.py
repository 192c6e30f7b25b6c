"""Results: Prediction and BatchResult."""

from __future__ import annotations

from onnxfn.client import BatchResult, Label, Prediction


def test_prediction_and_batch_result_reprs():
    p = Prediction.from_scores(
        [{"label": "cat", "index": 3, "score": 0.91}, {"label": "dog", "index": 1, "score": 0.05}],
        model="pets",
        version="2",
        request_id="r1",
    )
    assert p.label == "cat" and p.index == 3 and p.top_k[1] == Label("dog", 1, 0.05)
    assert repr(p) == "Prediction(label='cat', score=0.9100, top_k=['cat': 0.91, 'dog': 0.05], model='pets')"
    result = BatchResult([p, ValueError("x"), p], requests=2, elapsed=0.5)
    assert repr(result) == "BatchResult(3 items: 2 ok, 1 failed; 2 requests in 0.50 s, 6/s)"
    assert result.labels == ["cat", None, "cat"] and list(result.errors) == [1] and not result.ok
