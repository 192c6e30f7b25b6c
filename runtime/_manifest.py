"""``manifest.json``: the sha256 of every model file in a model directory, read, checked and written.

One rule for every reader (the runtime before it serves, ``onnxfn bundle`` before it ships): an entry is
``{"NAME": {"file": "NAME.onnx", "sha256": "<hex>"}}`` with a simple model name, a file that resolves inside
the model directory (no ``..``, no absolute path, no symlink out of it) and a digest that matches the bytes.
Standard library only, so build tools can use it without importing onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_REBUILD = "update it with `onnxfn manifest DIR`, or re-run `onnxfn convert`, which writes it"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def valid_name(name: str) -> bool:
    """Model names are simple file stems: no slashes, no ``..``."""
    return bool(_NAME.match(name)) and ".." not in name


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The ``models`` mapping of a manifest file; ``ValueError`` when it is not one."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())["models"]
        if not isinstance(entries, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f'{path} is not a manifest: expected {{"models": {{"NAME": {{"file", "sha256"}}}}}}'
        ) from None
    return entries


def resolve_entry(root: str | Path, name: str, entry: object) -> tuple[Path, str]:
    """(the file, resolved, inside ``root``; the expected sha256) of one entry, or ``ValueError``."""
    if not isinstance(name, str) or not valid_name(name):
        raise ValueError(f"invalid model name {name!r} in manifest")
    file = entry.get("file") if isinstance(entry, dict) else None
    expected = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(file, str) or not isinstance(expected, str):
        raise ValueError(f"manifest entry {name!r} needs 'file' and 'sha256'")
    base = Path(root).resolve()
    target = (base / file).resolve()
    if base not in target.parents:
        raise ValueError(f"manifest entry {name!r}: file {file!r} is outside the model directory")
    if not target.is_file():
        raise ValueError(f"manifest entry {name!r}: {file} does not exist")
    return target, expected.lower()


def verify_entry(root: str | Path, name: str, entry: object) -> tuple[Path, str]:
    """``resolve_entry``, then the file's sha256 must match: (the file, its sha256), or ``ValueError``."""
    target, expected = resolve_entry(root, name, entry)
    actual = sha256_file(target)
    if actual != expected:
        file = entry.get("file") if isinstance(entry, dict) else target.name
        raise ValueError(
            f"sha256 mismatch for {file}: manifest says {expected[:12]}…, file is {actual[:12]}… "
            f"(corrupted or replaced; if the new file is intended, {_REBUILD})"
        )
    return target, actual


def write_manifest(directory: str | Path, names: list[str] | None = None) -> Path:
    """Create or update ``manifest.json`` in ``directory`` for ``names`` (default: every ``*.onnx``)."""
    directory = Path(directory)
    manifest = directory / MANIFEST
    entries: dict[str, Any] = {}
    if manifest.is_file():
        try:
            entries = read_manifest(manifest)
        except ValueError:
            entries = {}
    stems = names if names is not None else [p.stem for p in sorted(directory.glob("*.onnx"))]
    for stem in stems:
        file = directory / f"{stem}.onnx"
        entries[stem] = {"file": file.name, "sha256": sha256_file(file)}
    entries = {k: v for k, v in entries.items() if (directory / v["file"]).is_file()}
    tmp = manifest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"models": dict(sorted(entries.items()))}, indent=2) + "\n")
    os.replace(tmp, manifest)
    return manifest


def verify_manifest(directory: str | Path) -> dict[str, str | None]:
    """Every model file of ``directory`` checked against its manifest: ``{name or file: None if ok, else why}``.

    Entries whose file is missing, outside the directory or whose sha256 differs are problems, and so is a
    ``*.onnx`` file the manifest does not list (the runtime would not serve it).
    """
    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {directory}: write one with `onnxfn manifest {directory}`")
    entries = read_manifest(manifest)
    results: dict[str, str | None] = {}
    listed = set()
    for name, entry in sorted(entries.items()):
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            listed.add(Path(entry["file"]).name)
        try:
            verify_entry(directory, name, entry)
            results[name] = None
        except ValueError as exc:
            results[name] = str(exc)
    for file in sorted(directory.glob("*.onnx")):
        if file.name not in listed:
            results[file.name] = (
                f"not listed in {MANIFEST}: the server skips it (add it with `onnxfn manifest {directory}`)"
            )
    return results


def manifest_command(directory: str | Path, *, verify: bool = False, names: list[str] | None = None) -> int:
    """``onnxfn manifest DIR [NAME ...] [--verify]``: write/update (exit 0) or check (exit 1 on a problem)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory of NAME.onnx files")
    if verify:
        results = verify_manifest(directory)
        for name, problem in results.items():
            print(f"ok       {name}" if problem is None else f"PROBLEM  {name}: {problem}")
        bad = sum(problem is not None for problem in results.values())
        print(f"{len(results) - bad} ok, {bad} with problems" + ("" if bad else f": {MANIFEST} matches"))
        return 1 if bad else 0
    if names:
        missing = [n for n in names if not (directory / f"{n}.onnx").is_file()]
        if missing:
            raise FileNotFoundError(f"no {', '.join(f'{n}.onnx' for n in missing)} in {directory}")
    elif not any(directory.glob("*.onnx")):
        raise FileNotFoundError(f"no *.onnx files in {directory}")
    before: dict[str, dict] = {}
    if (directory / MANIFEST).is_file():
        try:
            before = read_manifest(directory / MANIFEST)
        except ValueError:
            print(f"replacing {directory / MANIFEST}: it was not a valid manifest")
    path = write_manifest(directory, names)
    after = read_manifest(path)
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if new is None:
            print(f"removed   {name} (its file is gone)")
        elif old is None:
            print(f"added     {name}  {new['sha256']}")
        elif not isinstance(old, dict) or old.get("sha256") != new["sha256"]:
            print(f"updated   {name}  {new['sha256']}")
        else:
            print(f"unchanged {name}")
    print(f"wrote {path} ({len(after)} models)")
    return 0
