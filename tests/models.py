"""Real, small models for tests that must not need TensorFlow.

``digits_logreg`` trains a multinomial logistic regression on sklearn's digits (real data, ~0.5 s) and
writes it as an ONNX graph (Flatten → MatMul → Add → Softmax) with onnxfn metadata, exactly as the
converter would: image input [N, 8, 8, 1], greyscale, pixel/255*16 scaling (digits are 0–16).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

DIGITS_PREPROCESS = {
    "size": [8, 8],
    "layout": "NHWC",
    "color": "L",
    "scale": 16 / 255,
    "mean": [0.0],
    "std": [1.0],
}


def first_output(model, instances: list) -> np.ndarray:
    """A loaded ``onnxfn.runtime`` model's first output for user instances: ``feeds`` then ``run``."""
    name = model.outputs[0].name
    return model.run(model.feeds(instances), [name])[name]


def digits_split(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype("float32")  # 0..16
    return train_test_split(x, d.target, test_size=0.25, random_state=seed, stratify=d.target)


def digit_png(image_0_16: np.ndarray) -> bytes:
    """A digits image (0–16) as the PNG a user would send: 0–255 greyscale."""
    from PIL import Image

    pixels = np.clip(np.rint(image_0_16 * 255.0 / 16.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def digits_logreg(path: Path, *, version: int = 1) -> tuple[Path, float]:
    """Train, write ``path`` (ONNX with onnxfn metadata); return the path and held-out accuracy."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxfn.runtime import ModelMetadata
    from sklearn.linear_model import LogisticRegression

    x_train, x_test, y_train, y_test = digits_split()
    # The model sees pixels as the preprocessing produces them: PNG byte * 16/255 ≈ the 0–16 value.
    clf = LogisticRegression(max_iter=2000).fit(x_train.reshape(len(x_train), -1), y_train)
    accuracy = float(clf.score(x_test.reshape(len(x_test), -1), y_test))
    w = numpy_helper.from_array(clf.coef_.T.astype(np.float32), "W")
    b = numpy_helper.from_array(clf.intercept_.astype(np.float32), "B")
    shape = numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "flat_shape")
    nodes = [
        helper.make_node("Reshape", ["input", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["logits0"]),
        helper.make_node("Add", ["logits0", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_logreg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8, 8, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=[w, b, shape],
    )
    metadata = ModelMetadata(
        task="image-classification",
        labels=[str(i) for i in range(10)],
        preprocess=DIGITS_PREPROCESS,
        source={"trainer": "sklearn LogisticRegression"},
        version=version,
    )
    return _save(graph, metadata, path), accuracy


def digit_jpeg(image_0_16: np.ndarray, quality: int = 95) -> bytes:
    """A digits image (0–16) as a JPEG, upscaled to 32×32 so the codec has blocks to work with."""
    from PIL import Image

    pixels = np.clip(np.rint(image_0_16 * 255.0 / 16.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    image = Image.fromarray(pixels, mode="L").resize((32, 32), Image.Resampling.NEAREST)
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


TOPIC_WORDS = {
    "sports": "goal match team score player coach league season win referee stadium ball",
    "weather": "rain sun cloud storm wind forecast snow cold warm humid thunder sky",
    "food": "pizza bread cheese recipe cook oven salad soup spicy dinner sauce taste",
}
TOPIC_FILLER = "the a today really very and with some of this that our"


def topics_corpus(per_class: int = 80, seed: int = 0) -> tuple[list[str], list[int], list[str]]:
    """A small generated corpus: (texts, label ids, label names); each text mixes topic words and filler."""
    rng = np.random.default_rng(seed)
    labels = sorted(TOPIC_WORDS)
    filler = TOPIC_FILLER.split()
    texts, ys = [], []
    for y, label in enumerate(labels):
        words = TOPIC_WORDS[label].split()
        for _ in range(per_class):
            picked = list(rng.choice(words, size=int(rng.integers(2, 5)))) + list(rng.choice(filler, size=3))
            rng.shuffle(picked)
            texts.append(" ".join(picked).capitalize() + rng.choice([".", "!", "?"]))
            ys.append(y)
    return texts, ys, labels


def topics_bow(path: Path, *, output_mode: str = "multi_hot", version: int = 1) -> tuple[Path, float]:
    """A real text classifier without TensorFlow: bag of words → MatMul → Add → Softmax (sklearn-trained).

    Its ``onnxfn.preprocess`` is a Keras-style vocab (``""`` and ``[UNK]`` first) with ``output_mode``
    ``multi_hot`` or ``count``, so the runtime's TextPreprocessor builds the input. Returns (path, accuracy).
    """
    from onnx import TensorProto, helper, numpy_helper
    from onnxfn.runtime import ModelMetadata
    from onnxfn.runtime.preprocess import TextPreprocessor
    from sklearn.linear_model import LogisticRegression

    texts, ys, labels = topics_corpus()
    words = {w for topic in TOPIC_WORDS.values() for w in topic.split()} | set(TOPIC_FILLER.split())
    vocab = ["", "[UNK]", *sorted(words)]
    spec = {"vocab": vocab, "output_mode": output_mode, "max_len": 64, "lowercase": True}
    features = TextPreprocessor(spec, dtype=np.float32)(texts)
    order = np.random.default_rng(1).permutation(len(texts))
    split = int(0.75 * len(order))
    train, test = order[:split], order[split:]
    y = np.asarray(ys)
    clf = LogisticRegression(max_iter=2000).fit(features[train], y[train])
    accuracy = float(clf.score(features[test], y[test]))
    w = numpy_helper.from_array(clf.coef_.T.astype(np.float32), "W")
    b = numpy_helper.from_array(clf.intercept_.astype(np.float32), "B")
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["logits0"]),
        helper.make_node("Add", ["logits0", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "topics_bow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", len(vocab)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(labels)])],
        initializer=[w, b],
    )
    metadata = ModelMetadata(
        task="text-classification",
        labels=labels,
        preprocess=spec,
        source={"trainer": "sklearn LogisticRegression on a generated corpus"},
        version=version,
    )
    return _save(graph, metadata, path), accuracy


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but carries almost no pixel data (a bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """Static QDQ int8 (onnxruntime.quantization), keeping onnxfn's metadata."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {"input": row}

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    original, quantized = onnx.load(str(src)), onnx.load(str(dst))
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(original.metadata_props)
    onnx.save(quantized, str(dst))


def _save(graph, metadata, path: Path) -> Path:
    """An opset-17 model from ``graph`` with onnxfn ``metadata``, checked and written to ``path``."""
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxfn-tests"
    )
    model.ir_version = 8
    metadata.write(model)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
