"""Gradient-free explanations: which pixels (occlusion, RISE) or which words (token occlusion) the answer
rests on.

Only the model's forward pass is used, so it works on any ONNX graph the runtime can run: int8
(quantized) models, models without gradients, on Lambda, on CPU. Perturbed copies of the input are batched
through onnxruntime; the cost is bounded by the number of masks (``ONNXFN_EXPLAIN_MASKS``), the masks per
``session.run`` (``ONNXFN_EXPLAIN_BATCH``) and a time budget per request (``ONNXFN_EXPLAIN_BUDGET_S``).

- ``occlusion`` (default): a grey window (0 in the model's input units: the mean colour for
  mean/std-normalised models, black for 0..1 ones) slides over the image; a pixel's attribution is the
  mean drop of the target's score over the windows covering it. Deterministic. The non-overlapping windows
  run first, so when the budget runs out the map still covers the whole image, only coarser.
- ``rise`` (Petsiuk et al., 2018): random smooth masks; attribution is the score-weighted mean of the masks.
  Seeded, so the same input gets the same map. Stops early (fewer masks) when the budget runs out.
- Text: each whitespace-separated word is removed in turn (groups of adjacent words when there are more
  words than masks); a word's score is the drop of the target's score without it (negative: it spoke
  against the target).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._attribution import Clock, ImageInput, batch_size, class_scores, occlusion, rise
from ._errors import BadRequest, PayloadTooLarge
from ._image import ImagePreprocessor
from ._model import Model
from ._overlay import overlay_png
from ._settings import env_int, env_number
from ._text import TextPreprocessor

__all__ = [
    "IMAGE_METHODS",
    "ExplainSettings",
    "check_options",
    "explain_options",
    "explain_payload",
    "overlay_png",
]

IMAGE_METHODS = ("occlusion", "rise")
TEXT_METHODS = ("occlusion",)
_WORDS = re.compile(r"[ \t\n\r\f\v]+")  # the split TextPreprocessor uses (ASCII whitespace only)


@dataclass
class ExplainSettings:
    """Bounds on the cost of one ``:explain`` request (``ONNXFN_EXPLAIN_*``; docs/runtime.md)."""

    method: str = "occlusion"  # ONNXFN_EXPLAIN_METHOD: the image method when the request names none
    masks: int = 256  # ONNXFN_EXPLAIN_MASKS: most perturbed inputs per instance (windows, masks, words)
    batch: int = 32  # ONNXFN_EXPLAIN_BATCH: perturbed inputs per session.run
    budget: float = 10.0  # ONNXFN_EXPLAIN_BUDGET_S: seconds per request (under Lambda's 29 s API limit)
    max_instances: int = 4  # ONNXFN_EXPLAIN_MAX_INSTANCES: instances per request (413 above)
    rise_cells: int = 7  # RISE's mask grid (cells per side)

    @classmethod
    def from_env(cls) -> ExplainSettings:
        """Settings from the environment; a bad value raises ValueError at start-up, not per request."""
        method = (os.environ.get("ONNXFN_EXPLAIN_METHOD") or "occlusion").strip().lower()
        if method not in IMAGE_METHODS:
            raise ValueError(f"ONNXFN_EXPLAIN_METHOD={method!r}: use one of {', '.join(IMAGE_METHODS)}")
        return cls(
            method=method,
            masks=env_int("ONNXFN_EXPLAIN_MASKS", 256),
            batch=env_int("ONNXFN_EXPLAIN_BATCH", 32),
            budget=env_number("ONNXFN_EXPLAIN_BUDGET_S", 10.0, unit="seconds", zero_ok=False),
            max_instances=env_int("ONNXFN_EXPLAIN_MAX_INSTANCES", 4),
        )


# -- request options ---------------------------------------------------------------------------------------
def explain_options(content_type: str, body: bytes, query: Any) -> tuple[str | int | None, str | None]:
    """``target`` and ``method`` from a JSON body (already checked by ``parse_json``) or the query string."""
    target: Any = query.get("target") if query is not None else None
    method: Any = query.get("method") if query is not None else None
    if (
        content_type in ("application/json", "text/json")
        or content_type.endswith("+json")
        or (not content_type and body.lstrip()[:1] == b"{")
    ):
        payload = json.loads(body)
        if "target" in payload and payload["target"] is not None:
            target = payload["target"]
        if "method" in payload and payload["method"] is not None:
            method = payload["method"]
    if target is not None and (isinstance(target, bool) or not isinstance(target, (str, int))):
        raise BadRequest('"target" must be a label (string) or a class index (integer)')
    if method is not None and not isinstance(method, str):
        raise BadRequest(f'"method" must be a string: one of {", ".join(IMAGE_METHODS)}')
    return target, method


def check_options(
    model: Model, target: str | int | None, method: str | None, settings: ExplainSettings
) -> None:
    """Refuse a bad ``target`` or ``method`` before any work (and before the batch-size check)."""
    _check_model(model)
    _method(model, method, settings)
    classes = model.outputs[0].shape[-1] if model.outputs[0].shape else None
    if isinstance(classes, int) and classes > 0:
        _resolve_target(model, target, np.zeros(max(classes, 2)))
    elif isinstance(target, int) and target < 0:
        raise BadRequest(f"target index {target} is out of range: class indices start at 0")


def _check_model(model: Model) -> None:
    if model.task not in ("image-classification", "text-classification"):
        raise BadRequest(
            f"model {model.name!r} is a {model.task} model: :explain works on image and text classifiers"
        )
    if model.preprocessor is None:
        raise BadRequest(
            f"model {model.name!r} has {len(model.inputs)} inputs: :explain works on one-input image and "
            "text classifiers"
        )


def _resolve_target(model: Model, target: str | int | None, scores: np.ndarray) -> int:
    """The class index to explain: the top class by default, else a label or an index."""
    classes = scores.shape[-1]
    if target is None:
        return int(np.argmax(scores))
    labels = model.labels or []
    if isinstance(target, str):
        if target in labels:
            return labels.index(target)
        if not re.fullmatch(r"\s*-?[0-9]+\s*", target):
            shown = ", ".join(labels[:20]) + (", …" if len(labels) > 20 else "")
            raise BadRequest(
                f"target {target!r} is not a label of model {model.name!r}"
                + (f" (labels: {shown})" if labels else "")
                + ", nor a class index"
            )
        target = int(target)
    if not 0 <= target < classes:
        raise BadRequest(f"target index {target} is out of range: model {model.name!r} has {classes} classes")
    return int(target)


def _method(model: Model, method: str | None, settings: ExplainSettings) -> str:
    if isinstance(model.preprocessor, TextPreprocessor):
        chosen = "occlusion" if method is None else method
        if chosen not in TEXT_METHODS:
            raise BadRequest(f"method {method!r} does not apply to text: text models use 'occlusion'")
        return chosen
    chosen = settings.method if method is None else method
    if chosen not in IMAGE_METHODS:
        raise BadRequest(f"unknown method {method!r}: use one of {', '.join(IMAGE_METHODS)}")
    return chosen


# -- scoring -----------------------------------------------------------------------------------------------
def explain_payload(
    model: Model,
    instances: list[Any],
    target: str | int | None,
    method: str | None,
    settings: ExplainSettings,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The ``:explain`` answer: one explanation per instance (DESIGN.md, "Explanations")."""
    import base64

    from ._bodies import decode_image_instances

    timings = timings if timings is not None else {}
    _check_model(model)
    pre = model.preprocessor
    if len(instances) > settings.max_instances:
        raise PayloadTooLarge(
            f"{len(instances)} instances in one explain request, above the limit of {settings.max_instances} "
            "(ONNXFN_EXPLAIN_MAX_INSTANCES): explain fewer at a time"
        )
    chosen = _method(model, method, settings)
    clock = Clock(settings.budget)
    t0 = time.perf_counter()
    explanations = []
    if isinstance(pre, ImagePreprocessor):
        items = decode_image_instances(instances)
        if not all(isinstance(x, (bytes, bytearray)) for x in items):
            raise BadRequest(f"model {model.name!r} explains images: send image bytes or base64 images")
        inputs = [ImageInput(model, bytes(x)) for x in items]  # decode all first: bad input fails fast
        for data, image in zip(items, inputs, strict=True):
            base_scores = class_scores(model, image.tensor(np.ones((1, image.height, image.width))))[0]
            # The heatmap covers what the model saw: the whole image when stretched, else the crop or the
            # letterbox (drawn from the model-size view).
            shown = bytes(data) if getattr(pre, "resize", "stretch") == "stretch" else image.image
            index = _resolve_target(model, target, base_scores)
            if chosen == "rise":
                heatmap, used, complete = rise(model, image, index, settings, clock)
            else:
                heatmap, used, complete = occlusion(
                    model, image, index, float(base_scores[index]), settings, clock
                )
            explanations.append(
                {
                    **_label(model, index, base_scores),
                    "method": chosen,
                    "masks": used,
                    "complete": complete,
                    "heatmap": np.round(heatmap, 4).tolist(),
                    "overlay": base64.b64encode(overlay_png(shown, heatmap)).decode("ascii"),
                }
            )
    else:
        assert isinstance(pre, TextPreprocessor)
        if not all(isinstance(x, str) for x in instances):
            raise BadRequest(f"model {model.name!r} explains text: send instances as strings")
        for text in instances:
            pre.array(text)  # the same length and type checks as predict
        for text in instances:
            explanations.append(_explain_text(model, text, target, settings, clock))
    timings["explain"] = (time.perf_counter() - t0) * 1000
    return {"model": model.name, "version": model.version, "explanations": explanations}


def _label(model: Model, index: int, scores: np.ndarray) -> dict[str, Any]:
    labels = model.labels or []
    return {
        "label": labels[index] if index < len(labels) else str(index),
        "index": index,
        "score": float(scores[index]),
    }


def _explain_text(
    model: Model, text: str, target: str | int | None, settings: ExplainSettings, clock: Clock
) -> dict[str, Any]:
    pre = model.preprocessor
    assert isinstance(pre, TextPreprocessor)
    words = [w for w in _WORDS.split(text) if w]
    base_scores = class_scores(model, pre([text]))[0]
    index = _resolve_target(model, target, base_scores)
    base = float(base_scores[index])
    group = max(1, math.ceil(len(words) / settings.masks))
    starts = list(range(0, len(words), group))
    scores = [0.0] * len(words)
    size = batch_size(model, settings)
    done = 0
    for first in range(0, len(starts), size):
        if done and clock.expired():
            break
        chunk = starts[first : first + size]
        variants = [" ".join(words[:s] + words[s + group :]) for s in chunk]
        values = class_scores(model, pre(variants))[:, index]
        for s, value in zip(chunk, values, strict=True):
            for i in range(s, min(s + group, len(words))):
                scores[i] = round(base - float(value), 6)
        done += len(chunk)
    return {
        **_label(model, index, base_scores),
        "method": "occlusion",
        "masks": done,
        "complete": done == len(starts),
        "tokens": words,
        "scores": scores,
    }
