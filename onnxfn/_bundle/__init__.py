"""``onnxfn bundle``: the AWS Lambda deployment zip (or a layer zip plus a function zip), and the
serverless-offline launcher of ``make offline``.

A build tool: the runtime never imports it. The zip holds onnxfn's runtime (from the onnxfn wheel), the serve
dependencies as manylinux wheels for the target, trimmed of what a Lambda never runs, and ``models/`` with
``manifest.json``. Same inputs give the same bytes. One concern per module:

- ``_build``: ``build_bundle``, the steps in order;
- ``_models``: model staging, verified by the runtime's own manifest rules (``onnxfn.runtime._manifest``);
- ``_deps``: ``pip install --platform`` for Lambda, pins, which distribution owns which file;
- ``_trim``: what is removed, and the ELF reader that finds unused vendored libraries;
- ``_wheel``: onnxfn from its wheel, cut to ``RUNTIME_FILES``, with an import-closure check;
- ``_bytecode`` and ``_probe``: ``.pyc`` for the modules a cold start imports;
- ``_zip``: deterministic zips, and unzipping as Lambda does;
- ``_report``: sizes, the table, Lambda's limits (MiB) and the refusal;
- ``_offline``: serverless-offline; ``_cli``: ``onnxfn bundle`` and ``python -m onnxfn._bundle offline``.
"""

from __future__ import annotations

from ._build import BUNDLE_NAME, LAYER_NAME, build_bundle
from ._cli import register
from ._deps import local_target
from ._report import BundleReport, BundleTooLarge
from ._zip import unpack

__all__ = [
    "BUNDLE_NAME",
    "LAYER_NAME",
    "BundleReport",
    "BundleTooLarge",
    "build_bundle",
    "local_target",
    "register",
    "unpack",
]
