"""onnxfn itself, from the same wheel users install: built once per bundle, installed, cut to the runtime.

The wheel is built from the checkout this onnxfn runs from (a clean copy of it, so no stale ``build/``
can leak in), or taken as given (``--wheel``); an onnxfn installed from a wheel is used as installed. Of
it the bundle keeps ``RUNTIME_FILES`` only (the runtime and the modules of the onnxfn package it imports),
plus the distribution's ``METADATA``; never the CLI, converter, client or bundler. ``check_closure`` proves
the list complete: every ``onnxfn.*`` import in a kept file must resolve to a kept file.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

# What the Lambda runs of the onnxfn package, as wheel paths ("dir/" = everything below it). Explicit on
# purpose: a new module the runtime imports must be added here, and check_closure says so when it is not.
RUNTIME_FILES = (
    "onnxfn/__init__.py",
    "onnxfn/_wire.py",  # the V2 wire codec, shared by the runtime and the client
    "onnxfn/runtime/",
)
_KEEP_METADATA = ("onnxfn-*.dist-info/METADATA",)  # importlib.metadata.version("onnxfn") keeps working
_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
    ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis", ".serverless", "artifacts", "site",
)  # fmt: skip


def source_checkout() -> Path | None:
    """The source tree this onnxfn is imported from (an editable install), or None (an installed wheel)."""
    import onnxfn

    root = Path(onnxfn.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "onnxfn"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def build_wheel(work: Path, source: Path | None = None) -> Path:
    """``pip wheel --no-deps`` of a clean copy of ``source`` (default: this checkout) into ``work``."""
    source = source or source_checkout()
    if source is None:
        raise FileNotFoundError(
            "onnxfn does not run from a source checkout: pass its wheel with --wheel PATH"
        )
    copy = work / "onnxfn-src"
    copy.mkdir()
    for path in _build_inputs(source):
        if path.is_dir():
            shutil.copytree(path, copy / path.name, ignore=_IGNORE, symlinks=True)
        else:
            shutil.copy2(path, copy / path.name)
    out = work / "onnxfn-wheel"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check"]
    cmd += ["--wheel-dir", str(out), str(copy)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    shutil.rmtree(copy, ignore_errors=True)
    wheels = sorted(out.glob("onnxfn-*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise ValueError(f"could not build the onnxfn wheel from {source}:\n{result.stderr[-3000:]}")
    return wheels[0]


def _build_inputs(source: Path) -> list[Path]:
    """What building the wheel reads: the top-level files (pyproject.toml, setup.py, README, LICENSE…) and
    the package folders of ``[tool.setuptools.package-dir]``; everything but ignored folders if unknown
    (never a model directory or other large data a checkout may hold)."""
    text = (source / "pyproject.toml").read_text(encoding="utf-8")
    section = re.search(r"^\[tool\.setuptools\.package-dir\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    folders = re.findall(r'^\s*"[^"]+"\s*=\s*"([^"/]+)"', section.group(1), re.M) if section else []
    if not folders:
        return sorted(p for p in source.iterdir() if not _IGNORE(str(source), [p.name]))
    files = {p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")}
    return sorted(files | {source / f for f in folders})


def install_onnxfn(dest: Path, work: Path, wheel: str | Path | None = None) -> str:
    """Put onnxfn's ``RUNTIME_FILES`` (and its METADATA) into ``dest``, from ``wheel``, a wheel built from
    this checkout, or the installed distribution; return a description of where it came from."""
    installed = work / "onnxfn-installed"
    if wheel is not None or source_checkout() is not None:
        if wheel is None:
            wheel = build_wheel(work)
            origin = f"wheel {Path(wheel).name}, built from {source_checkout()}"
        else:
            if not Path(wheel).is_file() or not str(wheel).endswith(".whl"):
                raise FileNotFoundError(f"--wheel {wheel}: no such wheel file")
            origin = f"wheel {Path(wheel).name}"
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet"]
        cmd += ["--disable-pip-version-check", "--no-warn-script-location", "--target", str(installed)]
        result = subprocess.run([*cmd, str(wheel)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ValueError(f"could not install {wheel}:\n{result.stderr[-3000:]}")
    else:
        origin = _copy_installed(installed)
    kept = keep_runtime(installed, dest)
    if "onnxfn/runtime/aws.py" not in kept:
        raise ValueError(f"the onnxfn {origin} has no onnxfn/runtime/aws.py (the Lambda handler)")
    check_closure(dest, installed)
    shutil.rmtree(installed, ignore_errors=True)
    return origin


def _copy_installed(dest: Path) -> str:
    """The files of the installed onnxfn distribution (what its wheel installed), copied to ``dest``."""
    try:
        dist = distribution("onnxfn")
    except PackageNotFoundError:
        raise FileNotFoundError("onnxfn is not installed: pip install it, or pass --wheel PATH") from None
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file() and (file.parts[0] == "onnxfn" or file.parts[0].endswith(".dist-info")):
            (dest / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / file)
    return f"installed distribution {dist.version}"


def keep_runtime(installed: Path, dest: Path) -> list[str]:
    """Copy the files of ``installed`` matched by ``RUNTIME_FILES`` (and onnxfn's METADATA) into ``dest``."""
    kept = []
    for path in sorted(installed.rglob("*")):
        rel = path.relative_to(installed).as_posix()
        if not path.is_file() or "__pycache__" in rel.split("/") or rel.endswith((".pyc", ".pyo")):
            continue
        if _kept(rel):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / rel)
            kept.append(rel)
    return kept


def _kept(rel: str) -> bool:
    if any(fnmatch.fnmatchcase(rel, pattern) for pattern in _KEEP_METADATA):
        return True
    return any(rel.startswith(entry) if entry.endswith("/") else rel == entry for entry in RUNTIME_FILES)


def imported_onnxfn_modules(root: Path) -> dict[str, tuple[set[str], set[str]]]:
    """For each ``onnxfn`` module under ``root``: (the ``onnxfn.*`` modules it imports, the names it takes
    ``from`` them, qualified: each one an attribute or a submodule), from imports anywhere in the file."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for file in sorted((root / "onnxfn").rglob("*.py")):
        rel = file.relative_to(root).with_suffix("")
        parts = list(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        package = parts if file.name == "__init__.py" else parts[:-1]
        modules: set[str] = set()
        names: set[str] = set()
        for node in ast.walk(ast.parse(file.read_bytes(), str(file))):
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                modules.add(module)
                names |= {f"{module}.{alias.name}" for alias in node.names}
        found[".".join(parts)] = ({n for n in modules if _ours(n)}, {n for n in names if _ours(n)})
    return found


def _ours(name: str) -> bool:
    return name == "onnxfn" or name.startswith("onnxfn.")


def check_closure(root: Path, wheel_root: Path | None = None) -> None:
    """Every ``onnxfn.*`` module a kept module imports must be kept too (``ValueError`` names the gap).

    ``wheel_root`` (the whole installed wheel) tells a submodule taken by ``from package import name`` from
    an attribute: a name that is a module of the wheel must be kept.
    """
    missing = []
    for module, (modules, names) in imported_onnxfn_modules(root).items():
        for name in sorted(modules):
            if _module_file(root, name) is None:
                missing.append(f"{module} imports {name}")
        for name in sorted(names):
            if wheel_root is not None and _module_file(root, name) is None:
                if _module_file(wheel_root, name) is not None:
                    missing.append(f"{module} imports {name}")
    if missing:
        raise ValueError(
            "the Lambda bundle would miss onnxfn modules the runtime imports: "
            + "; ".join(missing)
            + ". Add them to RUNTIME_FILES in onnxfn/_bundle/_wheel.py (and make sure the wheel has them)."
        )


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None
