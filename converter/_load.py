"""Loading what users hand the converter: a ``keras.Model``, ``.keras``/``.h5`` files or a SavedModel dir.

Everything is reduced to a :class:`Source`: a TF-callable, its input specs and a numpy ``predict``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import ConversionError


@dataclass
class InputSpec:
    name: str
    shape: tuple[int | None, ...]  # batch dim first, None = dynamic
    dtype: str  # numpy dtype name


@dataclass
class Source:
    """A loaded model, whatever it came from."""

    call: Callable[..., Any]  # TF-traceable: positional tensors -> tensor
    inputs: list[InputSpec]
    predict: Callable[[list[np.ndarray]], np.ndarray]
    keras_model: Any = None
    path: Path | None = None
    sha256: str | None = None
    layers: list[tuple[str, str]] = field(default_factory=list)  # (name, class) for error messages


def load(model: Any) -> Source:
    """A :class:`Source` from a ``keras.Model`` or a path (``.keras``, ``.h5``, SavedModel directory)."""
    import keras

    if isinstance(model, keras.Model) or _is_tf_keras_model(model):
        return _from_keras(model)
    if not isinstance(model, (str, Path)):
        raise ConversionError(f"expected a keras.Model or a path, got {type(model).__name__}")
    path = Path(model)
    if not path.exists():
        raise ConversionError(f"{path} does not exist: pass a .keras or .h5 file, or a SavedModel directory")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ConversionError(f"{path} is a directory without saved_model.pb: not a SavedModel")
        source = _from_saved_model(path)
    elif path.suffix in (".keras", ".h5", ".hdf5"):
        source = _from_keras(_load_file(path))
    else:
        raise ConversionError(
            f"{path}: unknown model format {path.suffix!r}; use .keras, .h5 or a SavedModel dir"
        )
    source.path = path
    source.sha256 = _sha256(path)
    return source


def _is_tf_keras_model(model: Any) -> bool:
    """A Keras 2 model (the ``tf_keras`` package), without importing it when it is not installed."""
    import sys

    tf_keras = sys.modules.get("tf_keras")
    return tf_keras is not None and isinstance(model, tf_keras.Model)


def _load_file(path: Path) -> Any:
    """A ``.keras``/``.h5`` file: Keras 3 first; ``.h5`` files Keras 3 cannot read go to Keras 2 (``tf_keras``).

    Keras 3 reads most ``.h5`` files Keras 2 wrote, but not all: e.g. TensorFlow functions used directly
    on Keras tensors (saved as ``TFOpLambda`` layers) only Keras 2 can rebuild.
    """
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        error = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if path.suffix == ".keras":
            raise ConversionError(
                f"{path} is not a Keras model Keras {keras.__version__} can load: {error}"
            ) from None
    try:
        import tf_keras
    except ImportError:
        import tensorflow as tf

        minor = ".".join(tf.__version__.split(".")[:2])
        raise ConversionError(
            f"Keras {keras.__version__} cannot load {path} ({error}); if Keras 2 wrote it, install "
            f"Keras 2 for your TensorFlow: pip install --no-deps 'tf_keras=={minor}.*' and convert again"
        ) from None
    try:
        return tf_keras.models.load_model(path, compile=False)
    except Exception as exc2:
        error2 = str(exc2).strip().splitlines()[0][:300] if str(exc2).strip() else type(exc2).__name__
        raise ConversionError(
            f"neither Keras {keras.__version__} ({error}) nor Keras 2 / tf_keras {tf_keras.__version__} "
            f"({error2}) can load {path}: re-save it from the code that trained it (model.save('m.keras'))"
        ) from None


def _from_keras(model: Any) -> Source:
    inputs = []
    for i, tensor in enumerate(model.inputs):
        shape = tuple(None if d is None else int(d) for d in tensor.shape)
        name = "input" if len(model.inputs) == 1 else _input_name(tensor, i, model.inputs)
        dtype = getattr(tensor, "dtype", "float32")
        dtype = getattr(dtype, "as_numpy_dtype", dtype)  # Keras 2 (tf_keras) tensors carry a tf.DType
        inputs.append(InputSpec(name, (None, *shape[1:]), str(np.dtype(dtype))))

    def call(*tensors: Any) -> Any:
        out = model(list(tensors) if len(tensors) > 1 else tensors[0], training=False)
        return out

    def predict(arrays: list[np.ndarray]) -> np.ndarray:
        out = model(arrays if len(arrays) > 1 else arrays[0], training=False)
        if isinstance(out, (list, tuple)):
            out = out[0]
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return np.asarray(out)

    layers = [(layer.name, type(layer).__name__) for layer in _walk_layers(model)]
    return Source(call=call, inputs=inputs, predict=predict, keras_model=model, layers=layers)


def _input_name(tensor: Any, i: int, tensors: list[Any]) -> str:
    """A multi-input model's inputs keep their Keras names (``keras.Input(name=...)``), when distinct."""
    import re

    def keras_name(t: Any) -> str:
        history = getattr(t, "_keras_history", None)  # Keras 3: .operation; tf_keras: .layer
        producer = getattr(history, "operation", None) or getattr(history, "layer", None)
        return str(getattr(producer, "name", "") or getattr(t, "name", ""))

    name = keras_name(tensor)
    names = [keras_name(t) for t in tensors]
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.\-]*", name) and names.count(name) == 1:  # a valid TF op name
        return name
    return f"input_{i}"


def _walk_layers(model: Any) -> list[Any]:
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_walk_layers(layer))
    return found


def _from_saved_model(path: Path) -> Source:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures["serving_default"]
    except (KeyError, OSError, ValueError) as exc:
        raise ConversionError(f"{path}: cannot load a 'serving_default' signature: {exc}") from None
    _, kwargs = fn.structured_input_signature
    names = sorted(kwargs)
    inputs = []
    for i, key in enumerate(names):
        spec = kwargs[key]
        shape = tuple(None if d is None else int(d) for d in spec.shape)
        name = "input" if len(names) == 1 else f"input_{i}"
        inputs.append(InputSpec(name, (None, *shape[1:]), spec.dtype.as_numpy_dtype.__name__))

    def first(out: Any) -> Any:
        if isinstance(out, dict):
            return out[sorted(out)[0]]
        return out

    def call(*tensors: Any) -> Any:
        return first(fn(**dict(zip(names, tensors, strict=True))))

    def predict(arrays: list[np.ndarray]) -> np.ndarray:
        feeds = {k: tf.constant(a) for k, a in zip(names, arrays, strict=True)}
        return np.asarray(first(fn(**feeds)))

    return Source(call=call, inputs=inputs, predict=predict, keras_model=loaded)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
