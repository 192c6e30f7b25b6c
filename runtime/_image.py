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
