"""RoBERTa-style text classifiers (keras-hub, byte-level BPE tokenizer): converted, then served on raw text
through the Lambda handler, ``onnxfn serve`` over real HTTP and ``Client.local``, with Keras' own
``predict`` on the same texts as truth. The vocabulary and merges are trained here (tests/bpe_data.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
from bpe_data import CORPUS, ROBERTA_SPECIAL, TRAIN, train_bpe
from servers import onnxfn_serve
from test_text_models import fit_briefly, lambda_handler, served_scores

pytestmark = pytest.mark.convert

SEQUENCE_LENGTH = 24
# The varied corpus minus its longest entries (kept: one over-long text), plus texts near the topics.
ODD = ["some text", *[t for t in CORPUS if len(t) < 200], CORPUS[-1], "Goal! The striker's penalty won't do."]


@pytest.fixture(scope="module")
def roberta(text_corpus, keras_seed):
    """A 2-layer RoBERTa classifier (built from a config: no download) with BPE merges trained on the
    corpus, fitted for a few steps so its scores differ from text to text."""
    import keras

    keras_hub = pytest.importorskip("keras_hub")  # the dev extra; keras-hub needs tensorflow-text
    keras.utils.set_random_seed(0)
    train_texts, train_y, *_ = text_corpus
    vocabulary, merges = train_bpe([*train_texts[:400], *TRAIN], merges=300, special=ROBERTA_SPECIAL)
    tokenizer = keras_hub.models.RobertaTokenizer(vocabulary=vocabulary, merges=merges)
    preprocessor = keras_hub.models.RobertaTextClassifierPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    backbone = keras_hub.models.RobertaBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=SEQUENCE_LENGTH,
    )
    model = keras_hub.models.RobertaTextClassifier(backbone, num_classes=4, preprocessor=preprocessor)
    return fit_briefly(model, train_texts, train_y)


@pytest.fixture(scope="module")
def converted(roberta, text_corpus, tmp_path_factory):
    from onnxfn.converter import convert

    names = text_corpus[-1]
    folder = tmp_path_factory.mktemp("roberta")
    report = convert(roberta, folder / "reviews.onnx", labels=names)
    return folder, report


@pytest.fixture(scope="module")
def truth(roberta, text_corpus):
    """(texts, Keras scores): ``predict`` runs keras-hub's preprocessor the way training did (tf.data)."""
    texts = list(text_corpus[2][:16]) + ODD
    scores = np.asarray(roberta.predict(texts, verbose=0))
    assert np.ptp(scores[:, 0]) > 1e-2  # the scores really vary: equality below means something
    return texts, scores


def test_roberta_classifier_converts_with_its_bpe_tokenizer(roberta, converted):
    _, report = converted
    assert report.task == "text-classification"
    assert [i["name"] for i in report.inputs] == ["token_ids"]
    spec = report.preprocess
    tokenizer = roberta.preprocessor.tokenizer
    assert spec["tokenizer"] == "bpe" and spec["max_len"] == SEQUENCE_LENGTH
    assert (spec["cls"], spec["sep"], spec["pad"]) == ("<s>", "</s>", "<pad>")
    assert spec["vocab"] == sorted(tokenizer.vocabulary, key=tokenizer.vocabulary.get)
    assert spec["merges"] == list(tokenizer.merges) and len(spec["merges"]) == 300
    assert spec["special"] == list(tokenizer.unsplittable_tokens)  # keras-hub's order: it splits in turn
    assert set(spec["special"]) == {"<s>", "</s>", "<pad>", "<mask>"} and spec["add_prefix_space"] is False
    assert any(note.startswith("bpe tokenizer (") for note in report.notes)
    assert any(note.startswith("text parity: max |served - keras|") for note in report.notes)


def test_served_on_lambda_and_client_local_like_keras(converted, truth, text_corpus):
    from onnxfn.client import Client

    folder, _ = converted
    names = text_corpus[-1]
    texts, want = truth
    got = served_scores(lambda_handler(folder), texts, len(names))
    np.testing.assert_allclose(got, want, atol=1e-5)
    with Client.local(folder / "reviews.onnx") as client:
        for text, row in zip(texts, want, strict=True):
            p = client.predict(text, top_k=len(names))
            assert p.label == names[int(np.argmax(row))]
            assert p.score == pytest.approx(float(np.max(row)), abs=1e-5)


@pytest.mark.slow
def test_served_over_http_like_keras(converted, truth, text_corpus):
    """``onnxfn serve`` in a subprocess on 127.0.0.1: the friendly JSON API and the HTTP client."""
    from onnxfn.client import Client

    folder, _ = converted
    names = text_corpus[-1]
    texts, want = truth
    with onnxfn_serve(folder / "reviews.onnx") as (url, _):
        body = {"instances": texts, "top_k": len(names)}
        response = requests.post(f"{url}/v1/models/reviews:predict", json=body, timeout=60)
        assert response.status_code == 200, response.text
        got = np.zeros_like(want)
        for i, top in enumerate(response.json()["predictions"]):
            for entry in top:
                got[i, entry["index"]] = entry["score"]
        np.testing.assert_allclose(got, want, atol=1e-5)
        with Client(url) as client:
            for text in ("some text", *texts[:3]):
                row = want[texts.index(text)]
                p = client.predict(text, top_k=len(names))
                assert p.label == names[int(np.argmax(row))]
                assert p.score == pytest.approx(float(np.max(row)), abs=1e-5)


def test_backbone_without_preprocessor_takes_a_bpe_folder(roberta, truth, tmp_path, capsys):
    """A model saved without its preprocessor: ``--tokenizer`` names keras-hub's tokenizer assets."""
    import keras
    from onnxfn.converter import ConversionError, convert
    from onnxfn.runtime import load_models

    from onnxfn.cli import main

    bare = keras.Model(roberta.inputs, roberta.outputs)
    with pytest.raises(ConversionError, match=r"BPE folder with vocabulary\.json and merges\.txt"):
        convert(bare, tmp_path / "bare.onnx")
    path = tmp_path / "bare.keras"
    bare.save(path)
    assets = tmp_path / "tokenizer"
    assets.mkdir()
    roberta.preprocessor.tokenizer.save_assets(str(assets))  # vocabulary.json, merges.txt
    out = tmp_path / "served" / "bare.onnx"
    code = main(
        ["convert", str(path), "-o", str(out), "--tokenizer", str(assets), "--preprocess", '{"max_len": 24}']
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "text-classification" in printed and "bpe tokenizer" in printed
    # keras-hub swaps its unsplittable tokens for "ĴA", "ĴB", … in the order of a Python set (varies from
    # process to process): a folder cannot say it, so the text typing those stand-ins is left out here.
    texts, want = truth
    keep = ["Ĵ" not in t for t in texts]
    texts, want = [t for t, k in zip(texts, keep, strict=True) if k], want[keep]
    served = load_models(out.parent).get("bare")
    got = served.run(served.feeds(texts))[served.outputs[0].name]
    np.testing.assert_allclose(got, want, atol=1e-5)
    (tmp_path / "empty").mkdir()
    code = main(["convert", str(path), "-o", str(out), "--tokenizer", str(tmp_path / "empty")])
    assert code != 0 and "needs vocabulary.json" in capsys.readouterr().err


def test_grain_users_are_warned_about_keras_hubs_eager_bpe_path(roberta, tmp_path, monkeypatch):
    """With grain installed, keras-hub's fit/predict tokenize through its eager path (other ids)."""
    from onnxfn.converter import _textmodels, convert

    monkeypatch.setattr(_textmodels, "_grain_installed", lambda: True)
    report = convert(roberta, tmp_path / "g.onnx", check=False)
    assert any(w.startswith("grain is installed: keras-hub then fits") for w in report.warnings)
    monkeypatch.setattr(_textmodels, "_grain_installed", lambda: False)
    report = convert(roberta, tmp_path / "g.onnx", check=False)
    assert not any("grain" in w for w in report.warnings)


def test_saved_roberta_classifier_converts_from_its_file(roberta, tmp_path):
    from onnxfn.converter import convert

    path = tmp_path / "roberta.keras"
    roberta.save(path)
    report = convert(path, tmp_path / "file.onnx")
    assert report.task == "text-classification" and report.preprocess["tokenizer"] == "bpe"
    assert report.preprocess["merges"] == list(roberta.preprocessor.tokenizer.merges)
    served = json.loads(json.dumps(report.preprocess))  # the metadata is plain JSON
    assert served == report.preprocess
