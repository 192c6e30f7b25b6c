"""The documentation site builds with ``mkdocs build --strict`` (what ``make docs`` runs), and its API
reference documents every public name of onnxfn.client, onnxfn.runtime and onnxfn.converter."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"onnxfn.client": "client", "onnxfn.runtime": "runtime", "onnxfn.converter": "converter"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return out


def test_every_guide_is_a_page(site):
    for guide in sorted((ROOT / "docs").glob("*.md")):
        name = "" if guide.stem == "index" else f"{guide.stem}/"
        assert (site / name / "index.html").is_file(), guide.name


@pytest.mark.parametrize("module", sorted(PAGES))
def test_api_reference_documents_every_public_name(site, module):
    html = (site / "api" / PAGES[module] / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(onnxfn\.[\w.]+)"', html))
    documented = {anchor.rsplit(".", 1)[-1] for anchor in anchors}
    public = importlib.import_module(module).__all__
    missing = sorted(set(public) - documented)
    assert missing == [], f"{module}.__all__ names without an entry in docs/api/{PAGES[module]}.md"
