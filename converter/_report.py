"""The before/after report of ``quantize``: a printed table, JSON, Markdown and a PNG plot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class VariantResult:
    """One model variant (``fp32``, ``dynamic``, ``static`` or ``fp16``) as measured."""

    name: str
    size_bytes: int = 0
    latency_ms: dict[int, float] = field(default_factory=dict)  # batch size -> median ms
    accuracy: float | None = None  # on labelled eval data
    agreement: float | None = None  # top-1 agreement with fp32
    relative_error: float | None = None  # max |Δ| / max |fp32| (non-classifiers)
    max_abs_diff: float | None = None  # vs the reference (Keras when given, else fp32 ONNX)
    quantized_ops: dict[str, int] = field(default_factory=dict)
    float_ops: dict[str, int] = field(default_factory=dict)
    int8_kernels: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    status: str = "candidate"  # baseline | chosen | rejected | failed | candidate
    reason: str = ""
    drop: float | None = None  # accuracy lost vs fp32 (fraction; 1 - agreement without labels)
    # batch size -> [low, median, high]: 95% interval of the median of paired per-run latency ratios vs fp32
    latency_ratio: dict[int, list[float]] = field(default_factory=dict)

    def ratio(self, base: VariantResult, what: str) -> float | None:
        if what == "size":
            return self.size_bytes / base.size_bytes if base.size_bytes else None
        mine, theirs = self.latency_ms.get(int(what)), base.latency_ms.get(int(what))
        return mine / theirs if mine and theirs else None


@dataclass
class QuantizationReport:
    """What ``quantize`` built, measured and chose, with every variant side by side."""

    model: str
    output: str
    mode: str  # requested: dynamic | static | fp16 | auto
    chosen: str  # the variant written to ``output``
    variants: list[VariantResult]
    eval_source: str = ""
    eval_samples: int = 0
    labelled: bool = False
    reference: str = "fp32 onnx"  # what max_abs_diff compares with
    max_accuracy_drop: float = 0.01
    threads: int = 1
    runs: int = 0
    calibration_samples: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was done to the data (e.g. raw pixels preprocessed)
    max_latency_ratio: float = 1.1

    # -- access ------------------------------------------------------------------------------------
    @property
    def baseline(self) -> VariantResult:
        return self.variant("fp32")

    @property
    def result(self) -> VariantResult:
        return self.variant(self.chosen)

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; have {[v.name for v in self.variants]}")

    @property
    def metric_name(self) -> str:
        if self.labelled:
            return "accuracy"
        if any(v.agreement is not None for v in self.variants):
            return "agreement"
        return "relative error"

    # -- forms -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metric"] = self.metric_name
        for v in data["variants"]:
            v["latency_ms"] = {str(k): val for k, val in v["latency_ms"].items()}
            v["latency_ratio"] = {str(k): val for k, val in v["latency_ratio"].items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def _rows(self) -> list[list[str]]:
        base = self.baseline
        batches = sorted({b for v in self.variants for b in v.latency_ms})
        header = ["variant", "size", "size ×"]
        header += [f"b={b} ms" for b in batches] + [f"b={b} ×" for b in batches[-1:]]
        both = self.labelled and any(v.agreement is not None for v in self.variants)
        header += [self.metric_name, *(["agreement"] if both else []), "drop", f"max|Δ| vs {self.reference}"]
        header += ["quantized ops", "not quantized", "status"]
        rows = [header]
        for v in self.variants:
            if v.status == "failed":
                rows.append([v.name, *["-"] * (len(header) - 2), "failed"])
                continue
            metric = (
                v.accuracy if self.labelled else v.agreement if v.agreement is not None else v.relative_error
            )
            row = [v.name, _size(v.size_bytes), _x(v.ratio(base, "size"))]
            row += [_ms(v.latency_ms.get(b)) for b in batches] + [
                _x(v.ratio(base, str(b))) for b in batches[-1:]
            ]
            row += [_pct(metric) if self.metric_name != "relative error" else _num(metric)]
            row += [_pct(v.agreement)] if both else []
            row += [
                "-" if v.drop is None or v.name == "fp32" else f"{v.drop * 100:+.2f} pt",
                _num(v.max_abs_diff),
                _ops(v.quantized_ops) or "-",
                _ops(v.float_ops) or "-",
                v.status,
            ]
            rows.append(row)
        return rows

    def _notes(self) -> list[str]:
        notes = [
            f"chosen: {self.chosen}" + (f" ({self.result.reason})" if self.result.reason else ""),
        ]
        for v in self.variants:
            if v.status in ("rejected", "failed"):
                notes.append(f"{v.name} {v.status}: {v.reason}")
        for v in self.variants:
            if v.int8_kernels:
                notes.append(f"{v.name} runs int8 kernels: {_ops(v.int8_kernels)}")
        notes.append(
            f"measured on {self.eval_samples} {self.eval_source} samples; latency = median of {self.runs}+ "
            f"interleaved runs, {self.threads} thread(s), after warm-up"
        )
        if self.mode == "auto":
            batch = max((b for v in self.variants for b in v.latency_ms), default=1)
            notes.append(
                f"auto keeps the smallest variant whose {self.metric_name} drop is <= "
                f"{self.max_accuracy_drop * 100:.2f} pt and whose batch-{batch} latency is <= "
                f"{self.max_latency_ratio:.2f}x fp32 (judged on the 95% interval of paired per-run ratios; "
                "--max-latency-ratio)"
            )
        notes += [f"note: {n}" for n in self.notes]
        notes += [f"WARNING: {w}" for w in self.warnings]
        return notes

    def table(self) -> str:
        """The report as a plain-text table (what the CLI prints)."""
        rows = self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        title = f"quantize {self.model} -> {self.output}  (mode {self.mode})"
        return "\n".join([title, *lines, *self._notes()])

    summary = table

    def to_markdown(self) -> str:
        rows = self._rows()
        out = [
            f"### Quantization: `{Path(self.model).name}` → `{Path(self.output).name}` (mode `{self.mode}`)",
            "",
        ]
        cells = [[c.replace("|", "\\|") for c in row] for row in rows]
        out.append("| " + " | ".join(cells[0]) + " |")
        out.append("|" + "|".join("---" for _ in cells[0]) + "|")
        out += ["| " + " | ".join(row) + " |" for row in cells[1:]]
        out.append("")
        out += [f"- {note}" for note in self._notes()]
        return "\n".join(out) + "\n"

    def plot(self, path: str | Path) -> Path:
        """PNG: file size vs batch-32 latency (left), accuracy/agreement (right); the chosen one ringed."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        shown = [v for v in self.variants if v.status != "failed" and v.latency_ms]
        batch = max(b for v in shown for b in v.latency_ms)
        fig = Figure(figsize=(10, 4.2), dpi=110)
        FigureCanvasAgg(fig)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
        colors = {"fp32": "#555555", "dynamic": "#d98c1f", "static": "#2f7ebc", "fp16": "#4a9c4a"}
        metric = self.metric_name
        max_x = max(v.latency_ms[batch] for v in shown) or 1.0
        max_y = max(v.size_bytes for v in shown) / 1024 or 1.0
        placed: list[tuple[float, float]] = []
        for v in shown:
            value = v.accuracy if self.labelled else v.agreement
            x, y = v.latency_ms[batch], v.size_bytes / 1024
            edge = "black" if v.name == self.chosen else "none"
            left.scatter(
                x, y, s=160, color=colors.get(v.name, "#999"), edgecolors=edge, linewidths=2, zorder=3
            )
            # Points that (nearly) coincide get their labels stacked instead of overprinted.
            near = sum(1 for px, py in placed if abs(px - x) < 0.12 * max_x and abs(py - y) < 0.08 * max_y)
            placed.append((x, y))
            label = v.name + (f" — {metric} {value * 100:.1f}%" if value is not None else "")
            left.annotate(label, (x, y), textcoords="offset points", xytext=(10, 6 - 14 * near), fontsize=8)
        left.set_xlabel(f"median latency, batch {batch} (ms)")
        left.set_ylabel("file size (KiB)")
        left.set_xlim(0, max_x * 1.6)
        left.set_ylim(0, max_y * 1.2)
        left.grid(alpha=0.3)
        left.set_title("size vs latency (black ring = chosen)", fontsize=9)
        values = [(v.name, v.accuracy if self.labelled else v.agreement) for v in shown]
        values = [(n, x) for n, x in values if x is not None]
        if values:
            bars = right.bar(
                [n for n, _ in values],
                [x * 100 for _, x in values],
                color=[colors.get(n, "#999") for n, _ in values],
            )
            for bar, (_, x) in zip(bars, values, strict=True):
                right.annotate(
                    f"{x * 100:.1f}",
                    (bar.get_x() + bar.get_width() / 2, x * 100),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
            low = min(x for _, x in values) * 100
            right.set_ylim(max(0.0, low - 5), 100.5)
            if self.labelled:
                floor = (self.baseline.accuracy or 0) - self.max_accuracy_drop
            else:
                floor = 1 - self.max_accuracy_drop
            right.axhline(floor * 100, color="red", linestyle="--", linewidth=1, label="allowed minimum")
            right.legend(fontsize=8, loc="lower right")
        right.set_ylabel(f"{metric} (%)")
        right.set_title(f"{metric} on {self.eval_samples} {self.eval_source} samples", fontsize=9)
        fig.suptitle(f"{Path(self.model).name}: quantization ({self.mode}) → {self.chosen}", fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path

    def save(self, directory: str | Path, stem: str | None = None) -> dict[str, Path]:
        """Write ``STEM.quantization.{json,md,png}`` (default stem: the output's) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = stem or Path(self.output).stem
        paths = {
            "json": directory / f"{stem}.quantization.json",
            "markdown": directory / f"{stem}.quantization.md",
            "png": directory / f"{stem}.quantization.png",
        }
        paths["json"].write_text(self.to_json() + "\n", encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        self.plot(paths["png"])
        return paths


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KiB"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _ops(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}×{n}" for k, n in counts.items())
