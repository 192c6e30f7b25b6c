"""The runtime and the client stay light: no TensorFlow, no converter, no FastAPI in the client."""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    script = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_runtime_and_client_never_import_tensorflow():
    mods = _modules_after("import onnxfn.runtime, onnxfn.client")
    assert "tensorflow" not in mods and "keras" not in mods
    assert "onnxfn.converter" not in mods


def test_lambda_handler_import_is_tensorflow_free(digits_dir):
    import os

    mods = _modules_after(
        "import onnxfn.runtime.aws", env={**os.environ, "ONNXFN_MODEL_DIR": str(digits_dir)}
    )
    assert "tensorflow" not in mods and "onnxfn.converter" not in mods and "onnxfn.client" not in mods


def test_client_import_is_light():
    mods = _modules_after("import onnxfn.client")
    assert not {"fastapi", "tensorflow", "onnxruntime", "starlette"} & mods


def test_cli_help_is_light():
    mods = _modules_after("import onnxfn.cli; onnxfn.cli.build_parser()")
    assert not {"tensorflow", "onnxruntime", "fastapi"} & mods
