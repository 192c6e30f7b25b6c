"""One served model: an onnxruntime session, its ``onnxfn.*`` metadata and its preprocessing.

A little over 350 lines because ``Model`` is one concern end to end (instances → feeds → ``run`` →
``classify``, for one or several inputs); its parts that stand alone live in ``_specs.py``.
"""

from __future__ import annotations

import logging
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._bodies import decode_image_instances
from ._errors import BadRequest
from ._image import ImagePreprocessor
from ._metadata import ModelMetadata, input_preprocess
from ._metrics import observe_run
from ._specs import TensorSpec, image_spec_from_shape, session_options
from ._tensors import check_tensor
from ._text import TextPreprocessor
from ._tracing import span

log = logging.getLogger("onnxfn.runtime")


class Model:
    """A loaded model. ``run`` takes and returns named tensors; ``predict`` takes user instances."""

    def __init__(
        self,
        name: str,
        path: str | Path,
        *,
        threads: int = 1,
        max_image_pixels: int = 40_000_000,
        sha256: str | None = None,
        instances: int = 1,
    ) -> None:
        import onnxruntime as ort

        self.name = name
        self.path = Path(path)
        self.sha256 = sha256
        try:
            # ``instances`` sessions, each with its own intra-op thread pool (Triton's instance group).
            self.sessions = [
                ort.InferenceSession(
                    str(self.path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
                )
                for _ in range(max(1, int(instances)))
            ]
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"model {name!r}: onnxruntime cannot load {self.path}: {exc}") from None
        self.session = self.sessions[0]
        self._idle: queue.SimpleQueue[Any] | None = None
        if len(self.sessions) > 1:  # a request takes whichever session is free
            self._idle = queue.SimpleQueue()
            for session in self.sessions:
                self._idle.put(session)
        meta = self.session.get_modelmeta()
        self.metadata = ModelMetadata.from_map(dict(meta.custom_metadata_map), version=meta.version)
        self.inputs = [TensorSpec(i.name, i.type, tuple(i.shape)) for i in self.session.get_inputs()]
        self.outputs = [TensorSpec(o.name, o.type, tuple(o.shape)) for o in self.session.get_outputs()]
        self.input_names = {spec.name: spec for spec in self.inputs}
        self.output_names = {spec.name: spec for spec in self.outputs}
        # One preprocessor per input (None: numeric arrays as given). ``preprocessor`` is the single
        # input's, for the single-input models most code deals with; None for multi-input models.
        self.preprocessors = self._preprocessors(max_image_pixels)
        self.preprocessor = self.preprocessors[self.inputs[0].name] if len(self.inputs) == 1 else None

    @property
    def version(self) -> str:
        return str(self.metadata.version)

    @property
    def task(self) -> str:
        return self.metadata.task

    @property
    def labels(self) -> list[str] | None:
        return self.metadata.labels

    def _preprocessors(self, max_image_pixels: int) -> dict[str, ImagePreprocessor | TextPreprocessor | None]:
        try:
            specs = input_preprocess(self.metadata.preprocess, [spec.name for spec in self.inputs])
        except ValueError as exc:
            raise ValueError(f"model {self.name!r}: {exc}") from None
        if len(self.inputs) == 1:
            first = self.inputs[0]
            return {first.name: self._preprocessor(specs[first.name], max_image_pixels)}
        out: dict[str, ImagePreprocessor | TextPreprocessor | None] = {}
        for tensor in self.inputs:
            spec = specs[tensor.name]
            try:
                if spec is None:
                    out[tensor.name] = None
                elif "vocab" in spec:
                    out[tensor.name] = TextPreprocessor(spec, dtype=tensor.dtype)
                else:
                    out[tensor.name] = ImagePreprocessor(
                        spec, dtype=tensor.dtype, max_pixels=max_image_pixels, flatten=len(tensor.shape) == 2
                    )
            except ValueError as exc:
                raise ValueError(f"model {self.name!r}, input {tensor.name!r}: {exc}") from None
        return out

    def _preprocessor(
        self, spec: dict[str, Any] | None, max_image_pixels: int
    ) -> ImagePreprocessor | TextPreprocessor | None:
        first = self.inputs[0]
        if self.task == "image-classification":
            if spec is None:
                spec = image_spec_from_shape(first.shape)
            return ImagePreprocessor(
                spec, dtype=first.dtype, max_pixels=max_image_pixels, flatten=len(first.shape) == 2
            )
        if self.task == "text-classification":
            if spec is None:
                raise ValueError(f"model {self.name!r}: a text model needs a vocab in onnxfn.preprocess")
            return TextPreprocessor(spec, dtype=first.dtype)
        return None

    def check(self, feeds: dict[str, Any], outputs: list[str] | None = None) -> list[str]:
        """The output names to compute; BadRequest when inputs are missing or unknown, or outputs unknown."""
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise BadRequest(
                f"model {self.name!r} needs inputs {sorted(self.input_names)}; missing {missing}"
            )
        unknown = [name for name in feeds if name not in self.input_names]
        if unknown:
            raise BadRequest(
                f"model {self.name!r} has no input {unknown[0]!r}; inputs: {sorted(self.input_names)}"
            )
        names = outputs or [spec.name for spec in self.outputs]
        for name in names:
            if name not in self.output_names:
                raise BadRequest(
                    f"model {self.name!r} has no output {name!r}; outputs: {sorted(self.output_names)}"
                )
        return names

    @property
    def batchable(self) -> bool:
        """Whether rows of different requests can share one run: every input and output has a free batch dim."""
        return all(
            spec.shape and not (isinstance(spec.shape[0], int) and spec.shape[0] > 0)
            for spec in (*self.inputs, *self.outputs)
        )

    # -- tensors -------------------------------------------------------------------------------
    def run(
        self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None, *, session: Any = None
    ) -> dict[str, np.ndarray]:
        """Run the graph on named, already-validated inputs (on ``session``, else a free one)."""
        names = self.check(feeds, outputs)
        if session is None and self._idle is not None:
            session = self._idle.get()
            try:
                return self._run(session, names, feeds)
            finally:
                self._idle.put(session)
        return self._run(session or self.session, names, feeds)

    def _run(self, session: Any, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = _rows(feeds)  # with batching, the fused batch: what onnxfn_batch_size observes
        start = time.perf_counter()
        try:
            with span("onnxfn.inference", model=self.name, rows=rows):
                results = session.run(names, feeds)
        except Exception as exc:  # shapes the declared dims allowed but the graph rejects
            raise BadRequest(f"model {self.name!r} rejected the input: {_short(exc)}") from None
        observe_run(self.name, rows, time.perf_counter() - start)
        return dict(zip(names, results, strict=True))

    def tensor(self, value: Any, name: str | None = None) -> np.ndarray:
        """A validated input tensor from nested lists or an array."""
        spec = self.input_names[name] if name else self.inputs[0]
        return check_tensor(value, name=spec.name, dtype=spec.dtype, shape=spec.shape)

    # -- instances -----------------------------------------------------------------------------
    def prepare(self, instances: list[Any]) -> np.ndarray:
        """One input batch from user instances: image bytes, text, or numeric arrays (one per row)."""
        first = self.inputs[0]
        if isinstance(self.preprocessor, ImagePreprocessor):
            if all(isinstance(x, (bytes, bytearray)) for x in instances):
                return self.preprocessor(instances)
        elif isinstance(self.preprocessor, TextPreprocessor):
            if all(isinstance(x, str) for x in instances):
                return self.preprocessor(instances)
            raise BadRequest(f"model {self.name!r} classifies text: send instances as strings")
        if any(isinstance(x, (bytes, bytearray, str)) for x in instances):
            kind = "images" if isinstance(self.preprocessor, ImagePreprocessor) else "numeric arrays"
            raise BadRequest(f"model {self.name!r} expects {kind}; do not mix kinds in one request")
        return self.tensor([self._row(x, first) for x in instances])

    @staticmethod
    def _row(value: Any, spec: TensorSpec) -> Any:
        if isinstance(value, (int, float)):
            raise BadRequest(
                f"each instance must be an array shaped like {spec.v2_shape()[1:]}, got a single number"
            )
        return value

    def feeds(self, instances: list[Any]) -> dict[str, np.ndarray]:
        """Named input batches from user instances, for models with one input or several.

        A multi-input model takes each instance as an object keyed by input name (DESIGN.md):
        ``{"image": <base64 image or bytes>, "features": [...], "text": "..."}``; each value goes through
        its input's own preprocessing. A single-input model takes bare instances (see ``prepare``) or the
        same keyed form with its one input name.
        """
        names = [spec.name for spec in self.inputs]
        if len(names) == 1:
            name = names[0]
            if instances and all(isinstance(x, dict) and set(x) == {name} for x in instances):
                instances = [x[name] for x in instances]
                if isinstance(self.preprocessor, ImagePreprocessor):
                    instances = decode_image_instances(instances)
            keyed = next((x for x in instances if isinstance(x, dict) and set(x) != {"b64"}), None)
            if keyed is not None:
                raise BadRequest(
                    f"model {self.name!r} has one input {name!r}: send instances bare or as "
                    f'{{"{name}": ...}}, not with keys {sorted(keyed)}'
                )
            return {name: self.prepare(instances)}
        example = ", ".join(f'"{n}": ...' for n in names)
        columns: dict[str, list[Any]] = {name: [] for name in names}
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise BadRequest(
                    f"model {self.name!r} has inputs {names}: send each instance as an object keyed by "
                    f"input name, e.g. {{{example}}} (instance {i} is a {_kind(instance)})"
                )
            missing = [n for n in names if n not in instance]
            unknown = [k for k in instance if k not in columns]
            if missing or unknown:
                what = f"lacks {missing}" if missing else f"has unknown key(s) {unknown}"
                raise BadRequest(f"instance {i} {what}: model {self.name!r} takes exactly the inputs {names}")
            for name in names:
                columns[name].append(instance[name])
        return {
            name: self._column(spec, columns[name]) for name, spec in zip(names, self.inputs, strict=True)
        }

    def _column(self, spec: TensorSpec, values: list[Any]) -> np.ndarray:
        """One input's batch from the instances' values for it."""
        pre = self.preprocessors.get(spec.name)
        try:
            if isinstance(pre, ImagePreprocessor):
                values = decode_image_instances(values)
                if not all(isinstance(v, (bytes, bytearray)) for v in values):
                    raise BadRequest("is an image: send it base64-encoded")
                return pre(values)
            if isinstance(pre, TextPreprocessor):
                if not all(isinstance(v, str) for v in values):
                    raise BadRequest("is text: send a string")
                return pre(values)
            if any(isinstance(v, (bytes, bytearray, str, dict)) for v in values):
                raise BadRequest(
                    f"takes numeric arrays shaped like {spec.v2_shape()[1:]}, not images or text"
                )
            return check_tensor(values, name=spec.name, dtype=spec.dtype, shape=spec.shape)
        except BadRequest as exc:
            if exc.message.startswith("input "):
                raise
            raise BadRequest(f"input {spec.name!r} {exc.message}") from None

    def classify(self, scores: np.ndarray, top_k: int = 5) -> list[list[dict[str, Any]]]:
        """Top-k ``{"label", "index", "score"}`` per row of class scores, best first."""
        scores = np.asarray(scores)
        if scores.ndim == 1:
            scores = scores[:, None]
        scores = scores.reshape(scores.shape[0], -1)
        if scores.dtype.kind != "f":  # integer (e.g. uint8 quantized) scores: negating them would wrap
            scores = scores.astype(np.float64)
        classes = scores.shape[1]
        if classes == 1:  # a sigmoid binary classifier: p(class 1)
            p = scores[:, 0].astype(np.float64)
            scores = np.stack([1.0 - p, p], axis=1)
            classes = 2
        k = max(1, min(int(top_k), classes))
        labels = self.labels or []
        out = []
        for row in scores:
            idx = top_indices(row, k)
            out.append(
                [
                    {
                        "label": labels[i] if i < len(labels) else str(int(i)),
                        "index": int(i),
                        "score": float(row[i]),
                    }
                    for i in idx
                ]
            )
        return out

    def warmup(self) -> None:
        """Run the graph once on zeros (batch of one), and load Pillow's decoders for image models.

        Called during Lambda's init phase so the first request does not pay for lazy initialisation.
        """
        if any(isinstance(p, ImagePreprocessor) for p in self.preprocessors.values()):
            from PIL import Image

            Image.preinit()
        feeds = {}
        for spec in self.inputs:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
            pre = self.preprocessors.get(spec.name)
            if isinstance(pre, ImagePreprocessor) and len(shape) == 4 and not pre.flatten:
                height, width = pre.size or (64, 64)  # size null: a typical small image, not 1x1
                shape = (
                    [1, pre.channels, height, width]
                    if pre.layout == "NCHW"
                    else [1, height, width, pre.channels]
                )
            dtype = spec.dtype
            feeds[spec.name] = (
                np.full(shape, "", dtype=object) if dtype is np.object_ else np.zeros(shape, dtype)
            )
        for session in self.sessions:
            try:
                session.run(None, feeds)
            except Exception as exc:  # a model with data-dependent constraints: warm-up is best effort
                log.debug("warm-up of %s skipped: %s", self.name, exc)
                return

    def describe(self) -> dict[str, Any]:
        """KServe V2 model metadata, plus onnxfn's own fields."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": s.name, "datatype": s.datatype, "shape": s.v2_shape()} for s in self.inputs],
            "outputs": [
                {"name": s.name, "datatype": s.datatype, "shape": s.v2_shape()} for s in self.outputs
            ],
            "parameters": {
                "task": self.task,
                "labels": self.labels,
                "preprocess": self.metadata.preprocess,
                "quantization": self.metadata.quantization,
                "sha256": self.sha256,
            },
        }


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "binary image"
    return type(value).__name__


def top_indices(row: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` largest values of ``row``, best first, ties by lower index.

    The same order as a stable ``argsort(-row)[:k]``, from a partition in O(n) instead of a sort of the
    whole row.
    """
    if k * 8 >= row.shape[0] or not np.isfinite(row).all():  # short rows, NaN/inf: the plain sort
        return np.argsort(-row, kind="stable")[:k]
    kth = np.partition(row, row.shape[0] - k)[row.shape[0] - k]  # the k-th largest value
    chosen = np.flatnonzero(row >= kth)  # ascending: a stable sort keeps ties by lower index
    return chosen[np.argsort(-row[chosen], kind="stable")[:k]]


def _rows(feeds: dict[str, np.ndarray]) -> int:
    """Rows in this run: the first input's leading dimension (1 for a scalar input)."""
    for value in feeds.values():
        shape = getattr(value, "shape", ())
        return int(shape[0]) if shape else 1
    return 0


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    first = text[-1] if text else type(exc).__name__
    return first[:limit]
