"""Small Keras models of the four families the converter handles, each trained in seconds, once per session.

Images: sklearn's digits (real data, 8×8, values 0–16), as a CIFAR-style CNN and as a dense MLP.
Text: a generated corpus (see ``converter_data``: no labelled corpus ships offline with an installed package).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from converter_data import DIGIT_LABELS, MAX_LEN, TOPICS, make_corpus
from models import DIGITS_PREPROCESS


@pytest.fixture(scope="session")
def keras_seed():
    import keras

    keras.utils.set_random_seed(0)
    return 0


@pytest.fixture(scope="session")
def digits(digits_data):
    """(x_train, x_test, y_train, y_test) with a channel axis: [N, 8, 8, 1], values 0–16."""
    x_train, x_test, y_train, y_test = digits_data
    return x_train[..., None], x_test[..., None], y_train, y_test


@pytest.fixture(scope="session")
def keras_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keras-models")


@pytest.fixture(scope="session")
def cnn_keras(digits, keras_dir, keras_seed) -> Path:
    """CIFAR-style CNN (Conv2D/MaxPool/Dropout/Dense) on digits, saved as .keras."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)  # the same model whichever tests ran before in the session
    x_train, _, y_train, _ = digits
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Rescaling(1 / 16),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.2),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=12, batch_size=32, verbose=0)
    path = keras_dir / "cnn.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def mlp_keras(digits, keras_dir, keras_seed) -> Path:
    """MNIST-style dense MLP on flattened digits ([N, 64]), saved as .keras."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)  # the same model whichever tests ran before in the session
    x_train, _, y_train, _ = digits
    model = keras.Sequential(
        [
            keras.Input((64,)),
            layers.Rescaling(1 / 16),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train.reshape(len(x_train), 64), y_train, epochs=15, batch_size=32, verbose=0)
    path = keras_dir / "mlp.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-fp32")


@pytest.fixture(scope="session")
def cnn_onnx(cnn_keras, onnx_dir, digits) -> Path:
    from onnxfn.converter import convert

    path = onnx_dir / "cnn.onnx"
    convert(cnn_keras, path, labels=DIGIT_LABELS, preprocess=DIGITS_PREPROCESS, sample=digits[1][:64])
    return path


@pytest.fixture(scope="session")
def mlp_onnx(mlp_keras, onnx_dir, digits) -> Path:
    from onnxfn.converter import convert

    path = onnx_dir / "mlp.onnx"
    x_test = digits[1].reshape(len(digits[1]), 64)
    convert(mlp_keras, path, labels=DIGIT_LABELS, preprocess=DIGITS_PREPROCESS, sample=x_test[:64])
    return path


@pytest.fixture(scope="session")
def text_corpus():
    """(train_texts, train_y, test_texts, test_y, label names): generated, see the module docstring."""
    train_texts, train_y = make_corpus(1200, seed=1)
    test_texts, test_y = make_corpus(400, seed=2)
    return train_texts, train_y, test_texts, test_y, list(TOPICS)


@pytest.fixture(scope="session")
def lstm_bundle(text_corpus, keras_dir, keras_seed):
    """(vectorizer, model, preprocess spec): TextVectorization(int) outside, Embedding + LSTM inside."""
    import keras
    from keras import layers
    from onnxfn.converter import text_preprocess

    keras.utils.set_random_seed(0)  # the same model whichever tests ran before in the session
    train_texts, train_y, *_ = text_corpus
    vectorizer = layers.TextVectorization(max_tokens=400, output_mode="int", output_sequence_length=MAX_LEN)
    vectorizer.adapt(train_texts)
    ids = np.asarray(vectorizer(train_texts))
    model = keras.Sequential(
        [
            keras.Input((MAX_LEN,), dtype="int64"),
            layers.Embedding(len(vectorizer.get_vocabulary()), 32),
            layers.LSTM(32),
            layers.Dense(len(TOPICS), activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ids, train_y, epochs=6, batch_size=32, verbose=0)
    model.save(keras_dir / "lstm.keras")
    return vectorizer, model, text_preprocess(vectorizer)


@pytest.fixture(scope="session")
def bow_bundle(text_corpus, keras_dir, keras_seed):
    """(vectorizer, model, preprocess spec): TextVectorization(tf_idf, bigrams) outside, Dense inside."""
    import keras
    from keras import layers
    from onnxfn.converter import text_preprocess

    keras.utils.set_random_seed(0)  # the same model whichever tests ran before in the session
    train_texts, train_y, *_ = text_corpus
    vectorizer = layers.TextVectorization(max_tokens=600, output_mode="tf_idf", ngrams=2)
    vectorizer.adapt(train_texts)
    vectors = np.asarray(vectorizer(train_texts))
    model = keras.Sequential(
        [
            keras.Input((vectors.shape[1],)),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(len(TOPICS), activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(vectors, train_y, epochs=8, batch_size=32, verbose=0)
    model.save(keras_dir / "bow.keras")
    return vectorizer, model, text_preprocess(vectorizer)


@pytest.fixture(scope="session")
def lstm_onnx(lstm_bundle, onnx_dir) -> Path:
    from onnxfn.converter import convert

    _, model, spec = lstm_bundle
    path = onnx_dir / "lstm.onnx"
    convert(model, path, labels=list(TOPICS), preprocess=spec)
    return path


@pytest.fixture(scope="session")
def bow_onnx(bow_bundle, onnx_dir) -> Path:
    from onnxfn.converter import convert

    _, model, spec = bow_bundle
    path = onnx_dir / "bow.onnx"
    convert(model, path, labels=list(TOPICS), preprocess=spec)
    return path


def pytest_collection_modifyitems(config, items):
    """``models`` tests (the whole keras.applications catalogue) run only when ``-m`` names them."""
    if "models" in (config.option.markexpr or ""):
        return
    skipped = [item for item in items if item.get_closest_marker("models")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not item.get_closest_marker("models")]
