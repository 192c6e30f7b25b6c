"""Package discovery for the folder layout in pyproject.toml's ``[tool.setuptools.package-dir]``.

The import names differ from the folders (``onnxfn.runtime`` lives in ``runtime/``), which setuptools'
own automatic discovery cannot map. Here every package under each mapped folder is found, so a new
subpackage (``onnxfn.client._transports``, ...) ships without anyone listing it. Everything else is
declared in pyproject.toml.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import find_packages, setup

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - build-system requires tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent


def discover(package_dir: dict[str, str]) -> list[str]:
    """``onnxfn.runtime`` → ``runtime/``: the mapped package plus every package below its folder."""
    packages: list[str] = []
    for name, folder in package_dir.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_packages(str(ROOT / folder), exclude=["*.__pycache__"])]
    return sorted(set(packages))


with open(ROOT / "pyproject.toml", "rb") as f:
    PACKAGE_DIR = tomllib.load(f)["tool"]["setuptools"]["package-dir"]

setup(packages=discover(PACKAGE_DIR))
