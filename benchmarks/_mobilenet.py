"""MobileNetV2 96×96 for the serving benchmarks: built once with Keras, converted with onnxfn, cached.

``weights=None`` (no downloads here), but the BatchNorm moving statistics are set from one real batch
(crops of sklearn's sample photos), as a trained network's would be: with Keras' initial statistics (mean 0,
variance 1) the activations of an untrained MobileNetV2 can decay towards denormals, and issue 14 measured
batch-1 inference 7× slower that way (not reproduced on the EPYC used for docs/runtime.md). Images are fed
the ``tf`` way (pixels / 127.5 − 1), as ``keras.applications.mobilenet_v2.preprocess_input`` does.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from common import WORK

SIZE = 96
MODEL_DIR = WORK / "mobilenet"
PREPROCESS = {"size": [SIZE, SIZE], "layout": "NHWC", "color": "RGB", "scale": 1 / 127.5, "mean": 1.0}


def crops(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """``n`` RGB uint8 crops of sklearn's two sample photos (china, flower), resized to ``size``."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(rng.integers(120, min(photo.shape[:2])))
        y = int(rng.integers(0, photo.shape[0] - side))
        x = int(rng.integers(0, photo.shape[1] - side))
        img = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(img))
    return np.stack(out)


def pngs(n: int) -> list[bytes]:
    """``n`` distinct 96×96 RGB PNGs (what the load generator sends)."""
    from PIL import Image

    out = []
    for arr in crops(n, seed=1):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def mobilenet_dir() -> Path:
    """A model directory with ``mobilenet.onnx`` + manifest (built with TensorFlow on first use)."""
    return model_dir("MobileNetV2")


def model_dir(arch: str = "MobileNetV2") -> Path:
    """A model directory with ``<name>.onnx`` + manifest for a keras.applications ``arch`` at 96×96
    (built with TensorFlow on first use; MobileNetV2's is ``mobilenet``, the others' their lower-case name).
    """
    name = "mobilenet" if arch == "MobileNetV2" else arch.lower()
    folder = MODEL_DIR if arch == "MobileNetV2" else WORK / name
    onnx_file = folder / f"{name}.onnx"
    if onnx_file.exists() and (folder / "manifest.json").exists():
        return folder
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from onnxfn.converter import convert

    keras.utils.set_random_seed(0)
    build = getattr(keras.applications, arch)
    model = build(input_shape=(SIZE, SIZE, 3), weights=None, classes=1000)
    batch = crops(32).astype("float32") / 127.5 - 1.0
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # one training-mode pass makes the moving statistics the batch's
    model(batch, training=True)
    for layer in norms:
        layer.momentum = 0.99
    folder.mkdir(parents=True, exist_ok=True)
    convert(
        model,
        onnx_file,
        labels=[f"class_{i}" for i in range(1000)],
        preprocess=PREPROCESS,
        task="image-classification",
        sample=crops(8, seed=2).astype("float32") / 127.5 - 1.0,
    )
    return folder


if __name__ == "__main__":
    print(mobilenet_dir())
