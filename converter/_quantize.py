"""Quantization users can trust: dynamic int8, static int8 (calibrated QDQ), fp16, or ``auto``, which builds
the candidates, measures them against fp32 and keeps the smallest one that is not slower and keeps accuracy.

Every variant is measured the same way (``_measure``) and reported side by side (``_report``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import _measure
from ._calibration import CalibrationReader, Feeds, InputInfo, count, load_eval, load_samples, take
from ._errors import ConversionError
from ._options import METHODS, MODES
from ._report import QuantizationReport, VariantResult

log = logging.getLogger("onnxfn.converter")

EVAL_LIMIT = 2000  # samples used to measure accuracy/agreement
DIFF_LIMIT = 256  # samples used for max |Δ| against the reference
HOLDOUT = 512  # calibration samples beyond calibration_samples kept aside to measure on (no eval data)
MIN_SPLIT = 8  # fewer calibration samples than this cannot be split into calibration + held-out


def quantize(
    model_onnx: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    mode: str = "dynamic",
    calibration: Any = None,
    per_channel: bool = True,
    calibrate_method: str = "minmax",
    eval_data: Any = None,
    max_accuracy_drop: float = 0.01,
    reduce_range: bool = True,
    calibration_samples: int = 256,
    max_latency_ratio: float = 1.1,
    reference: Any = None,
    runs: int = 30,
    threads: int = 1,
    progress: bool = True,
    report_dir: str | os.PathLike[str] | None = None,
) -> QuantizationReport:
    """Quantize an fp32 ONNX model (from ``convert``) into ``output`` and measure it against fp32.

    ``mode``: ``dynamic`` (int8 weights, activations quantized at run time), ``static`` (int8 QDQ, U8
    activations / S8 weights, calibrated on ``calibration``), ``fp16`` (weights in float16, float32 I/O) or
    ``auto`` (build them all, keep the smallest variant whose accuracy drop is within ``max_accuracy_drop``
    and whose batch-32 latency is at most ``max_latency_ratio`` × fp32; fp32 itself when none qualifies).
    Latency is judged on paired, interleaved runs: a variant is "slower" when the 95% interval of its
    median latency ratio lies above ``max_latency_ratio``; when the interval straddles it, more rounds are
    run before deciding, so the same model gets the same choice run after run. An explicitly requested
    mode that comes out slower than that, or loses more than ``max_accuracy_drop``, gets a warning.

    ``calibration`` / ``eval_data``: an array, ``.npy``/``.npz``, an image folder (class subfolders give
    labels), text (``.txt``, ``.tsv`` label<TAB>text, list of strings) or an iterable of arrays;
    ``eval_data`` may be ``(x, y)``. With labels the report shows accuracy, otherwise top-1 agreement with
    fp32. Without ``eval_data``, part of the calibration data is held out (never used to calibrate) and the
    report measures on it. Arrays are the model's input tensors as the runtime feeds them; raw pixels
    (uint8 0..255) given to an image model are preprocessed like the runtime does (noted in the report),
    other values outside the range the runtime feeds are refused. ``reduce_range`` (7-bit weights) avoids the int16 saturation of u8s8 kernels on x86 CPUs without
    VNNI (AVX2/AVX-512), which otherwise costs accuracy. ``reference``: a Keras model (or path, or a
    ``list[array] -> array`` callable) to report max |Δ| against (default: the fp32 ONNX model).
    ``runs``/``threads``: latency medians per variant (interleaved). The output keeps the model's
    ``onnxfn.*`` metadata, records ``onnxfn.quantization``, and ``manifest.json`` beside it is updated.
    """
    started = time.perf_counter()
    source, output = Path(model_onnx), Path(output)
    if mode not in MODES:
        raise ConversionError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if calibrate_method not in METHODS:
        raise ConversionError(
            f"unknown calibrate_method {calibrate_method!r}: use one of {', '.join(METHODS)}"
        )
    if output.suffix != ".onnx":
        raise ConversionError(f"output {output} must end in .onnx")
    if not 0 <= max_accuracy_drop < 1:
        raise ConversionError("max_accuracy_drop is a fraction (0.01 = 1 point)")
    proto = _load_onnx(source)
    info = InputInfo.from_proto(proto)
    from onnxfn.runtime._metadata import ModelMetadata

    metadata = ModelMetadata.read(proto)
    if metadata.quantization not in ("none", None, {}):
        raise ConversionError(
            f"{source} is already quantized ({metadata.quantization}): "
            "quantize the fp32 model from `onnxfn convert`"
        )
    if mode == "static" and calibration is None:
        raise ConversionError(
            "static quantization needs calibration data: pass calibration= (CLI --calibration PATH) with "
            "a few hundred representative inputs (.npy/.npz, an image folder, or text), or use mode 'dynamic'"
        )
    if not max_latency_ratio > 0:
        raise ConversionError("max_latency_ratio is a ratio to fp32 latency (1.1 = at most 10% slower)")
    warnings: list[str] = []
    notes: list[str] = []
    calib, eval_feeds, labels, eval_source = _data(
        calibration, eval_data, info, mode, calibration_samples, warnings, notes
    )

    wanted = ["static", "dynamic", "fp16"] if mode == "auto" else [mode]
    variants = {"fp32": VariantResult("fp32", status="baseline", settings={"mode": "none"})}
    with tempfile.TemporaryDirectory(prefix="onnxfn-quantize-") as tmp:
        work = Path(tmp)
        fp32 = work / "fp32.onnx"
        shutil.copyfile(source, fp32)
        prepared = _pre_process(fp32, work / "prepared.onnx", warnings)
        paths = {"fp32": fp32}
        for name in wanted:
            variant = VariantResult(name)
            variants[name] = variant
            if name == "static" and calib is None:
                variant.status, variant.reason = "failed", "no calibration data (pass calibration=...)"
                continue
            try:
                path = work / f"{name}.onnx"
                variant.settings = _build(
                    name, prepared, path, calib, per_channel, reduce_range, calibrate_method, progress,
                    batch=info.shapes[0][0] if info.shapes and info.shapes[0] else None,
                )  # fmt: skip
            except ConversionError:
                raise
            except Exception as exc:
                if mode != "auto":
                    raise ConversionError(f"{name} quantization failed: {_first_line(exc)}") from None
                variant.status, variant.reason = "failed", f"quantization failed: {_first_line(exc)}"
                continue
            variant.settings.update(requested=mode, calibration_size=count(calib) if name == "static" else 0)
            _note_float_recurrent(name, path, variant.settings, warnings)
            _finish(path, proto, metadata, variant.settings, info)
            paths[name] = path
        _measure_all(
            paths,
            variants,
            eval_feeds,
            labels,
            info,
            reference=reference,
            runs=runs,
            threads=threads,
            warnings=warnings,
            max_latency_ratio=max_latency_ratio,
        )
        chosen = _choose(mode, variants, max_accuracy_drop, max_latency_ratio, warnings)
        _warn_requested(mode, variants, max_latency_ratio, warnings)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths[chosen], output)  # from the scratch copies: output may be the source itself

    from onnxfn.runtime._repository import write_manifest

    write_manifest(output.parent, [output.stem])
    report = QuantizationReport(
        model=str(source),
        output=str(output),
        mode=mode,
        chosen=chosen,
        variants=list(variants.values()),
        eval_source=eval_source,
        eval_samples=count(eval_feeds),
        labelled=labels is not None,
        reference="keras" if reference is not None else "fp32 onnx",
        max_accuracy_drop=max_accuracy_drop,
        threads=threads,
        runs=runs,
        calibration_samples=count(calib) if calib is not None else 0,
        seconds=time.perf_counter() - started,
        warnings=warnings,
        notes=list(dict.fromkeys(notes)),
        max_latency_ratio=max_latency_ratio,
    )
    if report_dir is not None:
        report.save(report_dir)
    return report


# -- steps -----------------------------------------------------------------------------------------


def _load_onnx(path: Path) -> Any:
    import onnx

    if not path.exists():
        raise ConversionError(f"{path} does not exist: pass the .onnx file `onnxfn convert` wrote")
    if path.is_dir() or path.suffix != ".onnx":
        raise ConversionError(
            f"{path} is not an .onnx file: convert the Keras model first (`onnxfn convert`, or "
            "`onnxfn convert MODEL -o OUT.onnx --quantize MODE`)"
        )
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ConversionError(f"{path} is not a readable ONNX model: {_first_line(exc)}") from None


def _data(
    calibration: Any,
    eval_data: Any,
    info: InputInfo,
    mode: str,
    calibration_samples: int,
    warnings: list[str],
    notes: list[str],
) -> tuple[Feeds | None, Feeds, np.ndarray | None, str]:
    """(calibration feeds, eval feeds, eval labels, what the eval data is). Never measures on samples that
    were used to calibrate: without eval data, part of the calibration data is held out."""
    calibrates = mode in ("static", "auto")
    if eval_data is not None:
        calib = None
        if calibration is not None:
            calib = load_samples(calibration, info, limit=calibration_samples, notes=notes)
        feeds, labels = load_eval(eval_data, info, limit=EVAL_LIMIT, notes=notes)
        if calib is not None and calibrates:  # eval samples that also calibrated are not held out
            used = {_row(calib, i) for i in range(count(calib))}
            keep = np.asarray([i for i in range(count(feeds)) if _row(feeds, i) not in used], dtype=np.int64)
            if not len(keep):
                warnings.append(
                    "the eval data is the calibration data: measuring on part of it held out from "
                    "calibration instead (pass eval data that was not used to calibrate)"
                )
                return _held_out(calibration, info, mode, calibration_samples, warnings, notes)
            if len(keep) < count(feeds):
                warnings.append(
                    f"{count(feeds) - len(keep)} of the {count(feeds)} eval samples were also used to "
                    f"calibrate: left out, measured on the other {len(keep)}"
                )
                feeds, labels = take(feeds, keep), labels[keep] if labels is not None else None
        return calib, feeds, labels, "labelled eval" if labels is not None else "eval"
    if calibration is None:
        return None, *_eval_set(None, None, info, warnings, mode)
    return _held_out(calibration, info, mode, calibration_samples, warnings, notes)


def _held_out(
    calibration: Any,
    info: InputInfo,
    mode: str,
    calibration_samples: int,
    warnings: list[str],
    notes: list[str],
) -> tuple[Feeds | None, Feeds, np.ndarray | None, str]:
    """Calibration data split into what calibrates and what is measured on (never both)."""
    calibrates = mode in ("static", "auto")
    feeds, labels = load_eval(
        calibration, info, what="calibration", limit=calibration_samples + HOLDOUT, notes=notes
    )
    n = count(feeds)
    metric = "accuracy" if labels is not None else "agreement with fp32"
    if not calibrates:
        warnings.append(
            f"no eval data: {metric} measured on the calibration samples ({mode} calibrates nothing, so "
            "they are unseen); pass eval_data= (held-out data, with labels) to measure accuracy"
        )
        return None, feeds, labels, "calibration (unused by " + mode + ")"
    if n < MIN_SPLIT:
        warnings.append(
            f"only {n} calibration samples and no eval data: none can be held out, so {metric} is "
            "measured on random inputs, which says little; pass eval_data= or more calibration data"
        )
        return feeds, *_eval_set(None, None, info, [], "static")
    order = np.random.default_rng(0).permutation(n)
    held = max(n - calibration_samples, -(-n // 4))
    calib = take(feeds, np.sort(order[held:]))
    # A held-out sample identical to a calibration sample is not held out: drop such duplicates.
    seen = {_row(feeds, i) for i in order[held:]}
    index = np.asarray(sorted(i for i in order[:held] if _row(feeds, i) not in seen), dtype=np.int64)
    dropped = held - len(index)
    if not len(index):
        warnings.append(
            f"every held-out calibration sample duplicates one used to calibrate: {metric} is measured on "
            "random inputs, which says little; pass eval_data= (held-out data, with labels)"
        )
        return calib, *_eval_set(None, None, info, [], "static")
    warnings.append(
        f"no eval data: {metric} measured on {len(index)} calibration samples held out from calibration (not "
        f"used to calibrate; {n - held} calibrated"
        + (f"; {dropped} held-out duplicates of calibration samples left out" if dropped else "")
        + "); pass eval_data= (held-out data, with labels) to measure accuracy"
    )
    return calib, take(feeds, index), labels[index] if labels is not None else None, "held-out calibration"


def _row(feeds: Feeds, i: int) -> tuple[bytes, ...]:
    return tuple(np.ascontiguousarray(array[i]).tobytes() for array in feeds.values())


def _eval_set(
    eval_data: Any, calib: Feeds | None, info: InputInfo, warnings: list[str], mode: str
) -> tuple[Feeds, np.ndarray | None, str]:
    message = (
        "no eval or calibration data: agreement measured on random inputs, which says little about accuracy"
    )
    if mode == "auto":
        raise ConversionError(
            "auto needs data to measure accuracy: pass eval_data= (held-out inputs, with labels "
            "if you have them) "
            "or calibration="
        )
    warnings.append(message)
    return _random_inputs(info), None, "random"


def _random_inputs(info: InputInfo, n: int = 64) -> Feeds:
    rng = np.random.default_rng(0)
    feeds = {}
    for name, shape, dtype in zip(info.names, info.shapes, info.dtypes, strict=True):
        dims = [n, *[d if d is not None else 8 for d in shape[1:]]]
        if np.dtype(dtype).kind in "iu":
            high = len(info.preprocess["vocab"]) if info.preprocess and "vocab" in info.preprocess else 2
            feeds[name] = rng.integers(0, high, size=dims).astype(dtype)
        else:
            feeds[name] = rng.random(dims, dtype=np.float32).astype(dtype)
    return feeds


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantization tools log shape-inference chatter through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _pre_process(source: Path, target: Path, warnings: list[str]) -> Path:
    """ORT's recommended pre-processing: symbolic + ONNX shape inference and graph optimisation."""
    from onnxruntime.quantization import quant_pre_process

    attempts = ({}, {"skip_symbolic_shape": True})
    error = None
    for kwargs in attempts:
        try:
            with _quiet():
                quant_pre_process(str(source), str(target), **kwargs)
            if kwargs:
                warnings.append(
                    "symbolic shape inference failed; pre-processed with ONNX shape inference only"
                )
            return target
        except Exception as exc:
            error = exc
            _remove_shape_inference_dump()
    warnings.append(f"pre-processing failed ({_first_line(error)}); quantizing the model as converted")
    return source


def _build(
    name: str,
    prepared: Path,
    target: Path,
    calib: Feeds | None,
    per_channel: bool,
    reduce_range: bool,
    method: str,
    progress: bool,
    batch: int | None = None,
) -> dict[str, Any]:
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if name == "dynamic":
        with _quiet():
            quantize_dynamic(
                str(prepared),
                str(target),
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True},
            )
        return {
            "mode": "dynamic",
            "format": "QOperator",
            "weights": "int8",
            "activations": "uint8 (at run time)",
            "per_channel": per_channel,
            "reduce_range": reduce_range,
            "onnxruntime": onnxruntime.__version__,
        }
    if name == "static":
        assert calib is not None
        methods = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }
        if batch:  # a fixed batch size: calibrate in whole batches of it
            calib = _measure.batch_feeds(calib, max(batch, count(calib) // batch * batch))
        reader = CalibrationReader(calib, batch_size=batch or 32, progress=progress)
        import onnx

        graph = onnx.load(str(prepared)).graph
        outputs = {value.name for value in graph.output}
        # Keep the final probabilities in float: an 8-bit softmax rounds scores to 1/255 and creates ties.
        keep_float = [
            node.name
            for node in graph.node
            if node.op_type in ("Softmax", "Sigmoid", "LogSoftmax") and any(o in outputs for o in node.output)
        ]
        with _quiet():
            quantize_static(
                str(prepared),
                str(target),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
                nodes_to_exclude=keep_float,
            )
        return {
            "mode": "static",
            "format": "QDQ",
            "weights": "int8",
            "activations": "uint8",
            "per_channel": per_channel,
            "reduce_range": reduce_range,
            "method": method,
            "onnxruntime": onnxruntime.__version__,
        }
    if name == "fp16":
        import onnx
        from onnxconverter_common import float16

        # Cast stays float32 (and gets a Cast to float16 after it): onnxconverter-common retypes a Cast's
        # output to float16 but keeps its `to=FLOAT`, which onnxruntime rejects (seen on Keras' LSTM graphs).
        blocked = [*float16.DEFAULT_OP_BLOCK_LIST, "Cast"]
        with _quiet():
            half = float16.convert_float_to_float16(
                onnx.load(str(prepared)), keep_io_types=True, op_block_list=blocked
            )
        onnx.save(half, str(target))
        return {"mode": "fp16", "weights": "float16", "io": "float32"}
    raise ConversionError(f"unknown mode {name!r}")


def _finish(path: Path, fp32: Any, metadata: Any, settings: dict[str, Any], info: InputInfo) -> None:
    """Carry the fp32 onnxfn metadata over, record the quantization, keep the batch dimension dynamic."""
    import onnx

    proto = onnx.load(str(path))
    dataclasses.replace(metadata, quantization=settings).write(proto)
    dims = {value.name: value.type.tensor_type.shape.dim for value in proto.graph.input}
    for name, shape in zip(info.names, info.shapes, strict=True):
        if shape and shape[0] is None and name in dims and dims[name] and dims[name][0].HasField("dim_value"):
            dims[name][0].dim_param = "batch"
    onnx.save(proto, str(path))


def _measure_all(
    paths: dict[str, Path],
    variants: dict[str, VariantResult],
    feeds: Feeds,
    labels: np.ndarray | None,
    info: InputInfo,
    *,
    reference: Any,
    runs: int,
    threads: int,
    warnings: list[str],
    max_latency_ratio: float = 1.1,
) -> None:
    import onnx

    sessions = {}
    for name, path in paths.items():
        try:
            sessions[name] = _measure.session(path, threads=threads)
        except Exception as exc:
            if name == "fp32":
                raise ConversionError(f"onnxruntime cannot load the fp32 model: {_first_line(exc)}") from None
            variants[name].status, variants[name].reason = (
                "failed",
                f"onnxruntime cannot load it: {_first_line(exc)}",
            )
    dynamic_batch = all(shape[0] is None for shape in info.shapes)
    batches = (1, 32) if dynamic_batch else (info.shapes[0][0] or 1,)
    chunk = 256
    if not dynamic_batch:  # a fixed batch size: whole batches only
        chunk = batches[0]
        usable = max(chunk, count(feeds) // chunk * chunk)
        feeds = _measure.batch_feeds(feeds, usable)
        labels = labels[np.arange(usable) % len(labels)] if labels is not None else None
    batch_feeds = {b: _measure.batch_feeds(feeds, b) for b in batches}
    outs: dict[str, np.ndarray] = {}
    for name in list(sessions):
        try:
            outs[name] = _measure.outputs(sessions[name], feeds, chunk=chunk)
            for feed in batch_feeds.values():  # batch 1 and 32 must both run: the batch axis stayed dynamic
                sessions[name].run(None, feed)
        except Exception as exc:
            if name == "fp32":
                raise ConversionError(f"the fp32 model fails on the eval data: {_first_line(exc)}") from None
            variants[name].status, variants[name].reason = "failed", f"fails at run time: {_first_line(exc)}"
            del sessions[name]
    timings = _latencies(sessions, batch_feeds, runs, max_latency_ratio, variants)
    ref_fn = _reference(reference)
    diff_feeds = take(feeds, slice(0, DIFF_LIMIT))
    expected = None
    if ref_fn is not None:
        expected = np.asarray(ref_fn([diff_feeds[n] for n in info.names]), dtype=np.float32)
        expected = expected.reshape(outs["fp32"][:DIFF_LIMIT].shape)
    base = outs["fp32"]
    classifier = info.task != "tensor" or (base.ndim == 2 and base.shape[1] > 1)
    for name, out in outs.items():
        v = variants[name]
        v.size_bytes = paths[name].stat().st_size
        v.latency_ms = timings[name]
        v.max_abs_diff = _measure.max_abs_diff(
            out[:DIFF_LIMIT], expected if expected is not None else base[:DIFF_LIMIT]
        )
        if classifier:
            v.agreement = _measure.agreement(out, base)
            if labels is not None:
                v.accuracy = _measure.accuracy(out, labels)
        else:
            scale = float(np.max(np.abs(base))) or 1.0
            v.relative_error = _measure.max_abs_diff(out, base) / scale
        proto = onnx.load(str(paths[name]), load_external_data=False)
        if name != "fp32":
            v.quantized_ops, v.float_ops = _measure.op_counts(proto)
            with contextlib.suppress(Exception):
                v.int8_kernels = _measure.int8_kernels(paths[name])
        else:
            _, v.float_ops = _measure.op_counts(proto)
    fp32 = variants["fp32"]
    for v in variants.values():
        if v.status == "failed" or v.name not in outs:
            continue
        if v.accuracy is not None and fp32.accuracy is not None:
            v.drop = fp32.accuracy - v.accuracy
        elif v.agreement is not None:
            v.drop = 1.0 - v.agreement
        elif v.relative_error is not None:
            v.drop = v.relative_error


def _latencies(
    sessions: dict[str, Any],
    batch_feeds: dict[int, Feeds],
    runs: int,
    max_latency_ratio: float,
    variants: dict[str, VariantResult],
) -> dict[str, dict[int, float]]:
    """Median latencies, and each variant's paired latency ratio to fp32 with its 95% interval.

    A variant whose interval straddles ``max_latency_ratio`` at the batch ``auto`` decides on gets more
    rounds (fp32 beside it), up to twice, so that the verdict does not flip from run to run on noise.
    """
    samples: dict[str, dict[int, list[float]]] = {}
    _measure.latencies(sessions, batch_feeds, runs=runs, samples=samples)
    decide = max(batch_feeds)
    for _ in range(2):
        unsure = [
            name
            for name in sessions
            if name != "fp32" and _straddles(_ratio_interval(samples, name, decide), max_latency_ratio)
        ]
        if not unsure or "fp32" not in sessions:
            break
        more: dict[str, dict[int, list[float]]] = {}
        chosen = {name: sessions[name] for name in ["fp32", *unsure]}
        _measure.latencies(chosen, {decide: batch_feeds[decide]}, runs=max(2 * runs, 20), samples=more)
        for name in chosen:  # the others' rounds stay paired with fp32's first rounds
            samples[name][decide] += more[name][decide]
    for name in sessions:
        for batch in batch_feeds:
            interval = _ratio_interval(samples, name, batch)
            if interval is not None and name in variants:
                variants[name].latency_ratio[batch] = interval
    return {name: {b: float(np.median(t)) for b, t in per.items()} for name, per in samples.items()}


def _ratio_interval(samples: dict[str, dict[int, list[float]]], name: str, batch: int) -> list[float] | None:
    """[low, median, high]: the median of per-round ratios name/fp32 and its bootstrap 95% interval."""
    if "fp32" not in samples or name not in samples:
        return None
    mine, base = samples[name].get(batch, []), samples["fp32"].get(batch, [])
    n = min(len(mine), len(base))
    if n == 0:
        return None
    ratios = np.asarray(mine[:n]) / np.maximum(np.asarray(base[:n]), 1e-9)
    rng = np.random.default_rng(0)
    medians = np.median(ratios[rng.integers(0, n, size=(500, n))], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return [float(low), float(np.median(ratios)), float(high)]


def _straddles(interval: list[float] | None, limit: float) -> bool:
    return interval is not None and interval[0] <= limit < interval[2]


def _ratio(v: VariantResult, fp32: VariantResult, batch: int) -> float:
    interval = v.latency_ratio.get(batch)
    return interval[1] if interval else v.latency_ms[batch] / fp32.latency_ms[batch]


def _too_slow(v: VariantResult, fp32: VariantResult, batch: int, limit: float) -> bool:
    """Slower than ``limit`` × fp32: the median paired ratio, once the extra rounds narrowed its interval."""
    interval = v.latency_ratio.get(batch)
    if interval is None:
        return v.latency_ms[batch] / fp32.latency_ms[batch] > limit
    return interval[1] > limit


def _fastest(near: list[VariantResult], fp32: VariantResult, batch: int) -> VariantResult:
    """Among variants of about the same size: the smallest, unless another is clearly (>5%, beyond noise)
    faster: noise alone must not flip the choice between two equally fast variants."""
    ordered = sorted(near, key=lambda v: (v.size_bytes, v.name))
    best = ordered[0]
    for v in ordered[1:]:
        mine, theirs = v.latency_ratio.get(batch), best.latency_ratio.get(batch)
        if mine and theirs:
            if mine[2] < theirs[0] * 0.95:
                best = v
        elif v.latency_ms[batch] < best.latency_ms[batch] * 0.95:
            best = v
    return best


def _warn_requested(
    mode: str, variants: dict[str, VariantResult], max_latency_ratio: float, warnings: list[str]
) -> None:
    """An explicitly requested mode that is slower than fp32 (beyond ``max_latency_ratio``) says so."""
    if mode == "auto" or mode not in variants:
        return
    v, fp32 = variants[mode], variants["fp32"]
    for batch in sorted(v.latency_ms):
        if batch in fp32.latency_ms and _too_slow(v, fp32, batch, max_latency_ratio):
            warnings.append(
                f"{mode} is {_ratio(v, fp32, batch):.2f}x slower than fp32 at batch {batch} on this CPU "
                f"(allowed {max_latency_ratio:.2f}x): it saves size, not time; consider another mode or 'auto'"
            )


def _reference(reference: Any) -> Callable[[list[np.ndarray]], Any] | None:
    if reference is None:
        return None
    if callable(reference) and not hasattr(reference, "layers"):
        return reference
    from ._textmodels import text_model

    # A text model's ONNX graph starts after its vectorizer/tokenizer: compare with the same part of Keras.
    source, _ = text_model(reference)
    return source.predict


def _choose(
    mode: str,
    variants: dict[str, VariantResult],
    max_drop: float,
    max_latency_ratio: float,
    warnings: list[str],
) -> str:
    fp32 = variants["fp32"]
    lat_batch = max(fp32.latency_ms)
    if mode != "auto":
        v = variants[mode]
        if v.status == "failed":
            raise ConversionError(f"the {mode} model {v.reason}: try another mode (or 'auto')")
        v.status = "chosen"
        if v.drop is not None and v.drop > max_drop:
            warnings.append(
                f"{mode} loses {v.drop * 100:.2f} points (> {max_drop * 100:.2f}): "
                "consider another mode or 'auto'"
            )
        return mode
    eligible = [fp32]
    for v in variants.values():
        if v.name == "fp32" or v.status == "failed":
            continue
        slower = _ratio(v, fp32, lat_batch)
        if v.drop is None:
            v.status, v.reason = "rejected", "its accuracy could not be measured"
        elif v.drop > max_drop:
            v.status = "rejected"
            if v.accuracy is None and v.agreement is None:
                v.reason = f"relative error {v.drop * 100:.2f}% > allowed {max_drop * 100:.2f}%"
            else:
                what = "accuracy" if v.accuracy is not None else "agreement"
                v.reason = f"{what} drop {v.drop * 100:.2f} points > allowed {max_drop * 100:.2f}"
        elif _too_slow(v, fp32, lat_batch, max_latency_ratio):
            v.status = "rejected"
            v.reason = f"{slower:.2f}× fp32 latency at batch {lat_batch} (allowed ≤ {max_latency_ratio:.2f}×)"
        else:
            eligible.append(v)
    smallest = min(eligible, key=lambda v: v.size_bytes)
    near = [v for v in eligible if v.size_bytes <= smallest.size_bytes * 1.10]
    best = _fastest(near, fp32, lat_batch)
    for v in eligible:
        if v is best:
            continue
        v.status = "rejected" if v.name != "fp32" else "baseline"
        if v.size_bytes > smallest.size_bytes * 1.10:
            mine, theirs = v.size_bytes / fp32.size_bytes, best.size_bytes / fp32.size_bytes
            v.reason = f"larger: {mine:.2f}× fp32 vs {theirs:.2f}× for {best.name}"
        else:
            v.reason = f"as small but slower than {best.name} at batch {lat_batch}"
    if best is fp32:
        fp32.status = "chosen"
        fp32.reason = "no quantized variant kept accuracy without slowing down: kept fp32"
        warnings.append(fp32.reason)
    else:
        best.status = "chosen"
        best.reason = (
            f"smallest within the accuracy budget ({best.size_bytes / fp32.size_bytes:.2f}× size, "
            f"{best.latency_ms[lat_batch] / fp32.latency_ms[lat_batch]:.2f}× latency at batch {lat_batch})"
        )
    return best.name


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else ""
    return (
        (text.splitlines()[0][:300] if text else type(exc).__name__) if exc is not None else "unknown error"
    )


RECURRENT_OPS = ("Loop", "Scan", "LSTM", "GRU", "RNN")


def _note_float_recurrent(name: str, path: Path, settings: dict[str, Any], warnings: list[str]) -> None:
    """Say when an int8 variant leaves recurrent layers in float (onnxruntime does not reach into them).

    Keras' GRU/LSTM/SimpleRNN become ONNX ``Loop`` nodes whose bodies hold the recurrent MatMuls; neither
    static QDQ nor dynamic quantization rewrites those bodies, so only the layers around them are int8.
    """
    if name not in ("static", "dynamic"):
        return
    import onnx

    layers = []
    for node in onnx.load(str(path)).graph.node:
        if node.op_type not in RECURRENT_OPS:
            continue
        float_matmuls = sum(
            1
            for attr in node.attribute
            if attr.HasField("g")
            for inner in attr.g.node
            if inner.op_type in ("MatMul", "Gemm")
        )
        if node.op_type in ("LSTM", "GRU", "RNN") or float_matmuls:
            parts = [p for p in node.name.split("/") if p and not p.startswith("while")]
            layer = re.sub(r"(_\d+)+$", "", parts[-1] if parts else node.name)
            kind = next((k for k in ("GRU", "LSTM") if k.lower() in layer.lower()), "recurrent")
            layers.append(f"{layer} ({kind})")
    if layers:
        settings["float_recurrent_layers"] = layers
        warnings.append(
            f"{name} int8 leaves the recurrent layer{'s' if len(layers) > 1 else ''} {', '.join(layers)} "
            "in float: onnxruntime does not quantize inside recurrent loops, so only the layers around "
            "them are int8"
        )


def _remove_shape_inference_dump() -> None:
    """onnxruntime's symbolic shape inference, when it fails (e.g. on Keras GRU/LSTM ``Loop`` graphs), dumps
    ``sym_shape_infer_temp.onnx`` and uuid-named external-data files into the *current directory*: remove them."""
    import onnx

    dump = Path("sym_shape_infer_temp.onnx")
    if not dump.is_file() or time.time() - dump.stat().st_mtime > 600:
        return
    try:
        model = onnx.load(str(dump), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location" and "/" not in entry.value and "\\" not in entry.value:
                    Path(entry.value).unlink(missing_ok=True)
    finally:
        dump.unlink(missing_ok=True)
