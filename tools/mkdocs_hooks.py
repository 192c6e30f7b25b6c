"""MkDocs hook: give mkdocstrings the installed package layout (``onnxfn.runtime`` → ``runtime/``).

The import names differ from the folders (pyproject.toml's ``[tool.setuptools.package-dir]``), which a
static reader such as griffe cannot follow through an editable install. ``on_startup`` builds
``build/docs-src/onnxfn/`` out of symlinks into the source folders (edits show up in ``mkdocs serve``), and
mkdocs.yml points mkdocstrings' ``paths`` there.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "docs-src"


def build_tree(root: Path = ROOT, tree: Path = TREE) -> Path:
    """Symlink every mapped folder's files under its import path in ``tree``; return ``tree``."""
    with open(root / "pyproject.toml", "rb") as f:
        package_dir: dict[str, str] = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(tree, ignore_errors=True)
    for name, folder in sorted(package_dir.items()):
        dest = tree.joinpath(*name.split("."))
        dest.mkdir(parents=True, exist_ok=True)
        for entry in sorted((root / folder).iterdir()):
            if entry.name == "__pycache__" or entry.name == "__main__.py":
                continue
            (dest / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return tree


def on_startup(command: str, dirty: bool) -> None:
    """MkDocs entry point (``build``, ``serve``, ``gh-deploy``): before mkdocstrings resolves its paths."""
    build_tree()
