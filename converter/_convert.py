"""Keras → ONNX with a dynamic batch dimension, onnxfn metadata, and a parity check against Keras."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onnxfn.runtime._metadata import ModelMetadata

from ._errors import ConversionError
from ._float64 import MARGIN, Float64Check, float64_check
from ._lean import inline_external, lean_tf2onnx
from ._load import Source
from ._ops import custom_op_handlers, traceable_keras
from ._outputs import other_outputs_diff
from ._preprocessing import image_samples, infer_task
from ._preprocessing import resolve as resolve_preprocessing

log = logging.getLogger("onnxfn.converter")
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 5e-4  # of max |keras output|: float32 rounding grows with the outputs' scale
NOISE_FACTOR = 5  # ONNX may differ from Keras by this many times Keras' own batch-1 vs batch-N difference
NOISE_SAMPLES = 4


@dataclass
class ConversionReport:
    """What ``convert`` did and measured."""

    output: str
    task: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    size_bytes: int
    max_abs_diff: float | None
    parity_samples: int
    opset: int
    seconds: float
    keras_ms: float | None = None
    onnx_ms: float | None = None
    max_abs_output: float | None = None  # max |keras output| on the parity samples (scale of the diff)
    keras_noise: float | None = None  # max |keras batch 1 - keras batch N|: Keras' own float32 noise
    parity_allowed: float | None = None  # the tolerance max_abs_diff was held to
    float64: dict[str, Any] | None = None  # the float64 reference, when the tolerance was exceeded
    labels: int = 0
    preprocess: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # preprocessing found in the model, what the runtime does

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        def shape(specs: list[dict[str, Any]]) -> str:
            return ", ".join(f"{s['name']}{s['shape']}" for s in specs)

        parity = (
            "skipped"
            if self.max_abs_diff is None
            else f"max |onnx - keras| = {self.max_abs_diff:.2e} over {self.parity_samples} samples"
            + (f" (outputs up to {self.max_abs_output:.3g}" if self.max_abs_output else "")
            + (f"; Keras itself varies by {self.keras_noise or 0:.2e})" if self.max_abs_output else "")
        )
        if self.float64 is not None:
            parity += (
                f" exceeds the tolerance {self.parity_allowed:.3g}; "
                + Float64Check(
                    **{k: self.float64[k] for k in ("keras_error", "onnx_error", "accepted")}
                ).describe()
            )
        rows = [
            ("output", self.output),
            ("task", self.task + (f" ({self.labels} labels)" if self.labels else "")),
            ("inputs", shape(self.inputs)),
            ("outputs", shape(self.outputs)),
            ("size", f"{self.size_bytes / 1024:.1f} KiB"),
            ("parity", parity),
        ]
        if self.keras_ms is not None and self.onnx_ms is not None:
            rows.append(("latency b=1", f"keras {self.keras_ms:.2f} ms, onnxruntime {self.onnx_ms:.2f} ms"))
        rows.append(("took", f"{self.seconds:.1f} s"))
        rows += [("preprocess", n) for n in self.notes]
        rows += [("warning", w) for w in self.warnings]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def convert(
    model: Any,
    output: str | os.PathLike[str],
    *,
    labels: list[str] | None = None,
    preprocess: dict[str, Any] | str | None = None,
    task: str | None = None,
    opset: int = 17,
    check: bool = True,
    sample: np.ndarray | list[np.ndarray] | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    version: int = 1,
    tokenizer: Any = None,
) -> ConversionReport:
    """Convert ``model`` (``keras.Model``, ``.keras``, ``.h5`` or SavedModel dir) to ``output`` (.onnx).

    ``sample``: real inputs for the parity check (default: inputs drawn from the model's own
    preprocessing). The check fails with :class:`ConversionError` when ONNX and Keras differ by more
    than ``atol + rtol * max |keras output|`` (float32 rounding grows with the outputs' scale), or than
    5 × what Keras' own outputs move between batch 1 and batch N when that is larger (a chaotic network,
    e.g. an untrained EfficientNet, amplifies last-bit differences). When that tolerance is exceeded, the
    same Keras model is rebuilt in float64 (from its config, weights copied) and the conversion is accepted
    if ONNX is no further from that exact result than Keras float32 is, up to a margin of 3 × (the spread
    of two correct float32 implementations; ``report.float64`` says so):
    the network amplifies float32 rounding, in Keras as much as in ONNX. A model that cannot be rebuilt
    from its config is refused as before. ``manifest.json`` beside ``output`` is created or updated.

    Text: a model with ``TextVectorization`` inside (string input) keeps the vectorizer in the metadata and
    the rest in ONNX; a BERT-style model (keras-hub ``TextClassifier`` with its preprocessor, or
    ``tokenizer=`` a keras-hub WordPiece/BPE tokenizer or preprocessor, a ``vocab.txt``, or a BPE folder with
    ``vocabulary.json`` + ``merges.txt``) carries its tokenizer; so does a RoBERTa-style (BPE) classifier.
    """
    started = time.perf_counter()
    output = Path(output)
    if output.suffix != ".onnx":
        raise ConversionError(f"output {output} must end in .onnx")
    from ._textmodels import text_model

    source, text = text_model(model, tokenizer=tokenizer, preprocess=preprocess)
    notes: list[str] = []
    early: list[str] = []
    if text is not None and not isinstance(preprocess, str):
        settled = bool(preprocess and "vocab" in preprocess)  # the user's own vocabulary answers them
        preprocess = {**text.preprocess, **(preprocess or {})} or None
        notes += text.notes
        early += [] if settled else text.warnings
    proto = _to_onnx(source, opset)
    onnx_outputs = _output_info(proto)
    classes = _classes(onnx_outputs)
    task = task or _infer_task(source, preprocess, classes)
    resolved = resolve_preprocessing(task, source, preprocess)
    preprocess = resolved.preprocess
    warnings: list[str] = [*early, *resolved.warnings]
    notes += resolved.notes
    if labels is not None:
        labels = [str(x) for x in labels]
        if classes is not None and len(labels) != max(classes, 2 if classes == 1 else classes):
            raise ConversionError(
                f"{len(labels)} labels given but the model outputs {classes} classes: "
                "pass one label per class"
            )
    elif task != "tensor" and classes:
        warnings.append("no labels given: predictions will name classes by index (--labels FILE)")
    metadata = ModelMetadata(
        task=task,
        labels=labels,
        preprocess=preprocess,
        source=_provenance(source, opset),
        quantization="none",
        version=version,
    )
    metadata.write(proto)

    import onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(output))

    max_diff, count, keras_ms, onnx_ms, scale, noise = None, 0, None, None, None, None
    allowed, reference = None, None
    if check:
        samples = _samples(source, preprocess, task, sample)
        try:
            measured = _parity(source, output, samples)
            max_diff, count, keras_ms, onnx_ms, scale, noise = measured.numbers()
            others = other_outputs_diff(source, output, samples) or 0.0  # outputs 2..N
        except ConversionError:
            output.unlink(missing_ok=True)
            raise
        except Exception as exc:  # onnxruntime's own error types
            output.unlink(missing_ok=True)
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ConversionError(
                f"onnxruntime cannot run the converted model ({first}): try another --opset, "
                "or report the model's layers; nothing was written"
            ) from None
        allowed = max(atol + rtol * scale, NOISE_FACTOR * noise)
        why = ""
        if np.isfinite(max_diff) and max_diff > allowed and np.isfinite(others) and others <= allowed:
            # Outside the tolerance: float32 rounding amplified by the network, or a conversion error?
            # The same model run in float64 tells (it covers the first output, the only one over).
            log.info(
                "parity: %.3g exceeds %.3g; running the model in float64 as reference", max_diff, allowed
            )
            reference = float64_check(source.keras_model, samples, measured.keras, measured.onnx)
            why = (
                f"; {reference.describe()}"
                if reference
                else "; the model cannot be rebuilt from its config in float64 to tell float32 rounding "
                "from a conversion error"
            )
        max_diff = max(max_diff, others)
        if not np.isfinite(max_diff) or (max_diff > allowed and not (reference and reference.accepted)):
            output.unlink(missing_ok=True)
            raise ConversionError(
                f"ONNX output differs from Keras by {max_diff:.3g} on {count} samples, more than allowed "
                f"({allowed:.3g}: the larger of {atol:g} + {rtol:g} × max |output| {scale:.3g} and "
                f"{NOISE_FACTOR} × Keras' own batch-1 vs batch-N difference {noise:.3g}){why}: "
                f"try another opset (--opset), or report the model's layers; nothing was written"
            )
        if text is not None and preprocess:
            try:
                note = text.verify(output, preprocess, atol)
            except ConversionError:
                output.unlink(missing_ok=True)
                raise
            notes += [note] if note else []

    from onnxfn.runtime._repository import write_manifest

    write_manifest(output.parent, [output.stem])
    return ConversionReport(
        output=str(output),
        task=task,
        inputs=[{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in source.inputs],
        outputs=onnx_outputs,
        size_bytes=output.stat().st_size,
        max_abs_diff=max_diff,
        parity_samples=count,
        opset=opset,
        seconds=time.perf_counter() - started,
        keras_ms=keras_ms,
        onnx_ms=onnx_ms,
        max_abs_output=scale,
        keras_noise=noise,
        parity_allowed=allowed,
        float64=None if reference is None else {**asdict(reference), "margin": MARGIN},
        labels=len(labels or []),
        preprocess=preprocess,
        warnings=warnings,
        notes=notes,
    )


def _to_onnx(source: Source, opset: int) -> Any:
    import tensorflow as tf
    import tf2onnx

    signature = tuple(
        tf.TensorSpec(spec.shape, tf.as_dtype(spec.dtype), name=spec.name) for spec in source.inputs
    )
    function = tf.function(source.call, input_signature=signature, autograph=False)
    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(logging.ERROR)
    try:
        with traceable_keras(), lean_tf2onnx():
            # large_model: the weights stay out of the TF graph tf2onnx imports and out of the ONNX proto
            # until ``inline_external`` moves them in, one at a time (converter/_lean.py: peak memory).
            proto, storage = tf2onnx.convert.from_function(
                function,
                input_signature=signature,
                opset=opset,
                custom_op_handlers=custom_op_handlers(),
                large_model=True,
            )
            proto = inline_external(proto, storage)
            del storage
    except Exception as exc:
        raise ConversionError(_explain(exc, source)) from None
    finally:
        tf2onnx_log.setLevel(level)
    _freeze_captures(proto, function.get_concrete_function(*signature), [s.name for s in signature])
    _check_ops(proto, source, opset)
    _tidy_names(proto)
    return proto


def _freeze_captures(proto: Any, concrete: Any, input_names: list[str]) -> None:
    """Constants the traced function captured from eager code become initializers, not graph inputs.

    tf2onnx freezes captured *variables*, but a captured eager *tensor* (e.g. the mean and variance a
    ``Normalization`` layer computes once, as in EfficientNet's built-in preprocessing) is left as an
    extra graph input nobody feeds: onnxruntime then cannot run the model.
    """
    from onnx import numpy_helper

    extra = [v for v in proto.graph.input if v.name.split(":")[0] not in input_names]
    if not extra:
        return
    used = {name for node in _all_nodes(proto.graph) for name in node.input}
    for value in [v for v in extra if v.name not in used]:  # folded away by TF's grappler
        proto.graph.input.remove(value)
    extra = [v for v in extra if v.name in used]
    values = {}
    for external, internal in concrete.graph.captures:
        if getattr(external, "dtype", None) is not None and external.dtype.name != "resource":
            try:
                values[internal.name] = external.numpy()
            except Exception:  # noqa: S112 - symbolic capture: leave it, reported below
                continue
    for value in extra:
        array = values.get(value.name)
        if array is None:
            raise ConversionError(
                f"the converted model has an input {value.name!r} that is not one of the model's inputs "
                "(a tensor captured from outside the model that is not a constant): make it a layer "
                "weight or a constant; nothing was written"
            )
        proto.graph.initializer.append(numpy_helper.from_array(array, value.name))
        proto.graph.input.remove(value)


def _check_ops(proto: Any, source: Source, opset: int) -> None:
    """tf2onnx leaves TF ops it cannot convert in the graph: name the Keras layer they come from."""
    import onnx

    unknown = []
    for node in _all_nodes(proto.graph):
        domain = node.domain or ""
        if domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type, domain):
            unknown.append(node)
    if not unknown:
        return
    found: dict[str, list[str]] = {}  # op -> where (Keras layers, else node names)
    for node in unknown:
        layer = _layer_of(node.name, source.layers)
        where = f"layer {layer[0]!r} ({layer[1]})" if layer else f"node {node.name!r}"
        if where not in found.setdefault(node.op_type, []):
            found[node.op_type].append(where)
    parts = []
    for op, wheres in sorted(found.items()):
        more = f" and {len(wheres) - 2} more" if len(wheres) > 2 else ""
        parts.append(
            f"{' and '.join(wheres[:2])}{more} use{'s' if len(wheres) == 1 else ''} TensorFlow op {op}"
        )
    raise ConversionError(
        f"{'; '.join(parts)}, which neither tf2onnx nor onnxfn can convert to ONNX (opset {opset}): "
        "replace that layer with standard Keras layers or ops that have an ONNX equivalent, or compute it "
        "outside the model (before or after inference); nothing was written"
    )


def _all_nodes(graph: Any) -> list[Any]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            if attr.HasField("g"):
                nodes += _all_nodes(attr.g)
            for sub in attr.graphs:
                nodes += _all_nodes(sub)
    return nodes


def _layer_of(node_name: str, layers: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The Keras layer whose TF name scope (``name`` or ``name_N``) appears in ``node_name``."""
    parts = node_name.split("/")
    best = None
    for name, kind in layers:
        if not name:
            continue
        pattern = re.compile(re.escape(name) + r"(_\d+)?")
        if any(pattern.fullmatch(part) for part in parts) and (best is None or len(name) > len(best[0])):
            best = (name, kind)
    return best


def _explain(exc: Exception, source: Source) -> str:
    """Name the Keras layer behind a tf2onnx failure when the op name reveals it."""
    text = str(exc)
    for name, kind in source.layers:
        if name and name in text:
            return f"layer {name!r} ({kind}) cannot be converted to ONNX: {text.splitlines()[0][:300]}"
    return (
        f"tf2onnx could not convert the model: {text.splitlines()[0][:300] if text else type(exc).__name__}; "
        "try another --opset, or replace the custom layers with standard Keras layers"
    )


def _tidy_names(proto: Any) -> None:
    """Outputs named ``output`` (or ``output_N``), and the dynamic batch dimension named ``batch``."""
    graph = proto.graph
    renames = {}
    for i, out in enumerate(graph.output):
        new = "output" if len(graph.output) == 1 else f"output_{i}"
        renames[out.name] = new
    for node in graph.node:
        for j, name in enumerate(node.output):
            if name in renames:
                node.output[j] = renames[name]
        for j, name in enumerate(node.input):
            if name in renames:
                node.input[j] = renames[name]
    for out in graph.output:
        out.name = renames.get(out.name, out.name)
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


def _output_info(proto: Any) -> list[dict[str, Any]]:
    out = []
    for value in proto.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
        out.append({"name": value.name, "shape": dims})
    return out


def _classes(outputs: list[dict[str, Any]]) -> int | None:
    shape = outputs[0]["shape"]
    if len(shape) == 2 and shape[1] > 0:
        return shape[1]
    return None


def _infer_task(source: Source, preprocess: Any, classes: int | None) -> str:
    return infer_task(source, preprocess, classes)


def _samples(source: Source, preprocess: dict[str, Any] | None, task: str, sample: Any) -> list[np.ndarray]:
    if sample is not None:
        arrays = list(sample) if isinstance(sample, (list, tuple)) else [sample]
        out = []
        for spec, array in zip(source.inputs, arrays, strict=True):
            array = np.asarray(array, dtype=spec.dtype)
            if array.shape[1:] != tuple(d for d in spec.shape[1:]) and None not in spec.shape[1:]:
                raise ConversionError(
                    f"sample shape {list(array.shape)} does not match input {spec.name} {list(spec.shape)}"
                )
            out.append(array[:64])
        return out
    rng = np.random.default_rng(0)
    n = 16
    images = image_samples(source, preprocess, task, n, rng)  # {input name: batch} for image inputs
    out = []
    for spec in source.inputs:
        if spec.name in images:
            out.append(images[spec.name])
            continue
        shape = [n, *[d if d is not None else 8 for d in spec.shape[1:]]]
        if np.dtype(spec.dtype).kind in "iu":
            high = _vocab_size(source, preprocess)
            out.append(rng.integers(0, high, size=shape).astype(spec.dtype))
        else:
            out.append(rng.random(shape, dtype=np.float32).astype(spec.dtype))
    return out


def _vocab_size(source: Source, preprocess: dict[str, Any] | None) -> int:
    if preprocess and isinstance(preprocess.get("vocab"), list):
        return len(preprocess["vocab"])
    sizes = [getattr(layer, "input_dim", None) for layer in _keras_layers(source)]
    sizes = [s for s in sizes if isinstance(s, int)]
    return min(sizes) if sizes else 2


def _keras_layers(source: Source) -> list[Any]:
    from ._load import _walk_layers

    return _walk_layers(source.keras_model) if hasattr(source.keras_model, "layers") else []


@dataclass
class _Parity:
    diff: float  # max |onnx - keras|
    count: int  # samples
    keras_ms: float
    onnx_ms: float
    scale: float  # max |keras|
    noise: float  # Keras' own batch-size noise
    keras: list[np.ndarray]  # Keras float32 runs (batch N; batch 1 on the first samples), first output
    onnx: list[np.ndarray]  # ONNX runs (batch N; batch 1 on the first sample)

    def numbers(self) -> tuple[float, int, float, float, float, float]:
        return self.diff, self.count, self.keras_ms, self.onnx_ms, self.scale, self.noise


def _parity(source: Source, path: Path, samples: list[np.ndarray]) -> _Parity:
    """Max |onnx - keras| on ``samples``, Keras' own batch-size noise, latencies, and the outputs.

    ONNX runs at batch N and batch 1 (proving the batch dimension is dynamic). Keras' noise: how much
    Keras' own outputs move between batch N and batch 1 on the first samples (different kernels, different
    rounding), the float32 noise floor of this very model.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(source.inputs):
        raise ConversionError(
            f"the converted model takes {len(names)} inputs ({', '.join(names)}) but the Keras model "
            f"{len(source.inputs)}: a tensor the model uses is neither an input nor a constant; "
            "report the model's layers; nothing was written"
        )
    expected = source.predict(samples)
    got = session.run(None, dict(zip(names, samples, strict=True)))[0]
    if got.shape != expected.shape:
        raise ConversionError(f"ONNX output shape {got.shape} differs from Keras {expected.shape}")
    single = session.run(None, dict(zip(names, [s[:1] for s in samples], strict=True)))[0]
    diff = max(float(np.max(np.abs(got - expected))), float(np.max(np.abs(single - expected[:1]))))
    noise = 0.0
    alone = []
    for i in range(min(NOISE_SAMPLES, len(samples[0]))):
        alone.append(np.asarray(source.predict([s[i : i + 1] for s in samples])))
        noise = max(noise, float(np.max(np.abs(alone[-1] - expected[i : i + 1]))))
    keras_ms = _median_ms(lambda: source.predict([s[:1] for s in samples]))
    feeds = dict(zip(names, [s[:1] for s in samples], strict=True))
    onnx_ms = _median_ms(lambda: session.run(None, feeds))
    return _Parity(
        diff,
        len(samples[0]),
        keras_ms,
        onnx_ms,
        float(np.max(np.abs(expected))),
        noise,
        keras=[expected, np.concatenate(alone)],
        onnx=[got, single],
    )


def _median_ms(fn: Any, runs: int = 15) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def _provenance(source: Source, opset: int) -> dict[str, Any]:
    import keras
    import tensorflow as tf
    import tf2onnx

    from onnxfn import __version__

    return {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnxfn": __version__,
        "opset": opset,
        "file": source.path.name if source.path else None,
        "sha256": source.sha256,
    }
