"""Turning user input into model tensors: images, text and plain numeric arrays.

This is the one implementation of preprocessing in onnxfn: the runtime, the converter's calibration
and ``Client.local`` all call it. It needs numpy and Pillow only.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import BadRequest

log = logging.getLogger("onnxfn.runtime")

# Magic bytes of the image formats the API accepts (DESIGN.md, "Content types").
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")

# Keras TextVectorization's default "lower_and_strip_punctuation" and "whitespace" split, as TensorFlow
# runs them: tf.strings.lower changes ASCII letters only ("É" stays), the regex strips ASCII punctuation
# only, and tf.strings.split breaks on ASCII whitespace only (not on NBSP, U+2003, \x1c-\x1f or \x85).
_PUNCTUATION = re.compile(r"[!\"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")

_NP_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def numpy_dtype(onnx_type: str) -> Any:
    """numpy dtype of an onnxruntime type string such as ``tensor(float)``."""
    try:
        return _NP_DTYPES[onnx_type]
    except KeyError:
        raise ValueError(f"unsupported ONNX tensor type {onnx_type}") from None


def sniff_image(data: bytes) -> str | None:
    """The image format named by the first bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


class ImagePreprocessor:
    """Decode, orient, convert, resize and normalise images into one float batch.

    ``spec`` is the model's ``onnxfn.preprocess``: ``size`` [H, W], ``layout`` NHWC|NCHW, ``color``
    (Pillow mode, ``L`` or ``RGB``), ``scale``, ``mean``, ``std``.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        *,
        dtype: Any = np.float32,
        max_pixels: int = 40_000_000,
        flatten: bool = False,
    ) -> None:
        try:
            height, width = (int(v) for v in spec["size"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"image preprocess spec needs size [H, W], got {spec!r}") from None
        self.size = (height, width)
        self.layout = str(spec.get("layout", "NHWC")).upper()
        if self.layout not in ("NHWC", "NCHW"):
            raise ValueError(f"layout must be NHWC or NCHW, got {self.layout}")
        self.color = str(spec.get("color", "RGB"))
        if self.color not in ("L", "RGB"):
            raise ValueError(f"color must be 'L' or 'RGB', got {self.color}")
        channels = 1 if self.color == "L" else 3
        scale = float(spec.get("scale", 1 / 255))
        mean = np.broadcast_to(np.asarray(spec.get("mean", 0.0), dtype=np.float32), (channels,))
        std = np.broadcast_to(np.asarray(spec.get("std", 1.0), dtype=np.float32), (channels,))
        if np.any(std == 0):
            raise ValueError("std must not be 0")
        # (pixel * scale - mean) / std  ==  pixel * a + b, computed once.
        self._a = (scale / std).astype(np.float32)
        self._b = (-mean / std).astype(np.float32)
        self.dtype = dtype
        self.max_pixels = int(max_pixels)
        self.channels = channels
        self.flatten = flatten or bool(spec.get("flatten", False))  # dense (MLP) models take [N, H*W*C]

    def spec(self) -> dict[str, Any]:
        return {"size": list(self.size), "layout": self.layout, "color": self.color}

    def load(self, data: bytes | Any) -> Any:
        """A decoded, upright ``PIL.Image`` in the model's colour mode and size."""
        from PIL import Image, ImageOps

        if isinstance(data, Image.Image):
            image = data
        else:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            if not isinstance(data, bytes):
                raise BadRequest(f"expected image bytes, got {type(data).__name__}")
            if not data:
                raise BadRequest("empty image: send PNG, JPEG, WebP, BMP or GIF bytes")
            fmt = sniff_image(data)
            if fmt is None:
                raise BadRequest("body is not an image: send PNG, JPEG, WebP, BMP or GIF bytes")
            try:
                image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            except Image.DecompressionBombError as exc:  # Pillow's own guard, for headers far past ours
                raise BadRequest(
                    f"image is above the limit of {self.max_pixels:,} pixels (ONNXFN_MAX_IMAGE_PIXELS): {exc}"
                ) from None
            except (OSError, ValueError, SyntaxError) as exc:
                raise BadRequest(f"cannot decode {fmt} image: {exc}") from None
            pixels = image.width * image.height
            if pixels > self.max_pixels:
                raise BadRequest(
                    f"image is {image.width}x{image.height} = {pixels:,} pixels, above the limit of "
                    f"{self.max_pixels:,} (ONNXFN_MAX_IMAGE_PIXELS): send a smaller image"
                )
            if pixels == 0:
                raise BadRequest("image has no pixels")
            height, width = self.size
            if fmt == "JPEG":
                # Let libjpeg decode at a reduced scale when the image is much larger than needed.
                image.draft(self.color, (width, height))
            try:
                image.load()
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as exc:
                raise BadRequest(f"cannot decode {fmt} image (truncated or corrupt?): {exc}") from None
        try:
            image = ImageOps.exif_transpose(image)
        except Exception as exc:  # a broken EXIF block must not fail an otherwise good image
            log.debug("ignoring unreadable EXIF orientation: %s", exc)
        if image.mode != self.color:
            if image.mode in ("P", "PA"):  # palette images convert cleanly only through RGBA
                image = image.convert("RGBA")
            image = image.convert(self.color)
        height, width = self.size
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        return image

    def array(self, image: Any) -> np.ndarray:
        """One image as an HWC/CHW float tensor (no batch axis)."""
        pixels = np.asarray(image, dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.dtype == np.uint8:
            out = pixels
        else:
            out = pixels.astype(np.float32) * self._a + self._b
            out = out.astype(self.dtype, copy=False)
        if self.layout == "NCHW":
            out = np.transpose(out, (2, 0, 1))
        if self.flatten:
            out = out.reshape(-1)
        return out

    def __call__(self, images: Sequence[bytes | Any]) -> np.ndarray:
        """A batch from encoded images (bytes) or PIL images."""
        return np.stack([self.array(self.load(item)) for item in images])


class TextPreprocessor:
    """Raw text to the model's input, mirroring Keras ``TextVectorization``.

    ``spec``: ``vocab`` (index = token id; Keras puts ``""`` at 0 and ``[UNK]`` at 1), ``max_len``,
    ``lowercase``, ``strip_punctuation``, ``output_mode`` ``int`` (padded ids) | ``multi_hot`` |
    ``count`` | ``tf_idf`` (with ``idf``), ``ngrams`` (N: every n-gram width 1..N, as Keras' integer
    ``ngrams``; or a list of widths, as Keras' tuple).
    """

    def __init__(self, spec: dict[str, Any], *, dtype: Any = np.int64, max_chars: int = 100_000) -> None:
        vocab = spec.get("vocab")
        if not isinstance(vocab, list) or not vocab:
            raise ValueError("text preprocess spec needs a non-empty 'vocab' list")
        self.vocab = [str(v) for v in vocab]
        self.index = {token: i for i, token in enumerate(self.vocab)}
        self.oov = self.index.get("[UNK]", 1 if len(self.vocab) > 1 else 0)
        self.mode = str(spec.get("output_mode", "int"))
        if self.mode not in ("int", "multi_hot", "count", "tf_idf"):
            raise ValueError(f"output_mode must be int, multi_hot, count or tf_idf, got {self.mode}")
        self.max_len = int(spec.get("max_len", 200))
        self.lowercase = bool(spec.get("lowercase", True))
        self.strip_punctuation = bool(spec.get("strip_punctuation", True))
        ngrams = spec.get("ngrams", 1) or 1
        widths = range(1, int(ngrams) + 1) if isinstance(ngrams, (int, float, str)) else ngrams
        self.ngram_widths = tuple(sorted({int(w) for w in widths if int(w) >= 1})) or (1,)
        self.ngrams = max(self.ngram_widths)
        idf = spec.get("idf")
        self.idf = np.asarray(idf, dtype=np.float32) if idf is not None else None
        if self.mode == "tf_idf" and (self.idf is None or len(self.idf) != len(self.vocab)):
            raise ValueError("tf_idf output_mode needs an 'idf' list as long as the vocab")
        self.dtype = dtype
        self.max_chars = max_chars

    def tokens(self, text: str) -> list[str]:
        """Standardised, split tokens, then n-grams in Keras' order (all 1-grams, then 2-grams, ...)."""
        if self.lowercase:
            text = text.translate(_ASCII_LOWER)
        if self.strip_punctuation:
            text = _PUNCTUATION.sub("", text)
        words = [w for w in _ASCII_WHITESPACE.split(text) if w]
        if self.ngram_widths == (1,):
            return words
        out: list[str] = []
        for n in self.ngram_widths:
            out += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        return out

    def ids(self, text: str) -> list[int]:
        return [self.index.get(token, self.oov) for token in self.tokens(text)]

    def array(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise BadRequest(f"text instances must be strings, got {type(text).__name__}")
        if len(text) > self.max_chars:
            raise BadRequest(f"text is {len(text):,} characters, above the limit of {self.max_chars:,}")
        ids = self.ids(text)
        if self.mode == "int":
            out = np.zeros(self.max_len, dtype=self.dtype)
            ids = ids[: self.max_len]
            out[: len(ids)] = ids
            return out
        vec = np.zeros(len(self.vocab), dtype=np.float32)
        if self.mode == "multi_hot":
            vec[ids] = 1.0
        else:
            np.add.at(vec, ids, 1.0)
            if self.mode == "tf_idf":
                vec *= self.idf
        if len(self.vocab) > 0 and self.index.get("") == 0:
            vec[0] = 0.0  # the padding token never counts
        return vec.astype(self.dtype, copy=False)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.array(t) for t in texts])


def to_array(value: Any, *, name: str, dtype: Any) -> np.ndarray:
    """Nested lists (or an array) as ``dtype``, refusing what would silently change the numbers.

    BadRequest for ragged or non-numeric data, NaN/inf, fractions or out-of-range values for an integer
    type, values that overflow a float type, and non-boolean data for BOOL.
    """
    target = np.dtype(dtype)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"input {name!r}: not a rectangular numeric array ({exc})") from None
    if target == np.object_:
        if array.dtype.kind not in "OUS" or not all(isinstance(v, str) for v in array.reshape(-1)):
            raise BadRequest(f"input {name!r} holds strings: send text")
        return array.astype(np.object_)
    if array.dtype == np.object_ or array.dtype.kind in "USV":
        raise BadRequest(f"input {name!r}: expected numbers, got {array.dtype.kind!r} data (ragged or text?)")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise BadRequest(f"input {name!r} contains NaN or infinity: send finite numbers")
    if target.kind == "b":
        if array.dtype.kind != "b":
            raise BadRequest(f"input {name!r} is boolean: send true/false")
        return array
    if target.kind in "iu":
        info = np.iinfo(target)
        out_of_range = BadRequest(
            f"input {name!r}: values outside {target.name}'s range [{info.min}, {info.max}]"
        )
        if array.dtype.kind == "f":
            if not np.all(np.mod(array, 1) == 0):
                raise BadRequest(f"input {name!r} expects integers ({target.name}), got fractions")
            if array.size and (array.min() < float(info.min) or array.max() > float(info.max)):
                raise out_of_range
            # Python ints beyond 2**53 were rounded on the way to float64: convert the originals exactly.
            try:
                return np.array(value, dtype=target)
            except (OverflowError, ValueError, TypeError):
                raise out_of_range from None
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise out_of_range
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected just below
        out = array.astype(target, copy=False)
    if target.kind == "f" and array.dtype.kind in "iuf" and not np.all(np.isfinite(out)):
        raise BadRequest(f"input {name!r}: values overflow {target.name}")
    return out


def check_tensor(value: Any, *, name: str, dtype: Any, shape: Sequence[int | str | None]) -> np.ndarray:
    """A numpy array from nested lists (or an array), checked against the input's dtype and shape."""
    array = to_array(value, name=name, dtype=dtype)
    check_shape(array.shape, shape, name=name)
    return array


def check_shape(actual: Sequence[int], expected: Sequence[int | str | None], *, name: str) -> None:
    """Raise BadRequest unless ``actual`` fits ``expected`` (str/None/-1 dims are dynamic)."""
    ok = len(actual) == len(expected) and all(
        not isinstance(e, int) or e < 0 or e == a for a, e in zip(actual, expected, strict=False)
    )
    if not ok:
        shown = ["-1" if not isinstance(e, int) or e < 0 else str(e) for e in expected]
        raise BadRequest(
            f"input {name!r} has shape {list(actual)}, expected [{', '.join(shown)}] (-1 = any size)"
        )


def check_batch(count: int, limit: int) -> None:
    """Raise PayloadTooLarge when a request carries more instances than ``limit``."""
    from ._errors import PayloadTooLarge

    if count > limit:
        raise PayloadTooLarge(
            f"{count} instances in one request, above the limit of {limit} (ONNXFN_MAX_BATCH): "
            "split the batch (Client.predict_batch does)"
        )
    if count == 0:
        raise BadRequest("no instances: send at least one")


__all__ = [
    "IMAGE_FORMATS",
    "ImagePreprocessor",
    "TextPreprocessor",
    "check_batch",
    "check_shape",
    "check_tensor",
    "numpy_dtype",
    "sniff_image",
    "to_array",
]
