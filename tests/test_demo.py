"""`make demo` as a user runs it: train on real digits, convert, serve, predict with the client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.convert, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def test_demo_reaches_90_percent_through_the_server(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "demo.py"),
            "--out",
            str(tmp_path),
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["served_accuracy"] >= 0.90
    assert results["parity_max_abs_diff"] < 1e-4
    # What the server answered matches what Keras scored (same model, same preprocessing).
    assert abs(results["served_accuracy"] - results["keras_accuracy"]) <= 0.01
    assert "OK: held-out accuracy through the server" in result.stdout
    manifest = json.loads((tmp_path / "models" / "manifest.json").read_text())
    assert "digits" in manifest["models"]
