"""Calibration and evaluation data for ``quantize``, from whatever users have at hand.

Accepted: a numpy array (first axis = samples), ``.npy``/``.npz`` files, a folder of images (decoded by the
runtime's own :class:`onnxfn.runtime.preprocess.ImagePreprocessor`, built from the model's
``onnxfn.preprocess``), text (a list of strings, a ``.txt`` file with one text per line, a ``.tsv`` of
``label<TAB>text``; vectorised by the runtime's :class:`~onnxfn.runtime.preprocess.TextPreprocessor`), an
iterable of arrays (batches or single samples), or a ``{input_name: array}`` mapping.
Everything is checked against the model input's shape.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ._errors import ConversionError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
_ONNX_NUMPY = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    10: np.float16,
    11: np.float64,
}

Feeds = dict[str, np.ndarray]


@dataclass
class InputInfo:
    """What the data must look like: the model's inputs and its ``onnxfn.*`` metadata."""

    names: list[str]
    shapes: list[tuple[int | None, ...]]  # None = dynamic
    dtypes: list[Any]
    task: str = "tensor"
    preprocess: dict[str, Any] | None = None
    labels: list[str] | None = None

    @classmethod
    def from_proto(cls, proto: Any) -> InputInfo:
        from onnxfn.runtime._metadata import ModelMetadata

        initializers = {init.name for init in proto.graph.initializer}
        names, shapes, dtypes = [], [], []
        for value in proto.graph.input:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            names.append(value.name)
            shapes.append(tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim))
            dtypes.append(_ONNX_NUMPY.get(tensor.elem_type, np.float32))
        meta = ModelMetadata.read(proto)
        return cls(names, shapes, dtypes, meta.task, meta.preprocess, meta.labels)

    def shape_text(self, i: int = 0) -> str:
        return "[" + ", ".join("batch" if d is None else str(d) for d in self.shapes[i]) + "]"


def load_samples(
    data: Any,
    info: InputInfo,
    *,
    what: str = "calibration",
    limit: int | None = None,
    notes: list[str] | None = None,
) -> Feeds:
    """Model feeds (``{input name: array}``, first axis = samples) from ``data``, at most ``limit``.

    Arrays are checked against the model's preprocessing (see :func:`check_preprocessed`); what was done
    to them is appended to ``notes``.
    """
    feeds, _ = _load(data, info, what=what, limit=limit, want_labels=False, notes=notes)
    return feeds


def load_eval(
    data: Any,
    info: InputInfo,
    *,
    what: str = "eval",
    limit: int | None = None,
    notes: list[str] | None = None,
) -> tuple[Feeds, np.ndarray | None]:
    """Evaluation feeds and labels (None when the data has none: then quantize measures agreement)."""
    return _load(data, info, what=what, limit=limit, want_labels=True, notes=notes)


def count(feeds: Feeds) -> int:
    return len(next(iter(feeds.values())))


def take(feeds: Feeds, index: Any) -> Feeds:
    return {name: array[index] for name, array in feeds.items()}


class CalibrationReader(CalibrationDataReader):
    """Feeds in batches for onnxruntime's calibrator, with a tqdm progress bar."""

    def __init__(self, feeds: Feeds, *, batch_size: int = 16, progress: bool = True) -> None:
        self.feeds = feeds
        self.total = count(feeds)
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self._bar: Any = None
        self.rewind()

    def rewind(self) -> None:
        self._start = 0
        self._close()

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._start >= self.total:
            self._close()
            return None
        if self._bar is None and self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc="calibrating", unit="sample", leave=False)
        stop = min(self._start + self.batch_size, self.total)
        batch = take(self.feeds, slice(self._start, stop))
        if self._bar is not None:
            self._bar.update(stop - self._start)
        self._start = stop
        return batch

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# -- loading -------------------------------------------------------------------------------------


def _load(
    data: Any,
    info: InputInfo,
    *,
    what: str,
    limit: int | None,
    want_labels: bool,
    notes: list[str] | None = None,
) -> tuple[Feeds, np.ndarray | None]:
    labels: Any = None
    if want_labels and isinstance(data, tuple) and len(data) == 2:
        data, labels = data
    if isinstance(data, (str, os.PathLike)):
        raw, file_labels = _from_path(Path(data), info, what=what, limit=limit)
    elif isinstance(data, Mapping):
        raw, file_labels = _from_mapping(data, info)
    elif isinstance(data, np.ndarray):
        raw, file_labels = data, None
    elif isinstance(data, Iterable):
        raw, file_labels = _from_iterable(data, info, what=what)
    else:
        raise ConversionError(
            f"{what} data of type {type(data).__name__} is not supported: pass a numpy array, a .npy/.npz "
            "file, a folder of images, text (.txt/.tsv or a list of strings) or an iterable of arrays"
        )
    labels = file_labels if labels is None else labels
    decoded = _decoded(data)  # images/texts decoded by the runtime's own preprocessors: in range by design
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "USO":
        raw = _texts(list(raw.tolist()), info, what=what)
        decoded = True
    feeds = raw if isinstance(raw, dict) else {_single(info, what): raw}
    given = {name: np.asarray(array).dtype for name, array in feeds.items()}  # before the cast to the input's
    feeds = {
        name: _fit(np.asarray(array), info, info.names.index(name), what) for name, array in feeds.items()
    }
    if not decoded:
        feeds = {
            name: check_preprocessed(array, given[name], info, info.names.index(name), what=what, notes=notes)
            for name, array in feeds.items()
        }
    missing = [name for name in info.names if name not in feeds]
    if missing:
        raise ConversionError(f"{what} data has no values for model input(s) {missing}")
    sizes = {len(a) for a in feeds.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ConversionError(
            f"{what} data is empty or its inputs have different sample counts {sorted(sizes)}"
        )
    n = sizes.pop()
    y = None
    if want_labels and labels is not None:
        y = _labels(labels, info, n)
    if limit is not None and n > limit:
        index = np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))
        feeds = take(feeds, index)
        y = y[index] if y is not None else None
    return feeds, y


def _decoded(data: Any) -> bool:
    """Whether ``data`` is images or texts that the runtime's preprocessors decode (not arrays)."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        return path.is_dir() or path.suffix.lower() in (".txt", ".tsv")
    if isinstance(data, (list, tuple)) and data:
        return all(isinstance(x, (str, bytes, bytearray)) for x in data)
    return False


def _single(info: InputInfo, what: str) -> str:
    if len(info.names) != 1:
        raise ConversionError(
            f"the model has {len(info.names)} inputs {info.names}: pass {what} data as a mapping or a .npz "
            "with one array per input name"
        )
    return info.names[0]


def _from_path(path: Path, info: InputInfo, *, what: str, limit: int | None) -> tuple[Any, Any]:
    if not path.exists():
        raise ConversionError(
            f"{what} data {path} does not exist: pass a .npy/.npz file, a folder of images "
            "or a .txt/.tsv file"
        )
    if path.is_dir():
        return _image_folder(path, info, what=what, limit=limit)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), None
        except (OSError, ValueError) as exc:
            raise ConversionError(f"{what} data {path} is not a readable .npy file: {exc}") from None
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError) as exc:
            raise ConversionError(f"{what} data {path} is not a readable .npz file: {exc}") from None
        return _from_mapping(arrays, info, source=str(path))
    if suffix in (".txt", ".tsv"):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if suffix == ".txt":
            return _texts(lines, info, what=what), None
        pairs = [line.split("\t", 1) for line in lines]
        if any(len(p) != 2 for p in pairs):
            raise ConversionError(f"{what} data {path}: every line of a .tsv must be 'label<TAB>text'")
        return _texts([p[1] for p in pairs], info, what=what), [p[0] for p in pairs]
    if suffix in IMAGE_SUFFIXES:
        raise ConversionError(f"{what} data {path} is a single image: pass the folder that holds the images")
    raise ConversionError(
        f"{what} data {path}: unsupported file type {suffix!r}; use .npy, .npz, a folder of images, "
        ".txt (one text per line) or .tsv (label<TAB>text)"
    )


def _from_mapping(data: Mapping[str, Any], info: InputInfo, source: str = "mapping") -> tuple[Any, Any]:
    keys = list(data)
    labels = next((data[k] for k in ("y", "labels", "label", "target") if k in data), None)
    if all(name in data for name in info.names):
        return {name: np.asarray(data[name]) for name in info.names}, labels
    for key in ("x", "inputs", "input", "images", "data"):
        if key in data:
            return np.asarray(data[key]), labels
    rest = [k for k in keys if k not in ("y", "labels", "label", "target")]
    if len(rest) == 1 and len(info.names) == 1:
        return np.asarray(data[rest[0]]), labels
    raise ConversionError(
        f"{source} has arrays {keys}: name the inputs 'x' (and labels 'y'), or use the model's input "
        f"names {info.names}"
    )


def _from_iterable(data: Iterable[Any], info: InputInfo, *, what: str) -> tuple[Any, Any]:
    items = list(data)
    if not items:
        raise ConversionError(f"{what} data is empty")
    if all(isinstance(x, str) for x in items):
        return _texts(items, info, what=what), None
    if all(isinstance(x, (bytes, bytearray)) for x in items):
        return _images(
            [bytes(x) for x in items], [f"item {i}" for i in range(len(items))], info, what=what
        ), None
    if all(isinstance(x, Mapping) for x in items):
        return {
            name: _stack([np.asarray(x[name]) for x in items], info, i) for i, name in enumerate(info.names)
        }, None
    _single(info, what)
    return _stack([np.asarray(x) for x in items], info, 0), None


def _stack(arrays: list[np.ndarray], info: InputInfo, i: int) -> np.ndarray:
    """Batches (rank = input rank) are concatenated; single samples (rank - 1) are stacked."""
    rank = len(info.shapes[i])
    if all(a.ndim == rank for a in arrays):
        return np.concatenate(arrays)
    if all(a.ndim == rank - 1 for a in arrays):
        return np.stack(arrays)
    shapes = sorted({tuple(a.shape) for a in arrays})[:3]
    raise ConversionError(
        f"iterable items have shapes {[list(s) for s in shapes]}: each must be a batch shaped like "
        f"{info.shape_text(i)} or one sample without the batch axis"
    )


def _image_folder(path: Path, info: InputInfo, *, what: str, limit: int | None) -> tuple[np.ndarray, Any]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConversionError(f"{what} folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    classes = None
    if all(f.parent != path for f in files) and all(f.parent.parent == path for f in files):
        classes = [f.parent.name for f in files]  # class-per-subfolder layout (ImageFolder)
    if limit is not None and len(files) > limit:
        index = np.sort(np.random.default_rng(0).choice(len(files), size=limit, replace=False))
        files = [files[i] for i in index]
        classes = [classes[i] for i in index] if classes else None
    blobs = [f.read_bytes() for f in files]
    return _images(blobs, [str(f) for f in files], info, what=what), classes


def _images(blobs: list[bytes], names: list[str], info: InputInfo, *, what: str) -> np.ndarray:
    """Decode with the runtime's ImagePreprocessor, configured from the model's own metadata."""
    from onnxfn.runtime import APIError
    from onnxfn.runtime.preprocess import ImagePreprocessor

    spec = info.preprocess
    if len(info.names) > 1:
        raise ConversionError(
            f"{what} data is images but the model has {len(info.names)} inputs {info.names}: pass a dict or "
            ".npz with one array per input name (images as the runtime feeds them)"
        )
    if info.task != "image-classification" or not spec or "size" not in spec:
        raise ConversionError(
            f"{what} data is images but the model has no image preprocessing "
            "(onnxfn.preprocess with a size): "
            "convert it with onnxfn (task image-classification), or pass arrays (.npy)"
        )
    shape = info.shapes[0]
    pre = ImagePreprocessor(spec, dtype=info.dtypes[0], flatten=len(shape) == 2, max_pixels=10**9)
    out = []
    from tqdm.auto import tqdm

    for blob, name in tqdm(
        list(zip(blobs, names, strict=True)),
        desc="decoding images",
        unit="image",
        leave=False,
        disable=len(blobs) < 64,
    ):
        try:
            out.append(pre.array(pre.load(blob)))
        except APIError as exc:
            raise ConversionError(f"{what} image {name}: {exc.message}") from None
    sizes = sorted({a.shape for a in out})
    if len(sizes) > 1:  # size null: the model takes each image at its own size
        raise ConversionError(
            f"{what} images have different sizes {[list(s) for s in sizes[:3]]} and the model keeps each "
            "image's own size: resize them to one size first"
        )
    return np.stack(out)


def _texts(texts: list[Any], info: InputInfo, *, what: str) -> np.ndarray:
    """Vectorise with the runtime's TextPreprocessor, configured from the model's own metadata."""
    from onnxfn.runtime import APIError
    from onnxfn.runtime.preprocess import TextPreprocessor

    spec = info.preprocess
    if not spec or "vocab" not in spec:
        raise ConversionError(
            f"{what} data is text but the model has no vocabulary in onnxfn.preprocess: convert it with "
            "preprocess={'vocab': [...], ...}, or pass the vectorised arrays (.npy)"
        )
    pre = TextPreprocessor(spec, dtype=info.dtypes[0])
    try:
        return pre([str(t) for t in texts])
    except APIError as exc:
        raise ConversionError(f"{what} text: {exc}") from None


def _fit(array: np.ndarray, info: InputInfo, i: int, what: str) -> np.ndarray:
    """``array`` checked against input ``i``'s shape and converted to its dtype."""
    name, expected, dtype = info.names[i], info.shapes[i], np.dtype(info.dtypes[i])
    if array.dtype.kind in "USO":
        raise ConversionError(
            f"{what} data for input {name!r} is {array.dtype} (text?), the model takes numbers"
        )
    fits = array.ndim == len(expected) and all(
        e is None or e == a for a, e in zip(array.shape[1:], expected[1:], strict=True)
    )
    if not fits:
        hint = ""
        dims = expected[1:]
        if array.ndim == len(expected) - 1 and all(
            e is None or e == a for a, e in zip(array.shape, dims, strict=True)
        ):
            hint = ": it looks like one sample; add a batch axis (x[None])"
        elif (
            array.ndim >= 1
            and all(isinstance(d, int) for d in dims)
            and int(np.prod(array.shape[1:])) == int(np.prod(dims))
        ):
            hint = _layout_hint(array.shape[1:], tuple(dims))
        else:
            hint = ": the first axis counts samples, the rest must match the model input"
        raise ConversionError(
            f"{what} data has shape {list(array.shape)} but model input {name!r} is "
            f"{info.shape_text(i)}{hint}"
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ConversionError(f"{what} data for input {name!r} contains NaN or infinity")
    if dtype.kind in "iu" and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise ConversionError(
            f"{what} data for input {name!r} has fractions but the model takes {dtype} (token ids?)"
        )
    return np.ascontiguousarray(array.astype(dtype, copy=False))


def _labels(labels: Any, info: InputInfo, n: int) -> np.ndarray:
    values = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    if len(values) != n:
        raise ConversionError(f"eval data has {n} samples but {len(values)} labels")
    names = info.labels or []
    out = []
    for value in values:
        if isinstance(value, str):
            if value in names:
                out.append(names.index(value))
            elif value.strip().lstrip("-").isdigit():
                out.append(int(value))
            else:
                raise ConversionError(
                    f"eval label {value!r} is neither one of the model's labels {names[:10]} "
                    "nor a class index"
                )
        else:
            number = np.asarray(value)
            if number.ndim:  # one-hot rows
                out.append(int(np.argmax(number)))
            else:
                out.append(int(number))
    return np.asarray(out, dtype=np.int64)


def _layout_hint(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    """How to make data of shape ``got`` (no batch axis) fit ``want``: a transpose when the axes are only
    in another order (e.g. NCHW data for an NHWC model; a reshape would scramble the pixels)."""
    if len(got) == len(want) and sorted(got) == sorted(want):
        order, used = [], set()
        for d in want:
            i = next(j for j, g in enumerate(got) if g == d and j not in used)
            used.add(i)
            order.append(i + 1)
        axes = ", ".join(str(a) for a in [0, *order])
        layout = ""
        if len(want) == 3 and want[-1] in (1, 3, 4) and got[0] == want[-1]:
            layout = " (channels-first data for a channels-last model)"
        return f": its axes are in another order{layout}; transpose it with x.transpose({axes})"
    return (
        f": reshape it with x.reshape(-1, {', '.join(str(d) for d in want)}) if its values are in that order"
    )


# -- the data against the model's preprocessing -----------------------------------------------------


def check_preprocessed(
    array: np.ndarray,
    original: Any,
    info: InputInfo,
    i: int,
    *,
    what: str,
    notes: list[str] | None = None,
) -> np.ndarray:
    """``array`` (input ``i``, already fitted to its shape/dtype) checked against what the runtime feeds.

    Expected form: the tensors the model takes, as the runtime feeds them after its preprocessing.
    Image models: raw pixels instead (``uint8``, or whole numbers in 0..255, in the model's layout and
    channel order) outside that range are preprocessed the way the runtime does (``pixel × scale − mean) /
    std`` per channel) and a note says so; other values outside it are refused. Text models: token ids must
    be inside the vocabulary.
    """
    spec, name = info.preprocess or {}, info.names[i]
    if info.task == "text-classification" and isinstance(spec.get("vocab"), list):
        size = len(spec["vocab"])
        if np.dtype(info.dtypes[i]).kind in "iu" and array.size and (array.min() < 0 or array.max() >= size):
            raise ConversionError(
                f"{what} data for input {name!r} has token ids {int(array.min())}..{int(array.max())} but the "
                f"vocabulary has {size} tokens: pass texts (a list, .txt or .tsv), or ids from the same "
                "vectorizer/tokenizer"
            )
        return array
    bounds = _pixel_bounds(info, i, array.shape[1:])
    if bounds is None or not array.size:
        return array
    zero, full = bounds  # what the runtime feeds for pixel 0 and pixel 255, element by element
    low, high = float(np.minimum(zero, full).min()), float(np.maximum(zero, full).max())
    tol = 0.01 * (high - low) + 1e-6
    lo, hi = float(array.min()), float(array.max())
    if lo >= low - tol and hi <= high + tol:
        if high - low > 10 and hi - lo < 0.01 * (high - low) * 2 and notes is not None:
            notes.append(
                f"{what} data spans only {lo:.3g}..{hi:.3g} while the runtime feeds {low:.3g}..{high:.3g}: "
                "if these are pixels you scaled yourself, pass the raw pixels instead"
            )
        return array
    integral = np.dtype(original) == np.uint8 or (
        lo >= 0 and hi <= 255 and bool(np.all(np.mod(array, 1) == 0))
    )
    if integral and lo >= 0 and hi <= 255:
        fed = zero + (full - zero) * (array.astype(np.float32) / 255.0)
        if notes is not None:
            notes.append(
                f"{what} data for input {name!r} holds raw pixels ({np.dtype(original)}, {lo:g}..{hi:g}) but "
                f"the model takes preprocessed values ({low:.3g}..{high:.3g}): preprocessed them like the "
                f"runtime does ({_describe(info.preprocess or {})})"
            )
        return np.ascontiguousarray(fed.astype(array.dtype, copy=False))
    raise ConversionError(
        f"{what} data for input {name!r} ranges {lo:.4g}..{hi:.4g}, but the runtime feeds this model "
        f"{low:.4g}..{high:.4g} ({_describe(info.preprocess or {})}): pass the arrays as the runtime feeds "
        "them (after that preprocessing), or raw pixels (uint8 0..255 in the model's layout), or a folder "
        "of images"
    )


def _pixel_bounds(
    info: InputInfo, i: int, sample_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The runtime's input for an all-0 and an all-255 image, shaped like one sample (None: not an image)."""
    spec = info.preprocess
    if info.task != "image-classification" or not spec or len(info.names) != 1:
        return None
    from onnxfn.runtime.preprocess import ImagePreprocessor

    try:
        pre = ImagePreprocessor(spec, dtype=np.float32, flatten=len(info.shapes[i]) == 2, max_pixels=10**9)
        height, width = pre.size
    except Exception:  # a spec this check cannot reproduce (dynamic size): nothing to compare with
        return None
    channels = getattr(pre, "channels", 3)
    shape = (height, width) if channels == 1 else (height, width, channels)
    out = []
    for value in (0, 255):
        image = np.full(shape, value, dtype=np.uint8)
        fed = np.asarray(pre.array(image), dtype=np.float32)
        if fed.size != int(np.prod(sample_shape)):
            return None
        out.append(fed.reshape(sample_shape))
    return out[0], out[1]


def _describe(spec: dict[str, Any]) -> str:
    def text(value: Any) -> str:
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    parts = [f"{key} {text(spec[key])}" for key in ("preset", "scale", "mean", "std", "color") if key in spec]
    if "scale" not in spec and "preset" not in spec:
        parts.insert(0, "scale 1/255 (default)")
    return ", ".join(parts)
