"""Which preprocessing the runtime applies, per model input: presets, in-model layers, dynamic sizes.

``resolve`` turns what the user passed as ``preprocess`` (``None``, a preset name, a dict, or a per-input
``{"inputs": {name: spec | None}}``) into the ``onnxfn.preprocess`` metadata, and says in plain words what
it found in the model and what the runtime will do (the convert report prints both).

- Presets equal ``keras.applications.imagenet_utils.preprocess_input``'s modes: ``caffe`` (BGR, ImageNet
  mean subtracted, no scaling), ``tf`` (``x / 127.5 - 1``), ``torch`` (``x / 255`` then ImageNet mean/std),
  ``none`` (raw 0..255).
- Preprocessing layers at the start of the model (``Rescaling``, ``Normalization``, ``Resizing``,
  ``CenterCrop``; keras.applications' ``include_preprocessing``) are detected: the default then feeds raw
  pixels (``scale`` 1, ``mean`` 0, ``std`` 1) so nothing is applied twice, and an in-model ``Resizing`` gives
  the size for inputs whose height and width are dynamic.
- Dynamic height/width without ``Resizing``: ``size`` null, each image is fed at its own size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._errors import ConversionError

__all__ = ["PRESETS", "Resolved", "detect_layers", "infer_task", "is_image_input", "resolve"]

IMAGENET_MEAN_BGR = [103.939, 116.779, 123.68]
PRESETS: dict[str, dict[str, Any]] = {
    "caffe": {"color": "BGR", "scale": 1.0, "mean": IMAGENET_MEAN_BGR, "std": [1.0, 1.0, 1.0]},
    "tf": {"scale": 1 / 127.5, "mean": [1.0, 1.0, 1.0], "std": [1.0, 1.0, 1.0]},
    "torch": {
        "color": "RGB",
        "scale": 1 / 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    },
    "none": {"scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
}
IMAGE_KEYS = (
    "preset", "size", "layout", "color", "resize", "crop_ratio", "pad_value", "scale", "mean", "std", "flatten",
)  # fmt: skip
PREPROCESSING_LAYERS = ("Rescaling", "Normalization", "Resizing", "CenterCrop")
# Inference-time no-ops: augmentation (active only in training), noise, dropout.
TRANSPARENT_LAYERS = (
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness",
    "RandomHue", "RandomSaturation", "RandomGrayscale", "RandomColorJitter", "RandomSharpness",
    "RandomShear", "RandomPerspective", "RandomErasing", "RandomGaussianBlur", "RandomInvert",
    "RandomPosterization", "RandomColorDegeneration", "GaussianNoise", "GaussianDropout", "Dropout",
    "SpatialDropout2D", "AlphaDropout",
)  # fmt: skip
SCALING_LAYERS = ("Rescaling", "Normalization")
DYNAMIC_SAMPLE_SIZE = 64  # parity-check images for inputs that keep each image's own size


@dataclass
class Resolved:
    """The metadata to write, plus what the report should say."""

    preprocess: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Found:
    """A preprocessing layer at the start of the model, for one input."""

    kind: str
    name: str
    config: dict[str, Any]

    def text(self) -> str:
        c = self.config
        if self.kind == "Rescaling":
            detail = f"scale={_num(c.get('scale'))}, offset={_num(c.get('offset'))}"
        elif self.kind == "Normalization":
            detail = f"mean={_num(c.get('mean'))}, variance={_num(c.get('variance'))}"
        elif self.kind in ("Resizing", "CenterCrop"):
            detail = f"{c.get('height')}x{c.get('width')}"
        else:
            detail = ""
        return f"{self.kind}({detail})"


def _num(value: Any) -> str:
    import numpy as np

    if value is None:
        return "adapted"
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size > 4:
        return f"[{', '.join(f'{v:.4g}' for v in array[:3])}, …]"
    if array.size == 1:
        return f"{array[0]:.4g}"
    return "[" + ", ".join(f"{v:.4g}" for v in array) + "]"


# -- detection ------------------------------------------------------------------------------------


def detect_layers(keras_model: Any, input_names: list[str]) -> dict[str, list[Found]]:
    """Preprocessing layers each model input passes through before anything else (nested models too).

    Follows the Keras graph from each input; a layer counts only when every layer between it and the
    input is an input or a preprocessing layer. Returns ``{onnx input name: [Found, ...]}`` in order.
    """
    found: dict[str, list[Found]] = {name: [] for name in input_names}
    if keras_model is None or not hasattr(keras_model, "layers"):
        return found
    try:
        keras_inputs = [_op_name(t) for t in keras_model.inputs]
    except Exception:  # a SavedModel or a subclassed model without a graph
        return found
    mapping = dict(zip(keras_inputs, input_names, strict=False))
    try:
        _walk(keras_model, mapping, found)
    except Exception:  # an unusual graph: detect nothing rather than fail the conversion
        return {name: [] for name in input_names}
    return found


def _op_name(tensor: Any) -> str:
    """The name of the layer that produced ``tensor`` (Keras 3 ``operation``, tf_keras ``layer``)."""
    history = tensor._keras_history
    producer = getattr(history, "operation", None) or getattr(history, "layer", None)
    return producer.name


def _walk(model: Any, origins: dict[str, str], found: dict[str, list[Found]]) -> dict[str, str]:
    """``origins`` maps this model's input-layer names to the outer input they carry unchanged.

    Returns ``{layer name: input}`` for the layers whose output is still the input's pixels, only
    preprocessed (inference-time no-ops such as augmentation layers pass them through).
    """
    raw: dict[str, str] = dict(origins)  # op name -> the input whose (preprocessed) pixels it outputs
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        # A layer shared by several models has one node per call: the one fed by this graph's raw pixels.
        parents = [
            [_op_name(t) for t in _as_list(node.input_tensors)]
            for node in getattr(layer, "_inbound_nodes", None) or []
        ]
        fed = [p[0] for p in parents if len(p) == 1 and p[0] in raw]
        if not fed:
            continue
        origin = raw[fed[0]]
        if kind in PREPROCESSING_LAYERS:
            found[origin].append(Found(kind, layer.name, _config(layer, kind)))
            raw[layer.name] = origin
        elif kind in TRANSPARENT_LAYERS:
            raw[layer.name] = origin
        elif hasattr(layer, "layers") and getattr(layer, "inputs", None) and len(layer.inputs) == 1:
            inner = _walk(layer, {_op_name(layer.inputs[0]): origin}, found)
            outputs = getattr(layer, "outputs", None) or []
            if len(outputs) == 1 and _op_name(outputs[0]) in inner:  # e.g. a data_augmentation Sequential
                raw[layer.name] = origin
    return raw


def _as_list(tensors: Any) -> list[Any]:
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def _config(layer: Any, kind: str) -> dict[str, Any]:
    import numpy as np

    if kind == "Rescaling":
        return {"scale": _plain(layer.scale), "offset": _plain(layer.offset)}
    if kind == "Normalization":
        mean = getattr(layer, "mean", None)
        variance = getattr(layer, "variance", None)
        if mean is None and hasattr(layer, "adapt_mean"):
            mean, variance = layer.adapt_mean, layer.adapt_variance
        return {
            "mean": None if mean is None else np.asarray(mean).tolist(),
            "variance": None if variance is None else np.asarray(variance).tolist(),
        }
    return {"height": int(layer.height), "width": int(layer.width)}


def _plain(value: Any) -> Any:
    import numpy as np

    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else array.tolist()


# -- inputs and tasks -----------------------------------------------------------------------------


def is_image_input(shape: tuple[int | None, ...], dtype: str, *, single: bool) -> bool:
    """An image-shaped input: [N, H, W, C] / [N, C, H, W] with 1, 3 or 4 channels (float or uint8).

    A single-input model also counts [N, H, W] float inputs (greyscale), as before.
    """
    dims = shape[1:]
    if len(dims) == 3:
        return dims[-1] in (1, 3, 4) or dims[0] in (1, 3) or (single and dtype.startswith("float"))
    return single and len(dims) == 2 and dtype.startswith("float")


def infer_task(source: Any, preprocess: Any, classes: int | None) -> str:
    """``image-classification``, ``text-classification`` or ``tensor`` from the inputs and output."""
    if isinstance(preprocess, (dict, str)):
        preprocess = _normalize(source, preprocess)
    if isinstance(preprocess, dict) and "vocab" in preprocess:
        return "text-classification"
    if not classes:
        return "tensor"
    if isinstance(preprocess, str) or (isinstance(preprocess, dict) and "preset" in preprocess):
        return "image-classification"
    if len(source.inputs) > 1:
        per_input = preprocess.get("inputs") if isinstance(preprocess, dict) else None
        per_input = per_input if isinstance(per_input, dict) else {}
        if any(isinstance(v, dict) and "vocab" in v for v in per_input.values()):
            return "text-classification"
        images = [
            s for s in source.inputs if is_image_input(s.shape, s.dtype, single=False) or _given(per_input, s)
        ]
        return "image-classification" if images else "tensor"
    spec = source.inputs[0]
    rank = len(spec.shape)
    if rank == 4 or (rank == 3 and spec.dtype.startswith("float")):
        return "image-classification"
    if isinstance(preprocess, dict) and "size" in preprocess:
        return "image-classification"
    return "tensor"


def _given(per_input: dict[str, Any], spec: Any) -> bool:
    value = per_input.get(spec.name)
    return isinstance(value, str) or (isinstance(value, dict) and "vocab" not in value)


# -- resolution -----------------------------------------------------------------------------------


def _normalize(source: Any, given: Any) -> dict[str, Any] | None:
    """A preset name becomes ``{"preset": name}``; a one-input model's per-input form is unwrapped."""
    if isinstance(given, str):
        given = {"preset": given}
    if len(source.inputs) == 1 and isinstance(given, dict) and "inputs" in given:
        name = source.inputs[0].name
        per_input = given["inputs"]
        if set(given) != {"inputs"} or not isinstance(per_input, dict) or set(per_input) != {name}:
            raise ConversionError(
                f"the model has one input {name!r}: pass its spec directly, or as "
                f"preprocess={{'inputs': {{'{name}': spec}}}}"
            )
        given = per_input[name]
        given = {"preset": given} if isinstance(given, str) else given
    return given


def resolve(task: str, source: Any, given: Any) -> Resolved:
    """The ``onnxfn.preprocess`` metadata for ``source`` and the report's notes (see the module doc)."""
    if given is not None and not isinstance(given, (dict, str)):
        raise ConversionError(
            f"preprocess must be a dict or a preset name ({', '.join(PRESETS)}), got {type(given).__name__}"
        )
    given = _normalize(source, given)
    if task == "text-classification" and len(source.inputs) == 1:
        if not given or "vocab" not in given:
            raise ConversionError(
                "a text model needs its vocabulary: pass preprocess={'vocab': [...], 'max_len': N} "
                "(e.g. TextVectorization.get_vocabulary())"
            )
        return Resolved(dict(given))
    if len(source.inputs) > 1:
        return _resolve_many(task, source, given)
    if task != "image-classification":
        return Resolved(dict(given) if given else None)
    found = detect_layers(source.keras_model, [source.inputs[0].name])[source.inputs[0].name]
    out = Resolved(None)
    out.preprocess = _image_spec(source.inputs[0], given or {}, found, out, label="")
    return out


def _resolve_many(task: str, source: Any, given: dict[str, Any] | None) -> Resolved:
    names = [s.name for s in source.inputs]
    per_input: dict[str, Any] = {}
    if given and "inputs" in given:
        extra = sorted(set(given) - {"inputs"})
        if extra:
            raise ConversionError(
                f"preprocess has 'inputs' and also {extra}: put every setting inside its input's entry"
            )
        per_input = given["inputs"]
        if not isinstance(per_input, dict):
            raise ConversionError("preprocess 'inputs' must map input names to a spec or null")
        unknown = [k for k in per_input if k not in names]
        if unknown:
            raise ConversionError(
                f"preprocess names input(s) {unknown} the model does not have; its inputs: {names}"
            )
        per_input = {k: {"preset": v} if isinstance(v, str) else v for k, v in per_input.items()}
    images = [s for s in source.inputs if is_image_input(s.shape, s.dtype, single=False)]
    if given and "inputs" not in given:  # a flat spec or preset: it belongs to the one image input
        if len(images) != 1:
            raise ConversionError(
                f"the model has inputs {names}: pass preprocess={{'inputs': {{name: spec or null}}}} "
                "to say which one each setting is for"
            )
        per_input = {images[0].name: given}
    found = detect_layers(source.keras_model, names)
    out = Resolved(None)
    specs: dict[str, Any] = {}
    for spec in source.inputs:
        value = per_input.get(spec.name, {} if spec in images else None)
        if value is None:
            specs[spec.name] = None
            out.notes.append(f"input {spec.name!r}: numeric arrays, fed as given")
        elif not isinstance(value, dict):
            raise ConversionError(f"preprocess for input {spec.name!r} must be a dict, a preset or null")
        elif "vocab" in value:
            specs[spec.name] = dict(value)
            out.notes.append(f"input {spec.name!r}: text, tokenized with the vocabulary given")
        else:
            specs[spec.name] = _image_spec(spec, value, found[spec.name], out, label=f"input {spec.name!r}: ")
    out.preprocess = {"inputs": specs}
    return out


def _image_spec(spec: Any, given: dict[str, Any], found: list[Found], out: Resolved, *, label: str) -> dict:
    """One image input's spec: shape defaults < in-model layers < preset < what the user gave."""
    given = dict(given)
    unknown = [k for k in given if k not in IMAGE_KEYS]
    if unknown:
        import difflib

        close = difflib.get_close_matches(str(unknown[0]), IMAGE_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConversionError(
            f"{label}preprocess has an unknown key {unknown[0]!r}{hint}: image keys are {', '.join(IMAGE_KEYS)}"
        )
    preset = given.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise ConversionError(f"unknown preprocess preset {preset!r}: use one of {', '.join(PRESETS)}")
    dims = list(spec.shape[1:])
    defaults: dict[str, Any] = {"layout": "NHWC", "scale": 1 / 255}
    if len(dims) == 2:
        dims = [*dims, 1]
    elif len(dims) == 1:  # flattened pixels (dense models): the size must be given
        if given.get("size") is None:
            raise ConversionError(
                f"{label}cannot tell the image size from input shape {list(spec.shape)}: "
                "pass preprocess={'size': [H, W], ...}"
            )
        dims = [None, None, 1 if given.get("color") == "L" else 3]
    if len(dims) != 3:
        raise ConversionError(f"{label}cannot treat input shape {list(spec.shape)} as an image")
    if dims[0] in (1, 3) and dims[2] not in (1, 3, 4):
        defaults["layout"] = "NCHW"
        channels, height, width = dims
    else:
        height, width, channels = dims
    channels = channels if isinstance(channels, int) else 3
    resizing = next((f for f in found if f.kind == "Resizing"), None)
    scaling = [f for f in found if f.kind in SCALING_LAYERS]
    if isinstance(height, int) and isinstance(width, int):
        defaults["size"] = [height, width]
    elif resizing is not None:
        defaults["size"] = [resizing.config["height"], resizing.config["width"]]
    else:
        defaults["size"] = None
    defaults["color"] = "L" if channels == 1 else "RGB"
    defaults["mean"] = [0.0] * channels
    defaults["std"] = [1.0] * channels
    if found:
        out.notes.append(f"{label}model starts with {', '.join(f.text() for f in found)}")
    if found:  # the model brings its own preprocessing: feed it raw pixels (DESIGN.md)
        defaults["scale"] = 1.0
        if not scaling and preset is None and not any(k in given for k in ("scale", "mean", "std")):
            out.notes.append(
                f"{label}the model resizes/crops but does not rescale: the runtime feeds raw pixels 0..255; "
                "pass preprocess={'scale': 1/255} (or a preset) if it was trained on scaled pixels"
            )
    if preset is not None:
        values = dict(PRESETS[preset])
        if channels != 3 and preset in ("caffe", "torch"):
            raise ConversionError(
                f"{label}preset {preset!r} is for 3-channel images; this input has {channels}"
            )
        if channels != 3:
            values["mean"], values["std"] = [values["mean"][0]] * channels, [1.0] * channels
            values.pop("color", None)
        defaults.update(values)
    result = {**defaults, **given}
    if "size" in given and given["size"] is not None and isinstance(height, int) and isinstance(width, int):
        if list(given["size"]) != [height, width] and result.get("flatten") is None:
            out.warnings.append(
                f"{label}preprocess size {list(given['size'])} differs from the input's {height}x{width}"
            )
    scaled_by_user = preset not in (None, "none") or any(k in given for k in ("scale", "mean", "std"))
    if scaling and scaled_by_user and not _is_raw(result):
        out.warnings.append(
            f"{label}the model rescales its input itself ({', '.join(f.text() for f in scaling)}) and the "
            "preprocessing given scales pixels too, so they are transformed twice: fine only if the model was "
            "trained on pixels scaled like that (the default for such models is raw 0..255)"
        )
    _validate(result, label)
    if result.get("size") is None:
        out.notes.append(
            f"{label}height and width are dynamic: the runtime feeds each image at its own size "
            "(a request's images must share one size)"
        )
    elif resizing is not None and not (isinstance(height, int) and isinstance(width, int)):
        out.notes.append(
            f"{label}image size {result['size'][0]}x{result['size'][1]} taken from the model's Resizing"
        )
    out.notes.append(f"{label}runtime: {describe(result)}")
    return result


def _is_raw(spec: dict[str, Any]) -> bool:
    import numpy as np

    return (
        float(spec.get("scale", 1.0)) == 1.0
        and not np.any(np.asarray(spec.get("mean", 0.0), dtype=float))
        and np.all(np.asarray(spec.get("std", 1.0), dtype=float) == 1.0)
    )


def _validate(spec: dict[str, Any], label: str) -> None:
    from onnxfn.runtime.preprocess import ImagePreprocessor

    try:
        ImagePreprocessor(spec)
    except ValueError as exc:
        raise ConversionError(f"{label}preprocess {spec!r} is not valid: {exc}") from None


def describe(spec: dict[str, Any]) -> str:
    """What the runtime does to each image, in one line (for the convert report)."""
    import numpy as np

    size = spec.get("size")
    resize = spec.get("resize", "stretch")
    if size is None:
        where = "each image at its own size"
    elif resize == "crop":
        ratio = float(spec.get("crop_ratio", 0.875))
        where = f"shorter side to {size[0] / ratio:.0f}, centre crop {size[0]}x{size[1]}"
    elif resize == "pad":
        where = f"letterboxed into {size[0]}x{size[1]} (pad {spec.get('pad_value', 0)})"
    else:
        where = f"resized to {size[0]}x{size[1]}"
    if _is_raw(spec):
        values = "raw pixels 0..255"
    else:
        scale = float(spec.get("scale", 1 / 255))
        mean = np.asarray(spec.get("mean", 0.0), dtype=float).reshape(-1)
        std = np.asarray(spec.get("std", 1.0), dtype=float).reshape(-1)
        values = f"pixel * {scale:.6g}"
        if np.any(mean):
            values = f"({values} - {_num(mean)})"
        if np.any(std != 1):
            values = f"{values} / {_num(std)}"
    return f"{spec.get('color', 'RGB')} {spec.get('layout', 'NHWC')}, {where}, {values}"


def input_specs(preprocess: dict[str, Any] | None, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """``{input name: spec | None}`` from metadata: per-input (``{"inputs": {...}}``) or one flat spec."""
    from onnxfn.runtime._metadata import input_preprocess

    return input_preprocess(preprocess, names)


def image_samples(source: Any, preprocess: Any, task: str, n: int, rng: Any) -> dict[str, Any]:
    """Parity-check batches for the image inputs: random pixels through the runtime's own preprocessing."""
    import numpy as np
    from onnxfn.runtime.preprocess import ImagePreprocessor

    if not isinstance(preprocess, dict):
        return {}
    if "inputs" not in preprocess and task != "image-classification":
        return {}
    specs = input_specs(preprocess, [s.name for s in source.inputs])
    out = {}
    for spec in source.inputs:
        value = specs.get(spec.name)
        if not isinstance(value, dict) or "vocab" in value:
            continue
        pre = ImagePreprocessor(value, dtype=np.dtype(spec.dtype), flatten=len(spec.shape) == 2)
        height, width = pre.size or (DYNAMIC_SAMPLE_SIZE, DYNAMIC_SAMPLE_SIZE)
        pixels = rng.integers(0, 256, size=(n, height, width, pre.channels), dtype=np.uint8)
        out[spec.name] = np.stack([pre.array(p.squeeze(-1) if pre.channels == 1 else p) for p in pixels])
    return out
