"""Model staging: the models that go into the zip, verified exactly as the runtime will verify them.

Reading the manifest, the path-safety rule and the sha256 all come from ``onnxfn.runtime._manifest`` (no
onnxruntime import): a model directory the runtime would refuse is refused here, at build time, by the same
rule and with the same message.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from onnxfn.runtime._manifest import MANIFEST, read_manifest, verify_entry, write_manifest


def stage_models(source: Path, dest: Path) -> list[str]:
    """Copy the models (verified against ``manifest.json``, or given one) to ``dest``; return their names.

    ``source`` is a model directory (with a manifest: every entry is checked; without: every ``*.onnx``,
    and a manifest is written) or one ``.onnx`` file.
    """
    if not source.exists():
        raise FileNotFoundError(
            f"model source {source} does not exist: pass a model directory or an .onnx file"
        )
    dest.mkdir(parents=True)
    if source.is_file():
        if source.suffix != ".onnx":
            raise ValueError(f"{source} is not an .onnx file")
        shutil.copyfile(source, dest / source.name)
        write_manifest(dest)
        return [source.stem]
    manifest = source / MANIFEST
    if not manifest.is_file():
        files = sorted(source.glob("*.onnx"))
        if not files:
            raise FileNotFoundError(f"no models in {source}: expected *.onnx files and a {MANIFEST}")
        for file in files:
            shutil.copyfile(file, dest / file.name)
        write_manifest(dest)
        return [f.stem for f in files]
    entries = read_manifest(manifest)
    if not entries:
        raise ValueError(f"{manifest} lists no models")
    for name, entry in sorted(entries.items()):
        try:
            file, _ = verify_entry(source, name, entry)
        except ValueError as exc:
            raise ValueError(f"{manifest}: {exc} (the runtime would refuse it)") from None
        rel = Path(os.path.normpath(entry["file"]))  # inside the directory: verify_entry checked
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest / rel)
    shutil.copyfile(manifest, dest / MANIFEST)
    return sorted(entries)
