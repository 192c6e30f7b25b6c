"""`make bench`: run every benchmark side by side and write benchmarks/RESULTS.md (+ PNG plots).

Each bench_*.py module exposes run() -> list of rows (see common.row). Areas that fail are reported
as failed rows, never silently dropped. Usage: python benchmarks/run.py [--only runtime,client]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MODULES = {
    "converter": "bench_quantize",
    "runtime": "bench_runtime",
    "client": "bench_client",
    "bundle": "bench_bundle",
    "batching": "bench_batching",
    "bentoml": "bench_bentoml",
    "explain": "bench_explain",
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}"
    )


def fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated areas: " + ",".join(MODULES))
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    areas = args.only.split(",") if args.only else list(MODULES)
    rows: list[dict] = []
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for area in areas:
        module_name = MODULES[area]
        print(f"== {area} ({module_name})", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            got = module.run()
        except Exception as exc:  # a broken benchmark is a result too
            traceback.print_exc()
            got = [
                {
                    "area": area,
                    "what": f"{module_name} failed: {type(exc).__name__}: {exc}"[:200],
                    "ours": None,
                    "baseline": None,
                    "ratio": None,
                    "target": "runs",
                    "met": False,
                }
            ]
        timings[area] = time.perf_counter() - t0
        for r in got:
            print("   ", json.dumps(r), flush=True)
        rows += got
    total = time.perf_counter() - started
    write(Path(args.out), rows, timings, total)
    (HERE / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out} in {total:.0f} s")
    return 0


def write(path: Path, rows: list[dict], timings: dict[str, float], total: float) -> None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
    except OSError:
        commit = "?"
    met = sum(1 for r in rows if r.get("met"))
    lines = [
        "# onnxfn benchmark results",
        "",
        f"Written by `make bench` (`python benchmarks/run.py`) on {dt.date.today().isoformat()}, commit `{commit}`, "
        f"in {total:.0f} s.  ",
        f"Machine: {machine()}.  ",
        "Every ratio is measured side by side in one run (medians; the machine is shared and noisy, so read "
        "ratios rather than absolute numbers).",
        "",
        f"**{met} of {len(rows)} targets met.**",
        "",
    ]
    for area in dict.fromkeys(r["area"] for r in rows):
        lines += [
            f"## {area} ({timings.get(area, 0):.0f} s)",
            "",
            "| what | ours | baseline | ratio | target | met |",
            "|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["area"] == area):
            lines.append(
                f"| {r['what']} | {fmt(r.get('ours'))} | {fmt(r.get('baseline'))} | {fmt(r.get('ratio'))} | "
                f"{r.get('target', '')} | {'yes' if r.get('met') else '**no**'} |"
            )
        lines.append("")
    tables = [
        (name, title)
        for name, title in (
            ("catalogue.md", "keras.applications catalogue (python benchmarks/bench_catalogue.py)"),
            ("bentoml.md", "side by side with BentoML"),
            ("batching.md", "dynamic batching"),
            ("explain.md", "explanation cost per image"),
            ("quantize.md", "quantization"),
        )
        if (HERE / name).exists()
    ]
    if tables:
        lines += ["## Detailed tables", ""] + [f"- [{title}]({name})" for name, title in tables] + [""]
    plots = sorted(p.name for p in HERE.glob("*.png"))
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
