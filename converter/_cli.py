"""``onnxfn quantize``: registered by ``onnxfn.cli`` (imports nothing heavy until it runs)."""

from __future__ import annotations

import argparse
import sys

from ._options import METHODS, MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quantize`` subcommand."""
    p = subparsers.add_parser(
        "quantize",
        help="quantize an ONNX model (dynamic, static int8, fp16 or auto) and report before/after",
        description="Quantize an fp32 model from `onnxfn convert`; prints a before/after table "
        "(size, latency "
        "at batch 1 and 32, accuracy or agreement, max |Δ|, ops quantized).",
    )
    p.add_argument("model", help="the fp32 .onnx file `onnxfn convert` wrote")
    p.add_argument(
        "-o", "--output", required=True, help="output .onnx path (manifest.json beside it is updated)"
    )
    add_quantize_options(p, mode_flag="--mode", default_mode="auto")
    p.add_argument("--reference", help="the Keras model (.keras/.h5/SavedModel) to report max |Δ| against")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def add_quantize_options(p: argparse.ArgumentParser, *, mode_flag: str, default_mode: str | None) -> None:
    """Options shared by ``onnxfn quantize`` and ``onnxfn convert --quantize``."""
    p.add_argument(
        mode_flag, dest="quantize_mode", choices=MODES, default=default_mode, help="quantization mode"
    )
    p.add_argument(
        "--calibration",
        metavar="PATH",
        help="calibration data: .npy/.npz, a folder of images (decoded like the runtime does), .txt texts",
    )
    p.add_argument(
        "--eval-data",
        metavar="PATH",
        help="held-out data to measure accuracy: .npz with x (and y), .npy, an image folder with one "
        "subfolder per class, or .tsv (label<TAB>text)",
    )
    p.add_argument(
        "--no-per-channel", dest="per_channel", action="store_false", help="per-tensor weight scales"
    )
    p.add_argument("--calibrate-method", choices=METHODS, default="minmax")
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=0.01,
        help="auto keeps variants within this drop (0.01 = 1 point)",
    )
    p.add_argument(
        "--max-latency-ratio",
        type=float,
        default=1.1,
        help="auto keeps variants at most this many times fp32's batch-32 latency (default 1.1 = 10%% "
        "slower); an explicit --mode slower than this is warned about",
    )
    p.add_argument(
        "--no-reduce-range", dest="reduce_range", action="store_false", help="full 8-bit weights (VNNI CPUs)"
    )
    p.add_argument(
        "--calibration-samples", type=int, default=256, help="calibration samples used (default 256)"
    )
    p.add_argument("--runs", type=int, default=30, help="timed runs per variant and batch size")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads while measuring")
    p.add_argument("--report", metavar="DIR", help="write NAME.quantization.{json,md,png} into DIR")


def quantize_kwargs(args: argparse.Namespace) -> dict:
    """``quantize`` keyword arguments from parsed options."""
    return {
        "mode": args.quantize_mode,
        "calibration": args.calibration,
        "eval_data": args.eval_data,
        "per_channel": args.per_channel,
        "calibrate_method": args.calibrate_method,
        "max_accuracy_drop": args.max_accuracy_drop,
        "max_latency_ratio": args.max_latency_ratio,
        "reduce_range": args.reduce_range,
        "calibration_samples": args.calibration_samples,
        "runs": args.runs,
        "threads": args.threads,
        "report_dir": args.report,
    }


def run(args: argparse.Namespace) -> int:
    from onnxfn.converter import quantize

    report = quantize(args.model, args.output, reference=args.reference, **quantize_kwargs(args))
    print(report.to_json() if args.json else report.table())
    for warning in report.warnings:  # visible even when stdout goes to a file or a JSON parser
        print(f"onnxfn quantize: warning: {warning}", file=sys.stderr)
    return 0


PREPROCESS_KEYS = (
    # images
    "preset", "size", "layout", "color", "scale", "mean", "std", "flatten", "resize", "crop_ratio", "pad_value",
    # word-level text (TextVectorization)
    "vocab", "max_len", "lowercase", "strip_punctuation", "output_mode", "ngrams", "idf",
    # subword tokenizers (docs/design.md): WordPiece, then byte-level BPE
    "tokenizer", "strip_accents", "split", "split_on_cjk", "suffix_indicator", "unk", "cls", "sep", "pad",
    "max_bytes_per_word", "merges", "special", "add_prefix_space",
    # several inputs: {"inputs": {"<name>": {...} | null}}
    "inputs",
)  # fmt: skip
PREPROCESS_PRESETS = ("caffe", "tf", "torch", "none")


def parse_preprocess(text: str | None) -> dict | str | None:
    """``--preprocess``: a JSON object with known keys, or a preset name (bare or as a JSON string).

    Raises :class:`ConversionError` naming the flag: bad JSON, a value that is not an object, an unknown
    key (with the closest known one) or an unknown preset.
    """
    import json

    from ._errors import ConversionError

    if text is None:
        return None
    stripped = text.strip()
    if stripped in PREPROCESS_PRESETS:
        return stripped
    presets = ", ".join(PREPROCESS_PRESETS)
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ConversionError(
            f"--preprocess is not valid JSON ({exc.msg} at character {exc.pos}): pass an object such as "
            f'\'{{"scale": 0.00392, "size": [224, 224]}}\' or a preset name ({presets})'
        ) from None
    if isinstance(value, str):
        if value not in PREPROCESS_PRESETS:
            raise ConversionError(f"--preprocess preset {value!r} is unknown: use one of {presets}")
        return value
    if not isinstance(value, dict):
        raise ConversionError(
            f"--preprocess must be a JSON object or a preset name ({presets}), got {type(value).__name__}"
        )
    _check_keys(value, "--preprocess")
    inputs = value.get("inputs")
    if inputs is not None:
        if not isinstance(inputs, dict):
            raise ConversionError('--preprocess "inputs" must map input names to settings (or null)')
        for name, spec in inputs.items():
            if spec is not None and not isinstance(spec, dict):
                raise ConversionError(f'--preprocess "inputs" {name!r} must be an object or null')
            _check_keys(spec or {}, f'--preprocess "inputs" {name!r}')
    return value


def _check_keys(spec: dict, where: str) -> None:
    import difflib

    from ._errors import ConversionError

    for key in spec:
        if key not in PREPROCESS_KEYS:
            close = difflib.get_close_matches(str(key), PREPROCESS_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConversionError(
                f"{where} has an unknown key {key!r}{hint}: known keys are {', '.join(PREPROCESS_KEYS)}"
            )
