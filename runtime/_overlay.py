"""The explanation overlay: a heatmap in warm colours over the image the model saw, as a PNG."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ._image import IMAGE_FORMATS

OVERLAY_MAX_SIDE = 320  # overlay PNGs are for looking at: a few tens of KB, not the original's size
OVERLAY_MIN_SIDE = 224

_ANCHORS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_COLOURS = np.array(  # a "jet"-like ramp: blue (no evidence) → cyan → yellow → red (most evidence)
    [[0, 0, 160], [0, 160, 255], [80, 255, 120], [255, 220, 0], [230, 20, 20]], dtype=np.float64
)


def _colourise(heatmap: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(heatmap, _ANCHORS, _COLOURS[:, c]) for c in range(3)], axis=-1)


def overlay_png(data: bytes | Any, heatmap: np.ndarray) -> bytes:
    """The image (bytes or a PIL image) with ``heatmap`` (H×W in 0..1) laid over it, as PNG bytes.

    Sized for a screen (longest side 224–320 px); evidence shows in warm colours, the rest stays visible.
    """
    from PIL import Image, ImageOps

    image: Image.Image
    if isinstance(data, (bytes, bytearray)):
        image = Image.open(io.BytesIO(bytes(data)), formats=IMAGE_FORMATS)
        if image.format == "JPEG":
            image.draft("RGB", (OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE))
        image.load()
    else:
        image = data
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: S110 - a broken EXIF block: draw the image as stored
        pass
    image = image.convert("RGBA").convert("RGB") if image.mode in ("P", "PA", "LA") else image.convert("RGB")
    longest = max(image.size)
    target = min(max(longest, OVERLAY_MIN_SIDE), OVERLAY_MAX_SIDE)
    scale = target / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 4 else Image.Resampling.BILINEAR
    image = image.resize(size, resample)
    heat = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR
    )
    h = np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0)[..., None]
    alpha = 0.15 + 0.55 * h
    blended = np.asarray(image, dtype=np.float64) * (1 - alpha) + _colourise(h[..., 0]) * alpha
    out = io.BytesIO()
    Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), mode="RGB").save(out, format="PNG")
    return out.getvalue()


# -- the payload -------------------------------------------------------------------------------------------
