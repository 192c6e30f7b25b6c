"""Image attribution for ``:explain``: occlusion windows and RISE masks, batched through onnxruntime.

Each method perturbs the image in the model's own units, runs the perturbed copies in batches of
``settings.batch`` and stops when the request's time budget (``Clock``) runs out. ``_explain.py`` drives it.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from ._image import ImagePreprocessor
from ._model import Model

if TYPE_CHECKING:
    from ._explain import ExplainSettings


def class_scores(model: Model, batch: np.ndarray) -> np.ndarray:
    """(n, classes) scores of the model's first output; a one-column (sigmoid) output becomes [1-p, p]."""
    name = model.outputs[0].name
    out = np.asarray(model.run({model.inputs[0].name: batch}, [name])[name], dtype=np.float64)
    out = out.reshape(out.shape[0], -1)
    if out.shape[1] == 1:
        out = np.concatenate([1.0 - out, out], axis=1)
    return out


def batch_size(model: Model, settings: ExplainSettings) -> int:
    first = model.inputs[0].shape[0] if model.inputs[0].shape else None
    if isinstance(first, int) and first > 0:
        return first  # a graph exported with a fixed batch size: feed exactly that many
    return settings.batch


class Clock:
    """The request's time budget, shared by its instances."""

    def __init__(self, budget: float) -> None:
        self.end = time.perf_counter() + budget

    def expired(self) -> bool:
        return time.perf_counter() >= self.end


# -- images ------------------------------------------------------------------------------------------------
class ImageInput:
    """One image in the model's units, as H×W×C float, and the way back to the model's layout."""

    def __init__(self, model: Model, data: bytes) -> None:
        pre = model.preprocessor
        assert isinstance(pre, ImagePreprocessor)
        self.pre = pre
        self.image = pre.load(data)  # decoded, upright, model size: BadRequest exactly as for predict
        self.integer = pre.dtype == np.uint8
        self.hwc = pre.hwc(self.image).astype(np.float32, copy=False)  # the model's channel order and units
        self.height, self.width = self.hwc.shape[:2]

    def tensor(self, masks: np.ndarray) -> np.ndarray:
        """The image under each mask (N×H×W in 0..1; 0 = replaced by the baseline, 0 in model units)."""
        batch = self.hwc[None] * masks[..., None].astype(np.float32)
        if self.integer:
            batch = np.rint(batch)
        if self.pre.layout == "NCHW":
            batch = np.transpose(batch, (0, 3, 1, 2))
        if self.pre.flatten:
            batch = batch.reshape(batch.shape[0], -1)
        return batch.astype(self.pre.dtype, copy=False)


def _occlusion_windows(height: int, width: int, limit: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Window size, stride and top-left corners: tiling corners first, then the half-stride ones."""
    win = max(1, math.ceil(min(height, width) / 6))
    while True:
        stride = max(1, win // 2)
        win = 1 if win == 1 else 2 * stride  # the tiling corners are then on the stride grid
        ys = sorted(set(range(0, height - win + 1, stride)) | {max(0, height - win)})
        xs = sorted(set(range(0, width - win + 1, stride)) | {max(0, width - win)})
        if len(ys) * len(xs) <= limit or win >= min(height, width):
            break
        win += 1 if win == 1 else 2
    tile_y = set(range(0, height - win + 1, win)) | {max(0, height - win)}
    tile_x = set(range(0, width - win + 1, win)) | {max(0, width - win)}
    corners = [(y, x) for y in ys for x in xs]
    corners.sort(key=lambda c: c[0] not in tile_y or c[1] not in tile_x)
    return win, stride, corners


def occlusion(
    model: Model, image: ImageInput, index: int, base: float, settings: ExplainSettings, clock: Clock
) -> tuple[np.ndarray, int, bool]:
    h, w = image.height, image.width
    win, _, corners = _occlusion_windows(h, w, settings.masks)
    total = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    size = batch_size(model, settings)
    done = 0
    for start in range(0, len(corners), size):
        if done and clock.expired():
            break
        chunk = corners[start : start + size]
        masks = np.ones((len(chunk), h, w), dtype=np.float32)
        for i, (y, x) in enumerate(chunk):
            masks[i, y : y + win, x : x + win] = 0.0
        scores = class_scores(model, image.tensor(masks))[:, index]
        for (y, x), score in zip(chunk, scores, strict=True):
            total[y : y + win, x : x + win] += base - score
            count[y : y + win, x : x + win] += 1.0
        done += len(chunk)
    saliency = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    positive = np.clip(saliency, 0.0, None)
    peak = positive.max()
    heatmap = positive / peak if peak > 0 else positive
    return heatmap, done, done == len(corners)


def _upsample_matrix(out_size: int, cells: int) -> np.ndarray:
    """Linear interpolation from ``cells`` grid values to ``out_size`` samples (out_size × cells)."""
    pos = np.linspace(0.0, cells - 1.0, out_size)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, cells - 1)
    frac = pos - lo
    matrix = np.zeros((out_size, cells))
    matrix[np.arange(out_size), lo] += 1.0 - frac
    matrix[np.arange(out_size), hi] += frac
    return matrix


def _rise_masks(count: int, height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """RISE's smooth masks: a random binary grid, upsampled bilinearly, randomly shifted by < one cell."""
    cells = max(2, min(cells, height, width))
    cell_h, cell_w = math.ceil(height / cells), math.ceil(width / cells)
    grid = (rng.random((count, cells, cells)) < 0.5).astype(np.float64)
    big_h, big_w = (cells + 1) * cell_h, (cells + 1) * cell_w
    ry, rx = _upsample_matrix(big_h, cells), _upsample_matrix(big_w, cells)
    big = ry @ grid @ rx.T  # (n, big_h, big_w): bilinear upsampling as two matrix products
    dy = rng.integers(0, cell_h, size=count)
    dx = rng.integers(0, cell_w, size=count)
    return np.stack([big[i, dy[i] : dy[i] + height, dx[i] : dx[i] + width] for i in range(count)]).astype(
        np.float32
    )


def rise(
    model: Model, image: ImageInput, index: int, settings: ExplainSettings, clock: Clock
) -> tuple[np.ndarray, int, bool]:
    h, w = image.height, image.width
    rng = np.random.default_rng(0)
    size = batch_size(model, settings)
    weighted = np.zeros((h, w), dtype=np.float64)
    coverage = np.zeros((h, w), dtype=np.float64)
    done = 0
    while done < settings.masks:
        if done and clock.expired():
            break
        masks = _rise_masks(min(size, settings.masks - done), h, w, settings.rise_cells, rng)
        scores = class_scores(model, image.tensor(masks))[:, index]
        weighted += np.tensordot(scores, masks, axes=1)
        coverage += masks.sum(axis=0)
        done += len(masks)
    saliency = np.divide(weighted, coverage, out=np.zeros_like(weighted), where=coverage > 0)
    low, high = saliency.min(), saliency.max()
    heatmap = (saliency - low) / (high - low) if high - low > 1e-12 else np.zeros_like(saliency)
    return heatmap, done, done >= settings.masks
