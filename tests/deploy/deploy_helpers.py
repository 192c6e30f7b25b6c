"""Helpers for tests/deploy: run the Lambda probe in a fresh (isolated) interpreter."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
API_KEY = "offline-test-key-3f9a"  # serverless-offline runs with its sha256 in ONNXFN_API_KEY_HASHES


def run_probe(
    bundle: str | Path, events: list[dict], tmp_path: Path, env: dict | None = None
) -> tuple[list, dict]:
    """Run lambda_probe.py in a fresh ``python -I -S`` with only ``bundle`` (``-``: the installed package)."""
    events_file = tmp_path / f"events-{time.monotonic_ns()}.json"
    events_file.write_text(json.dumps(events))
    isolated = ["-I", "-S", "-B"] if str(bundle) != "-" else ["-B"]
    cmd = [sys.executable, *isolated, str(HERE / "lambda_probe.py"), str(bundle), str(events_file)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ONNXFN_"))}
    full_env.update(PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    result = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return lines[:-1], lines[-1]


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
