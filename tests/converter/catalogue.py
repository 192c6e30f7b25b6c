"""The ``keras.applications`` catalogue as installed, each at the smallest input its constructor allows.

Shared by ``tests/converter/test_catalogue.py`` and ``benchmarks/bench_catalogue.py``. Always
``weights=None`` (nothing can be downloaded). Minimum sizes are the constructors' own ``min_size``
(``keras.applications.imagenet_utils.obtain_input_shape``): 71 for Xception, 75 for InceptionV3 and
InceptionResNetV2, 32 for the rest (MobileNetV3 does not check; 32 is its practical minimum).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_SIZE = {"Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}
DEFAULT_MIN = 32
# How each family expects pixels (``keras.applications.<family>.preprocess_input``): "raw" families
# have Rescaling/Normalization layers inside the model (include_preprocessing) and take 0-255.
PIXELS = {
    "caffe": ("VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152"),
    "torch": ("DenseNet121", "DenseNet169", "DenseNet201"),
    "raw": ("ConvNeXt", "EfficientNet", "MobileNetV3"),
}
FAST = ("MobileNetV3Small", "EfficientNetB0", "ResNet50")
"""The subset ``make test`` runs: one per failure class seen (built-in preprocessing and hard-swish,
captured Normalization constants, a plain deep BN-ResNet at its 32×32 minimum)."""


PARAMS_M = {
    "MobileNetV3Small": 2.5, "MobileNetV2": 3.5, "MobileNet": 4.3, "EfficientNetB0": 5.3,
    "NASNetMobile": 5.3, "MobileNetV3Large": 5.5, "EfficientNetV2B0": 7.2, "EfficientNetB1": 7.9,
    "DenseNet121": 8.1, "EfficientNetV2B1": 8.2, "EfficientNetB2": 9.2, "EfficientNetV2B2": 10.2,
    "EfficientNetB3": 12.3, "DenseNet169": 14.3, "EfficientNetV2B3": 14.5, "EfficientNetB4": 19.5,
    "DenseNet201": 20.2, "EfficientNetV2S": 21.6, "Xception": 22.9, "InceptionV3": 23.9,
    "ResNet50": 25.6, "ResNet50V2": 25.6, "ConvNeXtTiny": 28.6, "EfficientNetB5": 30.6,
    "VGG16": 34.0, "VGG19": 39.3, "EfficientNetB6": 43.3, "ResNet101": 44.7, "ResNet101V2": 44.7,
    "ConvNeXtSmall": 50.2, "EfficientNetV2M": 54.4, "InceptionResNetV2": 55.9, "ResNet152": 60.4,
    "ResNet152V2": 60.4, "EfficientNetB7": 66.7, "ConvNeXtBase": 88.6, "NASNetLarge": 88.9,
    "EfficientNetV2L": 119.0, "ConvNeXtLarge": 197.8, "ConvNeXtXLarge": 350.1,
}  # fmt: skip
"""Approximate parameter counts (millions, ImageNet heads): benchmarks run the smallest first."""


def by_size(models: list[str]) -> list[str]:
    """``models`` smallest first (unknown ones last, alphabetically)."""
    return sorted(models, key=lambda n: (PARAMS_M.get(n, float("inf")), n))


def pixels(name: str) -> str:
    """``caffe``, ``torch``, ``tf`` or ``raw``: the pixel convention of ``name``'s family."""
    for mode, prefixes in PIXELS.items():
        if any(name.startswith(p) for p in prefixes):
            return mode
    return "tf"


def inputs_for(name: str, images: np.ndarray) -> np.ndarray:
    """Real 0-255 RGB ``images`` as ``name`` takes them (``imagenet_utils.preprocess_input`` mode)."""
    mode = pixels(name)
    if mode == "raw":
        return images.astype("float32")
    from keras.applications import imagenet_utils

    return np.asarray(imagenet_utils.preprocess_input(images.copy(), mode=mode), dtype="float32")


def names() -> list[str]:
    """Every model constructor ``keras.applications`` exports (40 with Keras 3.15), sorted."""
    import keras

    return sorted(
        n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n))
    )


def min_size(name: str) -> int:
    return MIN_SIZE.get(name, DEFAULT_MIN)


def build(name: str, size: int | None = None, classes: int = 1000) -> Any:
    """``keras.applications.<name>`` with random weights at ``size``×``size`` (default: its minimum)."""
    import keras

    size = size or min_size(name)
    keras.utils.set_random_seed(0)
    return getattr(keras.applications, name)(
        weights=None,
        input_shape=(size, size, 3),
        classes=classes,
        include_top=True,
        classifier_activation=None,
    )


def real_images(size: int, n: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` real photographs (crops of scikit-learn's two sample images), ``size``×``size`` RGB floats 0–255."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427×640 RGB photos that ship with scikit-learn
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(rng.integers(160, 400))
        top, left = int(rng.integers(0, photo.shape[0] - side)), int(rng.integers(0, photo.shape[1] - side))
        crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((size, size))
        out.append(np.asarray(crop, dtype=np.float32))
    return np.stack(out)


BN_IMAGES = 256
"""How many real images set the BatchNormalization statistics (see ``realistic_batchnorm``)."""


def realistic_batchnorm(model: Any, name: str, size: int, n: int = BN_IMAGES) -> int:
    """Set every BatchNormalization's moving statistics from ``n`` real photographs; returns how many BN layers.

    A trained network's BN statistics match its data, which keeps its activations and logits O(1–10).
    With random weights and the default statistics (mean 0, variance 1) they do not: activations shrink
    layer after layer to denormal floats (CPUs and onnxruntime run several times slower than on a trained
    model, so latency says nothing) or, in EfficientNets, grow to logits in the thousands, where the net is
    so chaotic that float32 rounding alone moves the outputs by percents and no parity check can tell a
    conversion bug from noise. One training-mode pass with momentum 0 and dropout off gives every BN the
    statistics of this batch, each computed on what the layers before it output at inference. The batch
    must be large: at the catalogue's 32×32 minimum the last stages are 1×1 spatially, so each statistic
    is estimated from one value per image, and with 16 images EfficientNetV2B2's logits still reach ~1000
    on other images (~270 with 48, ~16 with 256, when Keras float32 is itself stable to 5e-5 relative).
    """
    import keras

    layers = _walk(model)
    bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns:
        return 0
    drops = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    saved = [bn.momentum for bn in bns], [d.rate for d in drops]
    for bn in bns:
        bn.momentum = 0.0
    for d in drops:  # stochastic depth would give the statistics of a net inference never runs
        d.rate = 0.0
    try:
        model(inputs_for(name, real_images(size, n, seed=100)), training=True)
    finally:
        for bn, momentum in zip(bns, saved[0], strict=True):
            bn.momentum = momentum
        for d, rate in zip(drops, saved[1], strict=True):
            d.rate = rate
    return len(bns)


def _walk(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        out.extend(_walk(layer))
    return out
