"""Bytecode for the target Python, so a cold start on Lambda's read-only task root compiles nothing.

Deterministic unchecked-hash ``.pyc`` beside each source, tracebacks naming where Lambda unpacks
(``/var/task``, or ``/opt/python`` for a layer). Only the modules a cold start and its first requests import
get them (``cold_path_modules`` runs ``_probe.py`` to find out), so the zip stays small.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def find_python(version: str, explicit: str | None = None) -> str | None:
    """An interpreter of ``version`` (major.minor): ``explicit``, this one, or ``pythonX.Y`` on this machine."""
    candidates = [explicit] if explicit else [sys.executable, shutil.which(f"python{version}")]
    if not explicit:
        pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
        candidates += sorted(str(p) for p in pyenv.glob(f"{version}.*/bin/python{version}"))
        candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in candidates:
        if candidate and _python_version(candidate) == version:
            return candidate
    return None


def _python_version(executable: str) -> str | None:
    if executable == sys.executable:
        return f"{sys.version_info[0]}.{sys.version_info[1]}"
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def compile_bytecode(
    root: Path, python: str, files: Iterable[Path] | None = None, task_root: str = "/var/task"
) -> int:
    """Compile ``files`` (default: every ``.py`` under ``root``) with ``python``: deterministic unchecked-hash
    ``.pyc`` in ``__pycache__``, tracebacks naming ``task_root`` (where Lambda unpacks). Returns the count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"  # stable ordering of sets in marshalled constants
    cmd = [python, "-s", "-m", "compileall", "-q", "-f", "--invalidation-mode", "unchecked-hash"]
    cmd += ["-s", str(root), "-p", task_root]
    listing = None
    if files is None:
        cmd += ["-x", "^" + re.escape(str(root / "models")), str(root)]
    else:
        listing = root.parent / "compile-list.txt"
        listing.write_text("".join(f"{f}\n" for f in sorted(set(files))))
        cmd += ["-i", str(listing)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if listing is not None:
        listing.unlink()
    if result.returncode != 0:  # a file this Python cannot compile simply stays source-only
        print(f"onnxfn bundle: some files did not compile:\n{result.stdout[-2000:]}", file=sys.stderr)
    return sum(1 for _ in root.rglob("__pycache__/*.pyc"))


def cold_path_modules(models: Path | None) -> list[str] | None:
    """Module names imported by a cold start plus first requests (None if this environment cannot tell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ONNXFN_"))}
    env["ONNXFN_LOG_LEVEL"] = "ERROR"
    cmd = [sys.executable, "-m", "onnxfn._bundle._probe", str(models) if models else ""]
    try:
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        return json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def module_files(root: Path, names: Iterable[str]) -> set[Path]:
    """The source files under ``root`` of the modules ``names`` (``a.b`` → ``a/b.py`` or ``a/b/__init__.py``)."""
    files = set()
    for name in names:
        base = root.joinpath(*name.split("."))
        for candidate in (base.parent / f"{base.name}.py", base / "__init__.py"):
            if candidate.is_file():
                files.add(candidate)
    return files
