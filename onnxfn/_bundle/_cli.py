"""The two command lines: ``onnxfn bundle`` (registered into the ``onnxfn`` CLI) and
``python -m onnxfn._bundle offline MODEL_DIR`` (``make offline``: a bundle for this machine, then
serverless-offline on 127.0.0.1)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ._build import BUNDLE_NAME, LAYER_NAME, build_bundle
from ._deps import local_target
from ._report import UNZIPPED_LIMIT, ZIPPED_LIMIT, MiB


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``onnxfn bundle`` to the CLI."""
    p = subparsers.add_parser(
        "bundle",
        help="build the AWS Lambda zip (runtime + serve deps as manylinux wheels + models)",
        description="Build dist/onnxfn-lambda.zip for serverless.yml: onnxfn's runtime (from the onnxfn "
        "wheel), its serve dependencies for the target Lambda platform, and the models with their manifest. "
        "With --layer, the dependencies go into dist/onnxfn-layer.zip (a Lambda layer) and the function zip "
        f"keeps the runtime and the models. Reproducible; fails above Lambda's limits ({ZIPPED_LIMIT // MiB} "
        f"MiB per zip, {UNZIPPED_LIMIT // MiB} MiB unzipped) without writing anything.",
    )
    p.add_argument("model", nargs="?", help="model directory (with manifest.json) or one .onnx file")
    p.add_argument("-o", "--output", default="dist", help="output directory (default: dist)")
    p.add_argument("--arch", default="arm64", choices=["arm64", "x86_64"], help="Lambda architecture")
    p.add_argument("--python", default="3.12", help="Lambda Python version (default: 3.12)")
    p.add_argument(
        "--models-from", metavar="S3_URL", help="serve models from s3://bucket/prefix, not the zip"
    )
    p.add_argument(
        "--layer",
        action="store_true",
        help=f"dependencies as a Lambda layer ({LAYER_NAME}, under python/); the function zip holds the "
        "runtime and the models (for models too big to share one 50 MiB zip with the dependencies)",
    )
    p.add_argument("--name", default=BUNDLE_NAME, help=f"function zip file name (default: {BUNDLE_NAME})")
    p.add_argument(
        "--wheel", metavar="PATH", help="the onnxfn wheel to take the runtime from (default: built from here)"
    )
    p.add_argument(
        "--no-pin", action="store_true", help="newest matching versions, not the ones installed here"
    )
    p.add_argument("--no-trim", action="store_true", help="keep tests, stubs, tooling (to debug a trim rule)")
    p.add_argument("--cache-dir", help="pip's download cache (default: pip's own)")
    compiling = p.add_mutually_exclusive_group()
    compiling.add_argument(
        "--compile-with", metavar="PYTHON", help="interpreter of the target version that compiles the .pyc"
    )
    compiling.add_argument("--no-compile", action="store_true", help="ship sources only (slower cold starts)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_bundle_command)


def _bundle_command(args: argparse.Namespace) -> int:
    report = build_bundle(
        args.model,
        args.output,
        arch=args.arch,
        python=args.python,
        models_from=args.models_from,
        name=args.name,
        layer=args.layer,
        wheel=args.wheel,
        pin=not args.no_pin,
        trim=not args.no_trim,
        bytecode=False if args.no_compile else None,
        compile_with=args.compile_with,
        cache_dir=args.cache_dir,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def offline_main(argv: Sequence[str]) -> int:
    """``python -m onnxfn._bundle offline MODEL_DIR``: a local bundle, then serverless-offline."""
    from ._offline import offline_command, prepare_offline

    parser = argparse.ArgumentParser(prog="python -m onnxfn._bundle offline")
    parser.add_argument("model", help="model directory or .onnx file")
    parser.add_argument("--workdir", default="dist/offline")
    parser.add_argument("--http-port", type=int, default=3000)
    parser.add_argument("--lambda-port", type=int, default=3002)
    args = parser.parse_args(argv)
    arch, python = local_target()
    workdir = Path(args.workdir)
    try:
        report = build_bundle(args.model, workdir, arch=arch, python=python)
    except (FileNotFoundError, ValueError) as exc:
        print(f"onnxfn offline: error: {exc}", file=sys.stderr)
        return 2
    print(report.table(), file=sys.stderr)
    service, env = prepare_offline(report.path, workdir)
    print(f"serverless-offline: http://127.0.0.1:{args.http_port}  (Ctrl-C stops it)", file=sys.stderr)
    cmd = offline_command(args.http_port, args.lambda_port)
    try:
        return subprocess.run(cmd, cwd=service, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str]) -> int:
    """``python -m onnxfn._bundle``: only ``offline`` (bundles are built by ``onnxfn bundle``)."""
    if list(argv[:1]) == ["offline"]:
        return offline_main(argv[1:])
    print(
        "usage: python -m onnxfn._bundle offline MODEL_DIR  (for bundles: onnxfn bundle --help)",
        file=sys.stderr,
    )
    return 2
