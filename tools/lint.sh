#!/usr/bin/env bash
# `make lint`: style, security rules, and known vulnerabilities in what the Lambda bundle ships.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m ruff check .
$PY -m ruff format --check .
# mypy: strict on the client (pyproject [tool.mypy]).
$PY -m mypy client/
# bandit: medium severity and up (the bundler's subprocess calls are low-severity by design).
$PY -m bandit -q -ll -r runtime client converter onnxfn
# pip-audit on the serve closure (what `onnxfn bundle` ships), pinned to the installed versions.
req=$(mktemp)
trap 'rm -f "$req"' EXIT
$PY tools/serve_requirements.py > "$req"
$PY -m pip_audit -r "$req" --no-deps --disable-pip --progress-spinner off
