"""``onnxfn predict URL_OR_MODEL FILES...`` (classify files) and ``onnxfn explain URL_OR_MODEL FILE -o
overlay.png`` (why), with a server or a local model file."""

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

    e = subparsers.add_parser(
        "explain",
        help="explain a prediction: write the heatmap overlay PNG (images) or print word scores (text)",
        description="Explain what the model answers for one image (a heatmap over the image, written as a PNG) "
        "or one text (--text: each word's score), with a server URL or a local model file or directory.",
    )
    e.add_argument(
        "target", metavar="URL_OR_MODEL", help="server base URL, or an .onnx file / model directory"
    )
    e.add_argument(
        "file", metavar="FILE", help="an image file ('-' reads it from stdin), or text with --text"
    )
    e.add_argument(
        "-o", "--output", help="where to write the overlay PNG (default: FILE's name + .explain.png)"
    )
    e.add_argument("--api-key", help="API key (default: $ONNXFN_API_KEY)")
    e.add_argument("--auth", choices=["sigv4"], help="sign requests with AWS SigV4 (IAM-protected endpoints)")
    e.add_argument("--model", help="model name (default: the server's default model)")
    e.add_argument(
        "--class", dest="label", help="the class to explain: a label or an index (default: the top)"
    )
    e.add_argument("--method", choices=["occlusion", "rise"], help="image method (default: the server's)")
    e.add_argument("--text", action="store_true", help="FILE is the text to explain, not a file name")
    e.add_argument(
        "--json", action="store_true", help="print JSON (without the heatmap) instead of a summary"
    )
    e.add_argument("--timeout", type=float, default=60.0, help="seconds per attempt (default 60)")
    e.set_defaults(func=_explain)


def _client(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from . import Client

    target: str = args.target
    if target.startswith(("http://", "https://")):
        return Client(target, api_key=args.api_key, auth=args.auth, timeout=args.timeout, model=args.model)
    if Path(target).exists():
        return Client.local(target, model=args.model)
    raise ValueError(f"{target} is neither an http(s):// URL nor an existing model file or directory")


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
    client = _client(args)
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


def _explain(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.text:
        x: Any = args.file
    elif args.file == "-":
        x = sys.stdin.buffer.read()
    else:
        x = Path(args.file)
        if not x.is_file():
            raise FileNotFoundError(f"no such file: {args.file}")
    label: str | int | None = args.label
    with _client(args) as client:
        result = client.explain(x, target=label, method=args.method)
    written = None
    if result.overlay is not None:
        default = "stdin.explain.png" if args.file == "-" else f"{Path(args.file).stem}.explain.png"
        written = Path(args.output or default)
        result.save(written)
    if args.json:
        out = {
            "model": result.model,
            "version": result.version,
            "label": result.label,
            "index": result.index,
            "score": result.score,
            "method": result.method,
            "complete": result.complete,
        }
        if written is not None:
            out["overlay"] = str(written)
        if result.tokens is not None:
            out["tokens"] = result.tokens
            out["scores"] = result.scores
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{result.label}  score {result.score:.4f}  ({result.model}, {result.method}, {result.masks} masks)"
    )
    if written is not None:
        print(f"overlay written to {written}")
    if result.tokens is not None:
        for token, score in zip(result.tokens, result.scores or [], strict=True):
            bar = "+" * min(40, round(abs(score) * 100)) if score > 0 else "-" * min(40, round(-score * 100))
            print(f"  {token:<24} {score:+.4f} {bar}")
    if not result.complete:
        print("note: the time budget (ONNXFN_EXPLAIN_BUDGET_S) cut the explanation short", file=sys.stderr)
    return 0
