"""Images to model tensors: sniff, decode (bounded), orient, convert colour, resize, normalise."""

from __future__ import annotations

import io
import logging
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


def sniff_image(data: bytes) -> str | None:
    """The image format named by the first bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


RESIZE_MODES = ("stretch", "crop", "pad")
COLORS = ("L", "RGB", "BGR")
DEFAULT_CROP_RATIO = 0.875


class ImagePreprocessor:
    """Decode, orient, convert, resize and normalise images into one float batch.

    ``spec`` is the model's ``onnxfn.preprocess`` (DESIGN.md): ``size`` [H, W] or null (keep each image's
    own size), ``layout`` NHWC|NCHW, ``color`` (``L``, ``RGB`` or ``BGR``: RGB pixels in reversed channel
    order, as Caffe-trained models expect), ``resize`` (``stretch``: to H×W ignoring the aspect ratio;
    ``crop``: shorter side to size/``crop_ratio`` then a centre crop; ``pad``: fit inside H×W, letterboxed
    with ``pad_value``), ``scale``, ``mean``, ``std``: ``(pixel * scale - mean) / std`` per channel, with
    ``mean``/``std`` in the model's channel order.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        *,
        dtype: Any = np.float32,
        max_pixels: int = 40_000_000,
        flatten: bool = False,
    ) -> None:
        size = spec.get("size")
        if size is None:
            self.size: tuple[int, int] | None = None
        else:
            try:
                height, width = (int(v) for v in size)
            except (TypeError, ValueError):
                raise ValueError(f"image preprocess size must be [H, W] or null, got {size!r}") from None
            if height < 1 or width < 1:
                raise ValueError(f"image preprocess size must be positive, got {size!r}")
            self.size = (height, width)
        self.layout = str(spec.get("layout", "NHWC")).upper()
        if self.layout not in ("NHWC", "NCHW"):
            raise ValueError(f"layout must be NHWC or NCHW, got {self.layout}")
        self.color = str(spec.get("color", "RGB")).upper()
        if self.color not in COLORS:
            raise ValueError(f"color must be one of {', '.join(COLORS)}, got {spec.get('color')!r}")
        self.mode = "L" if self.color == "L" else "RGB"  # the Pillow mode images are converted to
        self.resize = str(spec.get("resize", "stretch")).lower()
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {spec.get('resize')!r}")
        self.crop_ratio = float(spec.get("crop_ratio", DEFAULT_CROP_RATIO))
        if not 0 < self.crop_ratio <= 1:
            raise ValueError(f"crop_ratio must be in (0, 1], got {self.crop_ratio}")
        channels = 1 if self.color == "L" else 3
        pad = np.broadcast_to(np.asarray(spec.get("pad_value", 0), dtype=np.float64), (channels,))
        if np.any(pad < 0) or np.any(pad > 255):
            raise ValueError(f"pad_value must be a pixel value in 0..255, got {spec.get('pad_value')!r}")
        self.pad_value = tuple(round(float(v)) for v in pad)
        if self.size is None and self.resize != "stretch":
            raise ValueError(f"resize {self.resize!r} needs a size [H, W]")
        scale = float(spec.get("scale", 1 / 255))
        mean = np.broadcast_to(np.asarray(spec.get("mean", 0.0), dtype=np.float32), (channels,))
        std = np.broadcast_to(np.asarray(spec.get("std", 1.0), dtype=np.float32), (channels,))
        if np.any(std == 0):
            raise ValueError("std must not be 0")
        # (pixel * scale - mean) / std  ==  pixel * a + b, computed once.
        self._a = (scale / std).astype(np.float32)
        self._b = (-mean / std).astype(np.float32)
        self._uniform = bool(np.all(self._a == self._a[0]) and np.all(self._b == self._b[0]))
        self._rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.dtype = dtype
        self.max_pixels = int(max_pixels)
        self.channels = channels
        self.flatten = flatten or bool(spec.get("flatten", False))  # dense (MLP) models take [N, H*W*C]

    def spec(self) -> dict[str, Any]:
        return {
            "size": list(self.size) if self.size else None,
            "layout": self.layout,
            "color": self.color,
            "resize": self.resize,
        }

    def load(self, data: bytes | Any) -> Any:
        """A decoded, upright ``PIL.Image`` in the model's colour mode, resized as the spec says."""
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
            if fmt == "JPEG" and self.size is not None:
                # Let libjpeg decode at a reduced scale when the image is much larger than needed
                # (draft keeps both sides at least as large as requested).
                height, width = self.size
                if self.resize == "crop":
                    height, width = (int(np.ceil(d / self.crop_ratio)) for d in self.size)
                image.draft(self.mode, (width, height))
            try:
                image.load()
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as exc:
                raise BadRequest(f"cannot decode {fmt} image (truncated or corrupt?): {exc}") from None
        try:
            if image is data:  # the caller's image: a rotated copy
                image = ImageOps.exif_transpose(image)
            else:  # one this call decoded: in place (no copy of an upright image's pixels)
                ImageOps.exif_transpose(image, in_place=True)
        except Exception as exc:  # a broken EXIF block must not fail an otherwise good image
            log.debug("ignoring unreadable EXIF orientation: %s", exc)
        if image.mode != self.mode:
            if image.mode in ("P", "PA"):  # palette images convert cleanly only through RGBA
                image = image.convert("RGBA")
            image = image.convert(self.mode)
        return self._resize(image)

    def _resize(self, image: Any) -> Any:
        from PIL import Image

        if self.size is None:
            return image
        height, width = self.size
        w, h = image.size
        if self.resize == "stretch":
            if (w, h) != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            return image
        if self.resize == "crop":
            # Shorter side (relative to the target) to size / crop_ratio, then the centre H×W.
            # (torchvision's Resize(int(S / 0.875)) + CenterCrop(S) for square sizes; floors like it)
            factor = max(height / (h * self.crop_ratio), width / (w * self.crop_ratio))
            new = (max(width, int(w * factor + 1e-6)), max(height, int(h * factor + 1e-6)))
            if new != (w, h):
                image = image.resize(new, Image.Resampling.BILINEAR)
            left, top = (new[0] - width) // 2, (new[1] - height) // 2
            return image.crop((left, top, left + width, top + height))
        # pad: fit inside H×W keeping the aspect ratio, centred on a pad_value canvas (letterbox)
        factor = min(height / h, width / w)
        new = (max(1, min(width, int(w * factor + 1e-6))), max(1, min(height, int(h * factor + 1e-6))))
        if new != (w, h):
            image = image.resize(new, Image.Resampling.BILINEAR)
        fill = self.pad_value[0] if self.mode == "L" else self.pad_value
        canvas = Image.new(self.mode, (width, height), fill)
        canvas.paste(image, ((width - new[0]) // 2, (height - new[1]) // 2))
        return canvas

    def hwc(self, image: Any) -> np.ndarray:
        """One image as H×W×C in the model's channel order: ``pixel * a + b`` in float32, or the pixels
        themselves (uint8) for a model that takes them raw."""
        pixels = np.asarray(image, dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.color == "BGR":
            pixels = pixels[:, :, ::-1]
        if self.dtype == np.uint8:
            return np.ascontiguousarray(pixels)
        return self._normalise(pixels)

    def array(self, image: Any) -> np.ndarray:
        """One image as an HWC/CHW tensor of the model's dtype (no batch axis)."""
        out = self.hwc(image).astype(self.dtype, copy=False)
        if self.layout == "NCHW":
            out = np.transpose(out, (2, 0, 1))
        if self.flatten:
            out = out.reshape(-1)
        return out

    def _normalise(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels * a + b`` per channel in float32, over whole rows.

        (Broadcasting a 3-vector over HWC runs numpy's inner loop 3 elements at a time: 7× slower on a
        96×96 image than scaling rows of W·C values by the vector tiled W times.)
        """
        height, width, channels = pixels.shape
        out = np.empty((height, width, channels), np.float32)
        np.copyto(out, pixels)
        rows = out.reshape(height, width * channels)  # a view: ``out`` is contiguous
        a, b = self._row_coefficients(width)
        rows *= a
        rows += b
        return out

    def _row_coefficients(self, width: int) -> tuple[Any, Any]:
        """``a`` and ``b`` for one row of ``width`` pixels: scalars when every channel shares them."""
        if self._uniform:
            return self._a[0], self._b[0]
        cached = self._rows.get(width)
        if cached is None:
            if len(self._rows) > 16:  # images of many sizes (size null): keep the cache small
                self._rows.clear()
            cached = self._rows[width] = (np.tile(self._a, width), np.tile(self._b, width))
        return cached

    def __call__(self, images: Sequence[bytes | Any]) -> np.ndarray:
        """A batch from encoded images (bytes) or PIL images."""
        arrays = [self.array(self.load(item)) for item in images]
        if self.size is None and len({a.shape for a in arrays}) > 1:
            sizes = sorted({f"{a.shape[1]}x{a.shape[0]}" for a in arrays if a.ndim == 3})
            raise BadRequest(
                f"this model takes each image at its own size, and images in one request must share it "
                f"(got {', '.join(sizes[:4])}): send images of different sizes in separate requests"
            )
        return np.stack(arrays)
