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


def load_samples(data: Any, info: InputInfo, *, what: str = "calibration", limit: int | None = None) -> Feeds:
    """Model feeds (``{input name: array}``, first axis = samples) from ``data``, at most ``limit``."""
    feeds, _ = _load(data, info, what=what, limit=limit, want_labels=False)
    return feeds


def load_eval(data: Any, info: InputInfo, *, limit: int | None = None) -> tuple[Feeds, np.ndarray | None]:
    """Evaluation feeds and labels (None when the data has none: then quantize measures agreement)."""
    return _load(data, info, what="eval", limit=limit, want_labels=True)


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
    data: Any, info: InputInfo, *, what: str, limit: int | None, want_labels: bool
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
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "USO":
        raw = _texts(list(raw.tolist()), info, what=what)
    feeds = raw if isinstance(raw, dict) else {_single(info, what): raw}
    feeds = {
        name: _fit(np.asarray(array), info, info.names.index(name), what) for name, array in feeds.items()
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
