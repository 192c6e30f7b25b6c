"""``onnxfn predict URL_OR_MODEL FILES...``: classify files with a server or a local model file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``predict`` to the ``onnxfn`` command (called by ``onnxfn.cli``; imports nothing heavy)."""
    p = subparsers.add_parser(
        "predict",
        help="classify images (or text) with a server URL or a local .onnx model / model directory",
        description="Classify FILES with an onnxfn endpoint (http[s]://…, with retries) or in process with a "
        "model file or directory. Exit status 1 when any input failed.",
    )
    p.add_argument(
        "target", metavar="URL_OR_MODEL", help="server base URL, or an .onnx file / model directory"
    )
    p.add_argument(
        "files",
        metavar="FILES",
        nargs="+",
        help="image files ('-' reads one from stdin), or text with --text",
    )
    p.add_argument("--api-key", help="API key (default: $ONNXFN_API_KEY)")
    p.add_argument("--auth", choices=["sigv4"], help="sign requests with AWS SigV4 (IAM-protected endpoints)")
    p.add_argument("--model", help="model name (default: the server's default model)")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per input (default 3)")
    p.add_argument("--text", action="store_true", help="FILES are texts to classify, not file names")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-concurrency", type=int, default=4)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per attempt (default 30)")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import Client

    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
    target: str = args.target
    if target.startswith(("http://", "https://")):
        client = Client(target, api_key=args.api_key, auth=args.auth, timeout=args.timeout, model=args.model)
    elif Path(target).exists():
        client = Client.local(target, model=args.model)
    else:
        raise ValueError(f"{target} is neither an http(s):// URL nor an existing model file or directory")
    inputs: list[Any] = []
    for name in args.files:
        if args.text:
            inputs.append(name)
        elif name == "-":
            inputs.append(sys.stdin.buffer.read())
        else:
            inputs.append(Path(name))  # a Path is always a file, never text
    with client:
        results = client.predict_batch(
            inputs,
            top_k=args.top_k,
            batch_size=args.batch_size,
            max_concurrency=args.max_concurrency,
            return_exceptions=True,
            progress=len(inputs) > 50 and sys.stderr.isatty() and not args.json,
        )
    names = ["<stdin>" if n == "-" else n for n in args.files]
    if args.json:
        rows = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                rows.append({"input": name, "error": str(result), "type": type(result).__name__})
            else:
                rows.append({"input": name, **result.to_dict()})
        print(json.dumps(rows, indent=2))
    else:
        _print_table(names, list(results))
    return 1 if any(isinstance(r, BaseException) for r in results) else 0


def _print_table(names: list[str], results: list[Any]) -> None:
    rows = [("input", "label", "score", "top-k")]
    for name, result in zip(names, results, strict=True):
        shown = name if len(name) <= 40 else "…" + name[-39:]
        if isinstance(result, BaseException):
            rows.append((shown, "ERROR", "", f"{type(result).__name__}: {result}"))
        elif result.outputs is not None:
            rows.append((shown, "", "", json.dumps(result.to_dict()["outputs"])[:80]))
        else:
            top = ", ".join(f"{t.label} {t.score:.3f}" for t in result.top_k)
            rows.append((shown, str(result.label), f"{result.score:.4f}", top))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
