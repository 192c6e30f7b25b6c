"""``build_bundle``: the steps of a build in order, each done by its own module.

Stage the models (``_models``), install and trim the dependencies for the target (``_deps``, ``_trim``),
install onnxfn from its wheel and keep the runtime (``_wheel``), compile the cold path (``_bytecode``),
zip (``_zip``), measure and check Lambda's limits before anything is written (``_report``). With
``layer=True`` the dependencies go into a Lambda layer zip (under ``python/``) and the function zip holds
only onnxfn's runtime and the models.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from onnxfn.runtime._manifest import sha256_file

from ._bytecode import cold_path_modules, compile_bytecode, find_python, module_files
from ._deps import ARCHES, SERVE_REQUIREMENTS, pip_install, record_owners
from ._models import stage_models
from ._report import Archive, BundleReport, Trimmed, bucket, enforce_limits, package_sizes
from ._trim import check_forbidden, drop_distributions, prune_vendored_libs
from ._trim import trim as trim_files
from ._wheel import install_onnxfn
from ._zip import Entry, write_zip

BUNDLE_NAME = "onnxfn-lambda.zip"
LAYER_NAME = "onnxfn-layer.zip"
# Beside the layer zip: serverless.yml reads it (`${file(./dist/onnxfn-layer.json):bundle, 'zip'}`) and wires
# the layer into the function only when it exists; a plain build removes it, so a stale layer never deploys.
LAYER_DESCRIPTOR = "onnxfn-layer.json"
TASK_ROOT = "/var/task"  # where Lambda unpacks the function zip
LAYER_ROOT = "/opt/python"  # where a layer's python/ ends up (on sys.path)


def build_bundle(
    model_dir: str | Path | None,
    out_dir: str | Path = "dist",
    *,
    arch: str = "arm64",
    python: str = "3.12",
    models_from: str | None = None,
    name: str = BUNDLE_NAME,
    layer: bool = False,
    layer_name: str = LAYER_NAME,
    wheel: str | Path | None = None,
    pin: bool = True,
    trim: bool = True,
    bytecode: bool | None = None,
    compile_with: str | None = None,
    requirements: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    check_limits: bool = True,
    log: Callable[[str], object] | None = None,
) -> BundleReport:
    """Build ``out_dir/name`` for Lambda (``arch``, ``python``) and return its report.

    ``model_dir`` is a model directory (verified against its ``manifest.json``, or given one) or one ``.onnx``
    file; ``models_from`` (``s3://bucket/prefix``) instead leaves models out of the zip. ``layer``: the
    dependencies go to ``out_dir/layer_name`` as a Lambda layer (``python/…``) and ``name`` holds only the
    runtime and the models. onnxfn comes from ``wheel``, else from a wheel built from this checkout (the
    same wheel users install), else from the installed distribution. ``pin`` fixes every dependency to the
    version installed here (what you tested is what you deploy); ``trim=False`` keeps everything pip
    installed. ``bytecode``: ship ``.pyc`` compiled by a Python of the target version (``compile_with``,
    this interpreter, or ``pythonX.Y`` found here), so a cold start on a read-only task root never compiles;
    None = when such an interpreter is found, True = required, False = never.
    Raises ``BundleTooLarge`` above Lambda's limits (writing nothing), ``ValueError``/``FileNotFoundError``
    on bad input.
    """
    started = time.perf_counter()
    say = log or (lambda message: print(message, file=sys.stderr))
    machine = ARCHES.get(arch)
    if machine is None:
        raise ValueError(f"--arch {arch!r}: use arm64 or x86_64")
    if not re.fullmatch(r"3\.\d{1,2}", python):
        raise ValueError(f"--python {python!r}: use a version such as 3.12")
    if (model_dir is None) == (models_from is None):
        raise ValueError(
            "give a MODEL_DIR (models go inside the zip) or --models-from s3://bucket/prefix, not both"
        )
    if models_from is not None and (not models_from.startswith("s3://") or not bucket(models_from)):
        raise ValueError(f"--models-from {models_from!r}: expected s3://bucket/prefix")
    if wheel is not None and (not Path(wheel).is_file() or not str(wheel).endswith(".whl")):
        raise FileNotFoundError(f"--wheel {wheel}: no such wheel file")
    if layer and name == layer_name:
        raise ValueError(f"the function zip and the layer zip cannot both be named {name}")
    compiler = None
    if bytecode is not False:
        compiler = find_python(python, compile_with)
        if compiler is None and (bytecode or compile_with):
            raise FileNotFoundError(
                f"no Python {python} to compile bytecode with{f' ({compile_with})' if compile_with else ''}: "
                f"install python{python}, pass --compile-with PATH, or --no-compile"
            )
    out = Path(out_dir)
    target, layer_target = out / name, out / layer_name
    with tempfile.TemporaryDirectory(prefix="onnxfn-bundle-") as tmp:
        work = Path(tmp)
        deps, function = work / "deps", work / "function"
        deps.mkdir()
        function.mkdir()
        models = stage_models(Path(model_dir), function / "models") if model_dir is not None else []
        say(f"onnxfn bundle: fetching manylinux wheels for cp{python.replace('.', '')} {machine} (pip)…")
        pip_install(deps, machine, python, requirements or SERVE_REQUIREMENTS, pin=pin, cache_dir=cache_dir)
        owners = record_owners(deps)
        trimmed: list[Trimmed] = []
        if trim:
            trimmed += drop_distributions(deps, owners)
            trimmed += trim_files(deps)
            trimmed.append(prune_vendored_libs(deps))
        check_forbidden(deps)
        if (deps / "onnxfn").exists():
            raise ValueError("a dependency installed an 'onnxfn' package; refusing to overwrite it")
        say("onnxfn bundle: onnxfn's runtime from its wheel…")
        origin = install_onnxfn(function, work, wheel)
        described = _compile(function, deps, compiler, python, layer=layer, models=bool(models))
        function_zip, layer_zip = work / name, work / layer_name
        if layer:
            layer_entries = write_zip(layer_zip, [(deps, "python/")])
            function_entries = write_zip(function_zip, [(function, "")])
        else:
            layer_entries = []
            function_entries = write_zip(function_zip, [(deps, ""), (function, "")])
        version = _onnxfn_version(function)
        report = BundleReport(
            path=str(target),
            sha256="",
            arch="arm64" if machine == "aarch64" else "x86_64",
            python=python,
            zipped=function_zip.stat().st_size,
            unzipped=sum(e[1] for e in function_entries),
            files=len(function_entries),
            packages=package_sizes(function_entries, owners, version),
            trimmed=[t for t in trimmed if t.files],
            models=models,
            models_from=models_from,
            bytecode=described,
            onnxfn=origin,
            layer=_layer_archive(layer_target, layer_zip, layer_entries, owners, version) if layer else None,
        )
        if check_limits:
            enforce_limits(report)  # before anything is written: a refused build leaves no zip, no sha256
        out.mkdir(parents=True, exist_ok=True)
        if report.layer is not None:
            report.layer.sha256 = _publish(layer_zip, layer_target)
        report.sha256 = _publish(function_zip, target)
    _descriptor(out, report, layer_name, say)
    report.seconds = time.perf_counter() - started
    return report


def _publish(built: Path, target: Path) -> str:
    """Move a finished zip to ``target`` (atomically: via ``target.part``); return its sha256."""
    part = target.with_name(target.name + ".part")
    shutil.move(built, part)
    os.replace(part, target)
    return sha256_file(target)


def _compile(
    function: Path, deps: Path, compiler: str | None, python: str, *, layer: bool, models: bool
) -> str:
    """Bytecode for the cold path of both trees (or all of them if the probe cannot tell); a description."""
    if compiler is None:
        return (
            f"none (--no-compile, or no Python {python} here): every Lambda cold start compiles "
            "the imported modules, about +1 s; see docs/deploy.md"
        )
    modules = cold_path_modules(function / "models" if models else None)
    own = set((function / "onnxfn").rglob("*.py"))
    function_files = None if modules is None else module_files(function, modules) | own
    deps_files = None if modules is None else module_files(deps, modules)
    compiled = compile_bytecode(function, compiler, function_files, TASK_ROOT)
    compiled += compile_bytecode(deps, compiler, deps_files, LAYER_ROOT if layer else TASK_ROOT)
    scope = "modules of the cold path" if modules is not None else "modules"
    where = f"{TASK_ROOT}, layer {LAYER_ROOT}" if layer else TASK_ROOT
    return f"{compiled} {scope} as .pyc by {compiler} (unchecked-hash, {where})"


def _layer_archive(
    path: Path, built: Path, entries: list[Entry], owners: dict[str, tuple[str, str]], version: str
) -> Archive:
    inside = [(name.removeprefix("python/"), size, zipped) for name, size, zipped in entries]
    return Archive(
        path=str(path),
        sha256="",
        zipped=built.stat().st_size,
        unzipped=sum(e[1] for e in entries),
        files=len(entries),
        packages=package_sizes(inside, owners, version),
    )


def _onnxfn_version(function: Path) -> str:
    for meta in function.glob("onnxfn-*.dist-info/METADATA"):
        for line in meta.read_text(encoding="utf-8").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    from onnxfn import __version__

    return __version__


def _descriptor(out: Path, report: BundleReport, layer_name: str, say: Callable[[str], object]) -> None:
    """Write (``--layer``) or remove (plain) the layer descriptor serverless.yml looks for."""
    descriptor = out / LAYER_DESCRIPTOR
    if report.layer is None:
        stale = [p for p in (descriptor, out / layer_name) if p.exists()]
        for path in stale:
            path.unlink()
        if stale:
            say(f"onnxfn bundle: removed {', '.join(str(p) for p in stale)} (from an earlier --layer build)")
        return
    data = {
        "bundle": "layer",
        "layer": Path(report.layer.path).name,
        "layer_sha256": report.layer.sha256,
        "function": Path(report.path).name,
        "function_sha256": report.sha256,
        "python": report.python,
        "arch": report.arch,
    }
    descriptor.write_text(json.dumps(data, indent=2) + "\n")
