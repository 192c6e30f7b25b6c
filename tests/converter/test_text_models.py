"""Text models whose first step is not ONNX: string-input Keras models with TextVectorization inside, and
BERT-style keras-hub classifiers with a WordPiece tokenizer. Converted, then served on raw text through the
Lambda handler and Client.local (both go through the data plane), with Keras' own predictions as truth."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from converter_data import MAX_LEN, TOPICS
from events import LambdaContext, event, response_json

pytestmark = pytest.mark.convert

ODD = [
    "Café crème, été! The chef's SAUCE...",
    "東京 weather: rain & fog — 40 degrees?",
    "",
    "goal " * 80,  # longer than the sequence: truncated like Keras
    "naïve résumé ﬁne Straße ＡＢＣ zero\u200bwidth tab\there",
]


@pytest.fixture(scope="module")
def vec_model(text_corpus, keras_seed):
    """A functional classifier with TextVectorization inside: string in, class probabilities out."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)  # the same model whichever tests ran before in the session
    train_texts, train_y, *_ = text_corpus
    vectorizer = layers.TextVectorization(max_tokens=400, output_sequence_length=MAX_LEN)
    vectorizer.adapt(train_texts)
    text = keras.Input(shape=(1,), dtype="string", name="text")
    x = vectorizer(text)
    x = layers.Embedding(len(vectorizer.get_vocabulary()), 16)(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(len(TOPICS), activation="softmax")(x)
    model = keras.Model(text, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(strings(train_texts), train_y, epochs=5, batch_size=32, verbose=0)
    return model


def strings(texts):
    import tensorflow as tf

    return tf.constant([[t] for t in texts])


def keras_scores(model, texts):
    return np.asarray(model.predict(strings(texts), verbose=0))


def lambda_handler(model_dir: Path):
    """The real Mangum handler, imported with ONNXFN_MODEL_DIR pointing at ``model_dir``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ONNXFN_MODEL_DIR", str(model_dir))
    mp.delenv("ONNXFN_API_KEY_HASHES", raising=False)
    mp.delenv("ONNXFN_DEFAULT_MODEL", raising=False)
    try:
        module = importlib.import_module("onnxfn.runtime.aws")
        if module.settings.model_dir != str(model_dir):
            module = importlib.reload(module)
        return module.handler
    finally:
        mp.undo()


def served_scores(handler, texts: list[str], classes: int) -> np.ndarray:
    body = json.dumps({"instances": texts, "top_k": classes})
    response = handler(
        event("http_api_v2", body=body, headers={"content-type": "application/json"}, binary=False),
        LambdaContext(),
    )
    assert response["statusCode"] == 200, response.get("body")
    out = np.zeros((len(texts), classes), dtype=np.float64)
    for i, top in enumerate(response_json(response)["predictions"]):
        for entry in top:
            out[i, entry["index"]] = entry["score"]
    return out


def test_string_input_model_converts_and_serves_raw_text_on_lambda(vec_model, text_corpus, tmp_path):
    from onnxfn.converter import convert

    _, _, test_texts, _, names = text_corpus
    report = convert(vec_model, tmp_path / "topics.onnx", labels=names)
    assert report.task == "text-classification"
    assert report.inputs[0]["dtype"] == "int64" and report.inputs[0]["shape"] == [None, MAX_LEN]
    assert report.preprocess["max_len"] == MAX_LEN and report.preprocess["output_mode"] == "int"
    assert any("TextVectorization" in note for note in report.notes)
    assert any(note.startswith("text parity: max |served - keras|") for note in report.notes)
    texts = list(test_texts[:40]) + ODD
    got = served_scores(lambda_handler(tmp_path), texts, len(names))
    want = keras_scores(vec_model, texts)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_cli_converts_a_sequential_vectorizer_model_for_client_local(
    vec_model, text_corpus, tmp_path, capsys
):
    """Today's failure mode was a quiet ``task tensor``: the CLI now finds the vectorizer itself."""
    import keras
    from onnxfn.client import Client

    from onnxfn.cli import main

    _, _, test_texts, _, names = text_corpus
    vectorizer, *rest = [layer for layer in vec_model.layers if type(layer).__name__ != "InputLayer"]
    sequential = keras.Sequential([keras.Input(shape=(1,), dtype="string"), vectorizer, *rest])
    path = tmp_path / "seq.keras"
    sequential.save(path)
    (tmp_path / "labels.txt").write_text("\n".join(names))
    out = tmp_path / "served" / "seq.onnx"
    code = main(["convert", str(path), "-o", str(out), "--labels", str(tmp_path / "labels.txt")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "text-classification (4 labels)" in printed and "TextVectorization" in printed
    texts = list(test_texts[:10]) + ODD
    want = keras_scores(sequential, texts)
    calibration = tmp_path / "texts.txt"
    calibration.write_text("\n".join(test_texts[:80]), encoding="utf-8")
    quantized = tmp_path / "q" / "seq.onnx"
    args = ["convert", str(path), "-o", str(quantized), "--quantize", "dynamic", "--calibration"]
    code = main([*args, str(calibration), "--runs", "2"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "max|Δ| vs keras" in printed and "measured on 80 calibration (unused by dynamic)" in printed
    with Client.local(out) as client:
        for text, row in zip(texts, want, strict=True):
            p = client.predict(text, top_k=len(names))
            assert p.label == names[int(np.argmax(row))]
            assert p.score == pytest.approx(float(np.max(row)), abs=1e-5)


def test_text_parity_check_catches_preprocessing_the_runtime_would_get_wrong(vec_model, tmp_path):
    """convert checks raw text end to end: settings that break the tokenization are refused."""
    from onnxfn.converter import ConversionError, convert

    with pytest.raises(ConversionError, match="raw text served by onnxfn differs from Keras"):
        convert(vec_model, tmp_path / "bad.onnx", preprocess={"lowercase": False})
    assert not (tmp_path / "bad.onnx").exists()


def test_string_model_without_a_vectorizer_is_refused_clearly(tmp_path):
    import keras
    from keras import layers
    from onnxfn.converter import ConversionError, convert

    text = keras.Input(shape=(1,), dtype="string")
    x = layers.StringLookup(vocabulary=["a", "b", "c"])(text)
    out = layers.Dense(2)(layers.Embedding(5, 4)(x)[:, 0])
    with pytest.raises(ConversionError, match="no TextVectorization layer"):
        convert(keras.Model(text, out), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()

    ragged = layers.TextVectorization(max_tokens=10)  # int output of any length: no fixed input for ONNX
    ragged.adapt(["a b c", "b c d"])
    text = keras.Input(shape=(1,), dtype="string")
    out = layers.Dense(2)(layers.GlobalAveragePooling1D()(layers.Embedding(10, 4)(ragged(text))))
    with pytest.raises(ConversionError, match="without output_sequence_length: set output_sequence_length"):
        convert(keras.Model(text, out), tmp_path / "x.onnx")


def test_ids_model_without_vocabulary_is_flagged(tmp_path):
    import keras
    from keras import layers
    from onnxfn.converter import convert

    ids = keras.Input(shape=(8,), dtype="int64")
    out = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(layers.Embedding(20, 4)(ids)))
    report = convert(keras.Model(ids, out), tmp_path / "ids.onnx")
    assert report.task == "tensor"
    assert any("token ids" in w and "tokenizer" in w for w in report.warnings)


# -- BERT-style ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert(text_corpus, keras_seed):
    """A 2-layer BERT classifier (keras-hub, built from a config: no download) with a WordPiece vocabulary
    trained on the corpus, fitted for a few steps so its scores (logits) differ from text to text."""
    import keras
    import tensorflow as tf

    keras_hub = pytest.importorskip("keras_hub")  # the dev extra; keras-hub needs tensorflow-text
    keras.utils.set_random_seed(0)
    train_texts, train_y, *_ = text_corpus
    vocab = keras_hub.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(train_texts),
        vocabulary_size=400,
        lowercase=True,
        reserved_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"],
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=32)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=64,
    )
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=len(TOPICS), preprocessor=preprocessor)
    return fit_briefly(model, train_texts, train_y)


def fit_briefly(model, texts, labels):
    """A keras-hub text classifier after one epoch on 256 texts, its logits spread out (a few steps
    leave them near 0, where every class ties)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x=list(texts[:256]), y=labels[:256], batch_size=32, epochs=1, verbose=0)
    logits = model.get_layer("logits")
    logits.kernel.assign(logits.kernel * 200.0)
    return model


def test_bert_classifier_serves_text_like_keras(bert, text_corpus, tmp_path):
    from onnxfn.client import Client
    from onnxfn.converter import convert

    _, _, test_texts, _, names = text_corpus
    report = convert(bert, tmp_path / "bert.onnx", labels=names)
    assert report.task == "text-classification"
    assert [i["name"] for i in report.inputs] == ["token_ids"]
    spec = report.preprocess
    assert spec["tokenizer"] == "wordpiece" and spec["max_len"] == 32 and spec["lowercase"] is True
    assert (spec["cls"], spec["sep"], spec["pad"]) == ("[CLS]", "[SEP]", "[PAD]")
    assert any(note.startswith("text parity:") for note in report.notes)
    texts = list(test_texts[:24]) + ODD
    want = np.asarray(bert.predict(texts, verbose=0))
    assert np.ptp(want[:, 0]) > 1e-2  # the scores really vary: equality below means something
    got = served_scores(lambda_handler(tmp_path), texts, len(names))
    np.testing.assert_allclose(got, want, atol=1e-5)
    with Client.local(tmp_path / "bert.onnx") as client:
        for text, row in zip(texts[:8], want[:8], strict=True):
            p = client.predict(text, top_k=len(names))
            assert p.label == names[int(np.argmax(row))]
            assert p.score == pytest.approx(float(np.max(row)), abs=1e-5)


def test_bert_backbone_needs_its_tokenizer(bert, tmp_path):
    import keras
    from onnxfn.converter import ConversionError, convert

    bare = keras.Model(bert.inputs, bert.outputs)  # the same graph, without the preprocessor attached
    with pytest.raises(ConversionError, match="pass tokenizer="):
        convert(bare, tmp_path / "bare.onnx")
    report = convert(bare, tmp_path / "bare.onnx", tokenizer=bert.preprocessor)
    assert report.preprocess["vocab"] == list(bert.preprocessor.tokenizer.get_vocabulary())
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(bert.preprocessor.tokenizer.get_vocabulary()) + "\n", encoding="utf-8")
    with pytest.raises(ConversionError, match="sequence length"):
        convert(bare, tmp_path / "v.onnx", tokenizer=vocab)  # token_ids is (None, None): length unknown
    report = convert(bare, tmp_path / "v.onnx", tokenizer=vocab, preprocess={"max_len": 32})
    assert report.preprocess["max_len"] == 32 and report.preprocess["vocab"][0] == "[PAD]"


def test_saved_keras_hub_classifier_converts_from_its_file(bert, tmp_path):
    from onnxfn.converter import convert

    path = tmp_path / "bert.keras"
    bert.save(path)
    report = convert(path, tmp_path / "file.onnx")
    assert report.task == "text-classification" and report.preprocess["tokenizer"] == "wordpiece"
    assert os.path.getsize(tmp_path / "file.onnx") == report.size_bytes


def test_cli_converts_a_saved_backbone_with_a_vocab_file(bert, text_corpus, tmp_path, capsys):
    import keras
    from onnxfn.runtime import load_models

    from onnxfn.cli import main

    _, _, test_texts, _, _ = text_corpus
    path = tmp_path / "bare.keras"
    keras.Model(bert.inputs, bert.outputs).save(path)  # no preprocessor: the vocabulary comes from a file
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(bert.preprocessor.tokenizer.get_vocabulary()) + "\n", encoding="utf-8")
    out = tmp_path / "served" / "bare.onnx"
    # vocab.txt gets BERT-uncased settings; this tokenizer was lowercase without accent stripping.
    settings = '{"max_len": 32, "strip_accents": false}'
    code = main(["convert", str(path), "-o", str(out), "--tokenizer", str(vocab), "--preprocess", settings])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "text-classification" in printed and "wordpiece tokenizer" in printed
    texts = list(test_texts[:8]) + ODD
    served = load_models(out.parent).get("bare")
    got = served.run(served.feeds(texts))[served.outputs[0].name]
    np.testing.assert_allclose(got, np.asarray(bert.predict(texts, verbose=0)), atol=1e-5)
