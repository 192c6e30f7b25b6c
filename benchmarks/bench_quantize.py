"""Quantization benchmark (issue 4): fp32 vs static int8 / dynamic int8 / fp16, measured side by side in one run.

Models (trained in seconds, cached under artifacts/bench/quantize):
- CIFAR-style CNN (Conv2D×4, MaxPool, Dropout, Dense) at 32×32×3 on sklearn digits upscaled 4× — real,
  learnable data, accuracy measured on the held-out digits;
- Embedding + LSTM text classifier and a TF-IDF (uni+bigram) bag-of-words dense classifier, on the generated
  topic corpus of tests/converter/converter_data.py (no labelled text corpus ships offline with a package).

Each model goes through ``onnxfn.converter.quantize(mode="auto")``: every variant is built and timed
interleaved (A/B/C/D, 100 rounds; ONNXFN_BENCH_RUNS), one intra-op thread, warm, medians. Run: python benchmarks/bench_quantize.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "converter"))
sys.path.insert(0, str(HERE))
from common import row  # noqa: E402

WORK = ROOT / "artifacts" / "bench" / "quantize"
RUNS = int(os.environ.get("ONNXFN_BENCH_RUNS", "100"))  # per variant and batch size, interleaved


def _digits_32() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits upscaled to 32×32×3 (nearest, 4×), as pixel/255 — what ImagePreprocessor gives for the PNGs."""
    from models import digits_split

    x_train, x_test, y_train, y_test = digits_split()

    def up(x: np.ndarray) -> np.ndarray:
        pixels = np.rint(np.repeat(np.repeat(x, 4, axis=1), 4, axis=2) * (255 / 16))
        return (np.repeat(pixels[..., None], 3, axis=-1) / 255).astype(np.float32)

    return up(x_train), up(x_test), y_train, y_test


def _cnn(x_train: np.ndarray, y_train: np.ndarray) -> Any:
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.25),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5, batch_size=64, verbose=0)
    return model


def _text_models(train_texts: list[str], train_y: np.ndarray) -> dict[str, tuple[Any, Any]]:
    import keras
    from converter_data import TOPICS
    from keras import layers

    keras.utils.set_random_seed(0)
    out = {}
    ints = layers.TextVectorization(max_tokens=2000, output_mode="int", output_sequence_length=32)
    ints.adapt(train_texts)
    lstm = keras.Sequential(
        [
            keras.Input((32,), dtype="int64"),
            layers.Embedding(len(ints.get_vocabulary()), 64),
            layers.LSTM(128),
            layers.Dense(len(TOPICS), activation="softmax"),
        ]
    )
    lstm.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    lstm.fit(np.asarray(ints(train_texts)), train_y, epochs=6, batch_size=32, verbose=0)
    out["lstm"] = (ints, lstm)
    tfidf = layers.TextVectorization(max_tokens=2000, output_mode="tf_idf", ngrams=2)
    tfidf.adapt(train_texts)
    vectors = np.asarray(tfidf(train_texts))
    bow = keras.Sequential(
        [
            keras.Input((vectors.shape[1],)),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(len(TOPICS), activation="softmax"),
        ]
    )
    bow.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    bow.fit(vectors, train_y, epochs=8, batch_size=32, verbose=0)
    out["bow"] = (tfidf, bow)
    return out


def reports(runs: int = RUNS) -> dict[str, Any]:
    """Train (or reuse), convert and quantize the three models; one QuantizationReport each."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from converter_data import TOPICS, make_corpus
    from onnxfn.converter import convert, quantize, text_preprocess

    WORK.mkdir(parents=True, exist_ok=True)
    found = {}
    x_train, x_test, y_train, y_test = _digits_32()
    cnn_file = WORK / "fp32" / "cnn.onnx"
    cnn = None
    if not cnn_file.exists():
        cnn = _cnn(x_train, y_train)
        cnn.save(WORK / "cnn.keras")
        convert(cnn, cnn_file, labels=[str(i) for i in range(10)], sample=x_test[:64])
    found["cnn"] = quantize(
        cnn_file,
        WORK / "int8" / "cnn.onnx",
        mode="auto",
        calibration=x_train[:256],
        eval_data=(x_test, y_test),
        reference=cnn or WORK / "cnn.keras",
        runs=runs,
        progress=False,
    )

    train_texts, train_y = make_corpus(2000, seed=11)
    test_texts, test_y = make_corpus(1000, seed=12)
    files = {name: WORK / "fp32" / f"{name}.onnx" for name in ("lstm", "bow")}
    if not all(f.exists() for f in files.values()):
        for name, (vectorizer, model) in _text_models(train_texts, train_y).items():
            model.save(WORK / f"{name}.keras")
            convert(model, files[name], labels=list(TOPICS), preprocess=text_preprocess(vectorizer))
    for name, path in files.items():
        found[name] = quantize(
            path,
            WORK / "int8" / f"{name}.onnx",
            mode="auto",
            calibration=train_texts[:256],
            eval_data=(test_texts, test_y),
            reference=WORK / f"{name}.keras",
            runs=runs,
            progress=False,
        )
    return found


def _row(
    what: str, ours: float, baseline: float | None, ratio: float | None, target: str, met: bool, unit: str
) -> dict:
    return row("converter", what, ours, baseline, ratio, target, met, unit)


def rows_from(found: dict[str, Any]) -> list[dict]:
    rows = []
    cnn = found["cnn"]
    fp32, static = cnn.baseline, cnn.variant("static")
    size = static.size_bytes / fp32.size_bytes
    rows.append(
        _row("static int8 QDQ per-channel, digits CNN 32×32×3: file size (KiB)", static.size_bytes / 1024,
             fp32.size_bytes / 1024, size, "≤ 0.3× fp32", size <= 0.3, "KiB")
    )  # fmt: skip
    lat = static.latency_ms[32] / fp32.latency_ms[32]
    rows.append(
        _row("static int8, digits CNN: median latency batch 32 (ms, 1 thread)", static.latency_ms[32],
             fp32.latency_ms[32], lat, "≤ 0.7× fp32", lat <= 0.7, "ms")
    )  # fmt: skip
    drop = (fp32.accuracy - static.accuracy) * 100
    rows.append(
        _row(f"static int8, digits CNN: held-out accuracy (%), drop {drop:+.2f} pt", static.accuracy * 100,
             fp32.accuracy * 100, static.accuracy / fp32.accuracy, "drop ≤ 1 point", drop <= 1.0, "%")
    )  # fmt: skip
    for name, label in (("lstm", "Embedding+LSTM text"), ("bow", "TF-IDF bag-of-words text")):
        report = found[name]
        base, dyn = report.baseline, report.variant("dynamic")
        size = dyn.size_bytes / base.size_bytes
        rows.append(
            _row(f"dynamic int8, {label}: file size (KiB)", dyn.size_bytes / 1024, base.size_bytes / 1024, size,
                 "≤ 0.3× fp32", size <= 0.3, "KiB")
        )  # fmt: skip
        rows.append(
            _row(f"dynamic int8, {label}: top-1 agreement with fp32 (%)", dyn.agreement * 100, 100.0,
                 dyn.agreement, "≥ 99%", dyn.agreement >= 0.99, "%")
        )  # fmt: skip
    for name, label in (("cnn", "digits CNN"), ("lstm", "LSTM text"), ("bow", "bag-of-words text")):
        report = found[name]
        base, half = report.baseline, report.variant("fp16")
        size = half.size_bytes / base.size_bytes
        rows.append(
            _row(f"fp16, {label}: file size (KiB)", half.size_bytes / 1024, base.size_bytes / 1024, size,
                 "≤ 0.55× fp32", size <= 0.55, "KiB")
        )  # fmt: skip
        rows.append(
            _row(f"fp16, {label}: top-1 agreement with fp32 (%)", half.agreement * 100, 100.0, half.agreement,
                 "≥ 99.5%", half.agreement >= 0.995, "%")
        )  # fmt: skip
    return rows


def write_reports(found: dict[str, Any], directory: Path = HERE) -> list[Path]:
    """The full before/after reports: one PNG per model and one Markdown file for all."""
    paths = []
    sections = ["# Quantization reports (`python benchmarks/bench_quantize.py`)", ""]
    for name, report in found.items():
        paths.append(report.plot(directory / f"quantize_{name}.png"))
        sections += [report.to_markdown(), ""]
    markdown = directory / "quantize.md"
    markdown.write_text("\n".join(sections), encoding="utf-8")
    return [*paths, markdown]


def run() -> list[dict]:
    """Rows for benchmarks/RESULTS.md (fp32 is the baseline of every ratio), plus the report files."""
    found = reports()
    write_reports(found)
    return rows_from(found)


if __name__ == "__main__":
    found = reports()
    for report in found.values():
        print(report.table(), end="\n\n")
    rows = rows_from(found)
    width = max(len(r["what"]) for r in rows)
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        print(
            f"{r['what'].ljust(width)}  ours {r['ours']:9.2f}  fp32 {r['baseline']:9.2f}  ratio {ratio:>6}  "
            f"target {r['target']:<14} {'met' if r['met'] else 'MISSED'}"
        )
    for path in write_reports(found):
        print("wrote", path.relative_to(ROOT))
