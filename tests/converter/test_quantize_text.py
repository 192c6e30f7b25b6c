"""Text models: Embedding + LSTM (token ids) and bag-of-words/TF-IDF (dense), on a generated corpus.

The vocabulary and settings travel in ``onnxfn.preprocess``; the runtime's TextPreprocessor must give the very
vectors Keras' TextVectorization gave in training, so raw text classifies the same after conversion.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from converter_data import MAX_LEN
from models import first_output
from onnxfn.converter import quantize, text_preprocess
from onnxfn.runtime import load_models
from onnxfn.runtime.preprocess import TextPreprocessor

pytestmark = pytest.mark.convert

TRICKY = [
    "The TEAM's goal, in the FINAL!!! (really)",
    "ÉTÉ été Café café CRÈME — naïve",  # TF lowercases ASCII only: "ÉtÉ" stays apart from "été"
    "tabs\tand\nnewlines  and   spaces",
    "nbsp\u00a0joins em\u2003space",  # TF splits on ASCII whitespace only
    "unknownword anotherunknown the the the",
    "",
    "a",
]


@pytest.mark.parametrize(
    ("mode", "ngrams", "standardize"),
    [
        ("int", None, "lower_and_strip_punctuation"),
        ("int", 2, "lower"),
        ("multi_hot", None, "lower_and_strip_punctuation"),
        ("count", 2, "strip_punctuation"),
        ("tf_idf", 2, "lower_and_strip_punctuation"),
        ("tf_idf", 3, None),
    ],
)
def test_text_preprocessor_matches_keras_text_vectorization(text_corpus, mode, ngrams, standardize):
    from keras import layers

    train_texts, *_ = text_corpus
    corpus = [*train_texts[:300], *TRICKY[:5]]
    kwargs = {"output_sequence_length": 12} if mode == "int" else {}
    vectorizer = layers.TextVectorization(
        max_tokens=150, output_mode=mode, ngrams=ngrams, standardize=standardize, **kwargs
    )
    vectorizer.adapt(corpus)
    spec = text_preprocess(vectorizer)
    texts = [*train_texts[300:400], *TRICKY]
    expected = np.asarray(vectorizer(texts))
    got = TextPreprocessor(spec, dtype=np.float32 if mode != "int" else np.int64)(texts)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_lstm_text_classifier_dynamic_int8(lstm_bundle, lstm_onnx, text_corpus, tmp_path):
    vectorizer, model, spec = lstm_bundle
    _, _, test_texts, test_y, names = text_corpus
    assert spec["max_len"] == MAX_LEN and spec["vocab"][:2] == ["", "[UNK]"]
    keras_scores = np.asarray(model(np.asarray(vectorizer(test_texts)), training=False))
    assert np.mean(keras_scores.argmax(1) == test_y) > 0.85  # it learned the topics

    # fp32: raw text through the runtime == Keras (TextVectorization + model).
    served = load_models(lstm_onnx).get("lstm")
    np.testing.assert_allclose(first_output(served, test_texts[:50]), keras_scores[:50], atol=1e-5)
    assert (
        served.classify(first_output(served, ["the striker scored a goal in the final"]))[0][0]["label"]
        == "sports"
    )

    out = tmp_path / "models" / "lstm.onnx"
    tsv = tmp_path / "eval.tsv"
    tsv.write_text(
        "".join(f"{names[y]}\t{t}\n" for t, y in zip(test_texts, test_y, strict=True)), encoding="utf-8"
    )
    report = quantize(lstm_onnx, out, mode="dynamic", eval_data=tsv, reference=model, runs=2)
    v = report.variant("dynamic")
    assert report.labelled and report.eval_samples == len(test_texts)
    assert v.quantized_ops.get("LSTM") == 1 and v.quantized_ops.get("Gather") == 1  # LSTM + embedding
    assert "DynamicQuantizeLSTM" in {n.op_type for n in onnx.load(str(out)).graph.node}
    assert v.agreement >= 0.97 and v.accuracy >= report.baseline.accuracy - 0.02
    assert v.size_bytes < 0.5 * report.baseline.size_bytes

    quantized = load_models(out.parent).get("lstm")
    assert quantized.metadata.preprocess == json.loads(json.dumps(spec))  # vocab, max_len... travelled along
    assert quantized.metadata.quantization["mode"] == "dynamic"
    scores = first_output(quantized, test_texts[:32])  # batch 32
    assert scores.shape == (32, len(names)) and first_output(quantized, test_texts[:1]).shape == (
        1,
        len(names),
    )
    assert np.mean(scores.argmax(1) == keras_scores[:32].argmax(1)) >= 0.9

    # fp16 of a Keras LSTM graph loads and agrees (onnxconverter-common's Cast retyping is worked around).
    half = quantize(lstm_onnx, tmp_path / "fp16" / "lstm.onnx", mode="fp16", eval_data=test_texts, runs=1)
    assert half.variant("fp16").agreement >= 0.99 and half.variant("fp16").quantized_ops.get("LSTM") == 1


def test_bow_tfidf_text_classifier_dynamic_and_static(bow_bundle, bow_onnx, text_corpus, tmp_path):
    vectorizer, model, spec = bow_bundle
    train_texts, _, test_texts, test_y, names = text_corpus
    assert spec["output_mode"] == "tf_idf" and len(spec["idf"]) == len(spec["vocab"]) and spec["ngrams"] == 2
    keras_scores = np.asarray(model(np.asarray(vectorizer(test_texts)), training=False))
    assert np.mean(keras_scores.argmax(1) == test_y) > 0.85

    served = load_models(bow_onnx).get("bow")
    np.testing.assert_allclose(first_output(served, test_texts[:50]), keras_scores[:50], atol=1e-5)

    report = quantize(
        bow_onnx, tmp_path / "dyn" / "bow.onnx", mode="dynamic", eval_data=(test_texts, test_y), runs=2
    )
    v = report.variant("dynamic")
    assert v.quantized_ops == {"MatMul": 2} and v.agreement >= 0.97
    assert v.size_bytes < 0.4 * report.baseline.size_bytes
    quantized = load_models(tmp_path / "dyn").get("bow")
    top = [row[0]["label"] for row in quantized.classify(first_output(quantized, test_texts[:40]))]
    assert np.mean(np.asarray([names.index(t) for t in top]) == keras_scores[:40].argmax(1)) >= 0.95

    # Static int8 calibrated from a plain .txt file (one text per line), vectorised by the runtime's code.
    txt = tmp_path / "calibration.txt"
    txt.write_text("\n".join(train_texts[:200]), encoding="utf-8")
    report = quantize(
        bow_onnx, tmp_path / "static" / "bow.onnx", mode="static", calibration=txt, runs=2, progress=False
    )
    # No eval data: a quarter of the texts is held out (never calibrated on) and measured on.
    assert report.calibration_samples == 150 and report.eval_source == "held-out calibration"
    assert report.eval_samples == 50
    assert report.variant("static").agreement >= 0.97
