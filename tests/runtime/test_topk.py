"""Top-k of class scores: the partition-based ``top_indices`` keeps a stable sort's order, and
``classify`` ranks integer (quantized) scores by value."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from onnxfn.runtime._model import Model, top_indices


@pytest.mark.parametrize("kind", ["normal", "ties", "coarse", "nonfinite", "float16"])
def test_top_indices_is_a_stable_descending_sort(kind):
    rng = np.random.default_rng(abs(hash(kind)) % 2**32)
    for _ in range(2000):
        n = int(rng.integers(1, 2500))
        k = min(int(rng.integers(1, 12)), n)
        if kind == "normal":
            row = rng.standard_normal(n).astype(np.float32)
        elif kind == "ties":  # many equal scores, also at the k-th place
            row = rng.integers(0, 4, n).astype(np.float32)
        elif kind == "coarse":
            row = np.round(rng.standard_normal(n), 1)
        elif kind == "float16":
            row = rng.standard_normal(n).astype(np.float16)
        else:
            row = rng.standard_normal(n).astype(np.float32)
            row[rng.integers(0, n, 3)] = rng.choice([np.nan, np.inf, -np.inf], 3)
        expected = np.argsort(-row, kind="stable")[:k]
        np.testing.assert_array_equal(top_indices(row, k), expected)


def test_classify_ranks_integer_scores_by_value():
    model = Model.__new__(Model)  # classify needs only the labels (from the metadata)
    model.metadata = SimpleNamespace(labels=None)
    scores = np.zeros((1, 300), np.uint8)  # mostly zeros: -0 == 0 sorts first when negated in uint8
    scores[0, 17] = 5
    top = model.classify(scores, top_k=3)[0]
    assert [(p["index"], p["score"]) for p in top] == [(17, 5.0), (0, 0.0), (1, 0.0)]
    signed = model.classify(np.array([[-128, 5, 0, -1]], np.int8), top_k=4)[0]  # -(-128) wraps in int8
    assert [p["index"] for p in signed] == [1, 2, 3, 0]
