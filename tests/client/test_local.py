"""Client.local: the runtime's own code in process."""

from __future__ import annotations

from onnxfn.client import Client


def test_local_reuses_the_runtime_preprocessing(models_dir, digit_pngs, monkeypatch):
    """Client.local runs the runtime's own Model.prepare/run/classify (no copy of preprocessing)."""
    from onnxfn.runtime._model import Model

    calls = {"prepare": 0, "classify": 0}
    real_prepare, real_classify = Model.prepare, Model.classify

    def prepare(self, instances):
        calls["prepare"] += 1
        return real_prepare(self, instances)

    def classify(self, scores, top_k=5):
        calls["classify"] += 1
        return real_classify(self, scores, top_k)

    monkeypatch.setattr(Model, "prepare", prepare)
    monkeypatch.setattr(Model, "classify", classify)
    local = Client.local(models_dir / "digits.onnx")
    local.predict(digit_pngs[0])
    local.predict_batch(digit_pngs[:10], batch_size=5)
    assert calls == {"prepare": 3, "classify": 3}
