"""The ``onnxfn.*`` metadata carried inside a model file (DESIGN.md, "Model file").

Reading works from an onnxruntime session (no ``onnx`` package needed); writing takes an
``onnx.ModelProto`` and is used by the converter and by tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TASK = "onnxfn.task"
LABELS = "onnxfn.labels"
PREPROCESS = "onnxfn.preprocess"
SOURCE = "onnxfn.source"
QUANTIZATION = "onnxfn.quantization"

TASKS = ("image-classification", "text-classification", "tensor")


@dataclass
class ModelMetadata:
    """What the runtime needs to know about a model, beyond its graph."""

    task: str = "tensor"
    labels: list[str] | None = None
    preprocess: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | str = "none"
    version: int = 1

    @classmethod
    def from_map(cls, props: dict[str, str], version: int = 1) -> ModelMetadata:
        """Parse ``metadata_props`` (a ``{key: json-string}`` map); unknown keys are ignored."""

        def load(key: str, default: Any) -> Any:
            raw = props.get(key)
            if raw is None or raw == "":
                return default
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                return raw

        task = props.get(TASK) or "tensor"
        if task not in TASKS:
            raise ValueError(f"metadata {TASK}={task!r} is not one of {', '.join(TASKS)}")
        labels = load(LABELS, None)
        if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise ValueError(f"metadata {LABELS} must be a JSON list of strings")
        preprocess = load(PREPROCESS, None)
        if preprocess is not None and not isinstance(preprocess, dict):
            raise ValueError(f"metadata {PREPROCESS} must be a JSON object")
        if isinstance(preprocess, dict) and "inputs" in preprocess:
            per_input = preprocess["inputs"]
            if not isinstance(per_input, dict) or not all(
                v is None or isinstance(v, dict) for v in per_input.values()
            ):
                raise ValueError(
                    f'metadata {PREPROCESS} "inputs" must map input names to a JSON object or null'
                )
        return cls(
            task=task,
            labels=labels,
            preprocess=preprocess,
            source=load(SOURCE, {}),
            quantization=load(QUANTIZATION, "none"),
            version=max(1, int(version or 1)),
        )

    def to_map(self) -> dict[str, str]:
        out = {TASK: self.task, QUANTIZATION: _dump(self.quantization), SOURCE: _dump(self.source)}
        if self.labels is not None:
            out[LABELS] = _dump(list(self.labels))
        if self.preprocess is not None:
            out[PREPROCESS] = _dump(self.preprocess)
        return out

    def write(self, model_proto: Any) -> None:
        """Store this metadata in an ``onnx.ModelProto`` (replacing earlier ``onnxfn.*`` entries)."""
        props = {p.key: p.value for p in model_proto.metadata_props if not p.key.startswith("onnxfn.")}
        props.update(self.to_map())
        del model_proto.metadata_props[:]
        for key in sorted(props):
            entry = model_proto.metadata_props.add()
            entry.key, entry.value = key, props[key]
        model_proto.model_version = int(self.version)

    @classmethod
    def read(cls, model_proto: Any) -> ModelMetadata:
        """Metadata of an ``onnx.ModelProto``."""
        props = {p.key: p.value for p in model_proto.metadata_props}
        return cls.from_map(props, version=model_proto.model_version)


def input_preprocess(preprocess: dict[str, Any] | None, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each input's preprocessing spec (``None``: numeric arrays fed as given).

    ``onnxfn.preprocess`` is either one spec for the first input (single-input models, as in the first
    round) or ``{"inputs": {name: spec | null}}`` for models with several inputs (DESIGN.md).
    """
    out: dict[str, dict[str, Any] | None] = {name: None for name in names}
    if not preprocess:
        return out
    if "inputs" in preprocess and isinstance(preprocess["inputs"], dict):
        for name, spec in preprocess["inputs"].items():
            if name not in out:
                raise ValueError(f"metadata {PREPROCESS} names input {name!r}; the model's inputs: {names}")
            out[name] = spec
        return out
    if names:
        out[names[0]] = preprocess
    return out


def _dump(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
