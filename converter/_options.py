"""Quantization choices, shared by ``quantize`` and the CLI (kept here so the CLI imports nothing heavy)."""

from __future__ import annotations

MODES = ("dynamic", "static", "fp16", "auto")
METHODS = ("minmax", "entropy", "percentile")
