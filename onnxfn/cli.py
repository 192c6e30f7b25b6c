"""The ``onnxfn`` command. Each subcommand imports its part lazily, so ``onnxfn --help`` is instant."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from onnxfn import __version__


class CLIError(Exception):
    """A user-facing failure: printed as ``onnxfn: error: ...`` with exit code 2."""


# Third-party modules each extra brings (import names). A subcommand that hits a missing one is told which
# extra to install instead of printing a traceback. Keep in step with pyproject.toml's optional-dependencies.
EXTRA_MODULES: dict[str, frozenset[str]] = {
    "serve": frozenset(
        {
            "onnxruntime",
            "fastapi",
            "starlette",
            "pydantic",
            "mangum",
            "uvicorn",
            "PIL",
            "multipart",
            "prometheus_client",
        }
    ),
    "client": frozenset({"requests"}),
    "aws": frozenset({"boto3", "botocore"}),
    "convert": frozenset(
        {"tensorflow", "keras", "tf2onnx", "onnx", "onnxconverter_common", "onnxruntime", "sympy", "PIL"}
        | {"tqdm", "matplotlib"}
    ),
}
# The extra a subcommand needs, preferred when a missing module belongs to several extras (onnxruntime, PIL).
COMMAND_EXTRA = {"convert": "convert", "quantize": "convert", "serve": "serve", "bundle": "serve"}


def missing_extra(exc: BaseException, command: str | None = None) -> str | None:
    """The message for an import failure caused by a missing extra, or None when it is something else.

    Follows ``exc``'s cause/context chain to the ``ModuleNotFoundError`` of a known third-party module
    (``keras``, ``onnxruntime``, ...) and names the extra that installs it; an ``ImportError`` that already
    says what to install (``Client.local``'s) is passed on as it is.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, ModuleNotFoundError) and link.name:
            module = link.name.split(".")[0]
            extras = [extra for extra, modules in EXTRA_MODULES.items() if module in modules]
            if extras:
                wanted = COMMAND_EXTRA.get(command or "")
                extra = wanted if wanted in extras else extras[0]
                return (
                    f"the '{extra}' extra is not installed (no module named {module!r}); "
                    f"add it with: pip install 'onnxfn[{extra}]'"
                )
        link = link.__cause__ or link.__context__
    if isinstance(exc, ImportError) and "pip install" in str(exc):
        return str(exc)
    return None


def _convert(args: argparse.Namespace) -> int:
    from onnxfn.converter import convert

    labels = _read_labels(args.labels) if args.labels else None
    from onnxfn.converter._cli import parse_preprocess

    preprocess = parse_preprocess(args.preprocess)
    if getattr(args, "quantize_mode", None):
        return _convert_and_quantize(args, labels, preprocess)
    if getattr(args, "calibration", None) or getattr(args, "eval_data", None):
        raise CLIError("--calibration and --eval-data need --quantize MODE")
    report = convert(
        args.model,
        args.output,
        labels=labels,
        preprocess=preprocess,
        task=args.task,
        opset=args.opset,
        check=not args.no_check,
        version=args.version,
        tokenizer=getattr(args, "tokenizer", None),
    )
    print(report.to_json() if args.json else report.summary())
    return 0


def _convert_and_quantize(args: argparse.Namespace, labels: list[str] | None, preprocess: dict | None) -> int:
    """``convert --quantize MODE``: fp32 into a scratch dir (parity-checked), then quantized to --output."""
    import tempfile
    from pathlib import Path

    from onnxfn.converter import convert, quantize
    from onnxfn.converter._cli import quantize_kwargs

    with tempfile.TemporaryDirectory(prefix="onnxfn-convert-") as tmp:
        fp32 = Path(tmp) / Path(args.output).name
        converted = convert(
            args.model,
            fp32,
            labels=labels,
            preprocess=preprocess,
            task=args.task,
            opset=args.opset,
            check=not args.no_check,
            version=args.version,
            tokenizer=getattr(args, "tokenizer", None),
        )
        report = quantize(fp32, args.output, reference=args.model, **quantize_kwargs(args))
    if args.json:
        print(json.dumps({"convert": converted.to_dict(), "quantize": report.to_dict()}, indent=2))
    else:
        print(converted.summary())
        print()
        print(report.table())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from onnxfn.runtime.serve import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        workers=args.workers,
        default_model=args.default_model,
        api_key_hashes=args.api_key_hashes,
        max_body_bytes=args.max_body_bytes,
        max_batch=args.max_batch,
        threads=args.threads,
        batch_delay_ms=args.batch_delay_ms,
        batch_max=args.batch_max,
        instances=args.instances,
        log_level=args.log_level,
        reload_interval=args.reload_interval,
        drain_delay=args.drain_delay,
        shutdown_timeout=args.shutdown_timeout,
    )
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from onnxfn.runtime._manifest import manifest_command

    return manifest_command(args.dir, verify=args.verify, names=args.names or None)


def _keygen(args: argparse.Namespace) -> int:
    from onnxfn.runtime._auth import new_key

    key, digest = new_key()
    if args.json:
        print(json.dumps({"key": key, "sha256": digest}))
    else:
        print(f"API key (give to clients, shown once): {key}")
        print(f"sha256 (server side):  ONNXFN_API_KEY_HASHES={digest}")
    return 0


def _read_labels(path: str) -> list[str]:
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise CLIError(f"labels file {path} does not exist (one label per line, or a JSON list)")
    text = file.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        labels = json.loads(text)
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels or not all(isinstance(x, str) for x in labels):
        raise CLIError(f"labels file {path} has no labels")
    return labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxfn", description="Keras → ONNX → fast CPU inference.")
    parser.add_argument("--version", action="version", version=f"onnxfn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("convert", help="convert a Keras model (.keras, .h5, SavedModel dir) to ONNX")
    p.add_argument("model", help="path to .keras, .h5 or a SavedModel directory")
    p.add_argument("-o", "--output", required=True, help="output .onnx path")
    p.add_argument("--labels", help="class names: one per line, or a JSON list")
    p.add_argument("--task", choices=["image-classification", "text-classification", "tensor"])
    p.add_argument("--preprocess", help="JSON, e.g. '{\"scale\": 0.0627}' (defaults from the input shape)")
    p.add_argument(
        "--tokenizer",
        metavar="VOCAB",
        help="tokenizer of a model saved without its keras-hub preprocessor: a WordPiece vocab.txt (BERT), "
        "or a folder with vocabulary.json and merges.txt (byte-level BPE: RoBERTa, GPT-2)",
    )
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--version", type=int, default=1, help="model version stored in the file")
    p.add_argument("--no-check", action="store_true", help="skip the parity check against Keras")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _quantize_options(p)
    p.set_defaults(func=_convert)

    p = sub.add_parser("serve", help="serve a model file or directory over HTTP (uvicorn)")
    p.add_argument(
        "model",
        nargs="?",
        help="an .onnx file, a model directory, or s3://bucket/prefix (default: $ONNXFN_MODEL_DIR, else models)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--default-model")
    p.add_argument("--api-key-hashes", help="comma-separated sha256 digests (see `onnxfn keygen`)")
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--max-batch", type=int)
    p.add_argument(
        "--threads",
        type=int,
        help="onnxruntime threads per model run (default 1: one run per core side by side; more cuts one big request's latency)",
    )
    p.add_argument(
        "--batch-delay-ms",
        type=float,
        help="dynamic batching: wait up to this long to fuse concurrent requests into one run (0 = off)",
    )
    p.add_argument("--batch-max", type=int, help="largest fused batch in rows (default 32, ≤ --max-batch)")
    p.add_argument(
        "--instances",
        type=int,
        help="onnxruntime sessions (copies) per model (default 1; the runs share them)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--reload-interval", type=float, help="poll the model source every N s, swap changed models"
    )
    p.add_argument(
        "--drain-delay", type=float, help="on SIGTERM, answer readiness 503 for N s before closing"
    )
    p.add_argument("--shutdown-timeout", type=float, help="then finish accepted requests within N s (10)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("manifest", help="write, update or --verify a model directory's manifest.json")
    p.add_argument("dir", help="a directory of NAME.onnx files")
    p.add_argument("names", nargs="*", help="only these models (default: every *.onnx)")
    p.add_argument("--verify", action="store_true", help="check every sha256; exit 1 on any problem")
    p.set_defaults(func=_manifest)

    p = sub.add_parser("keygen", help="print a new API key and the sha256 digest the server needs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_keygen)

    for register in _plugins():
        register(sub)
    return parser


def _quantize_options(p: argparse.ArgumentParser) -> None:
    """``convert --quantize MODE --calibration PATH --eval-data PATH`` (and the other quantize options)."""
    try:
        from onnxfn.converter._cli import add_quantize_options
    except ModuleNotFoundError:  # a runtime-only install (the Lambda bundle) has no converter
        return
    add_quantize_options(p, mode_flag="--quantize", default_mode=None)


def _plugins() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommands defined beside the parts they drive (each registers itself, imports lazily)."""
    found = []
    for module, attr in (
        ("onnxfn.client._cli", "register"),
        ("onnxfn.converter._cli", "register"),
        ("onnxfn._bundle", "register"),
    ):
        try:
            mod = __import__(module, fromlist=[attr])
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        found.append(getattr(mod, attr))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"onnxfn: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, PermissionError) as exc:
        print(f"onnxfn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        message = missing_extra(exc, args.command)
        if message is None:
            raise  # a broken install or a bug: the traceback is the useful part
        print(f"onnxfn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
