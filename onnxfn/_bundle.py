"""``onnxfn bundle``: the AWS Lambda deployment zip; and the serverless-offline launcher of ``make offline``.

A build tool: the runtime never imports it. The zip holds ``onnxfn/__init__.py``, ``onnxfn/runtime/``, the
serve dependencies as manylinux wheels for the target (``pip install --platform … --only-binary=:all:``),
trimmed of what a Lambda never runs, and ``models/`` with ``manifest.json``. Same inputs give the same bytes:
pinned versions (those installed here, by default), sorted entries, fixed timestamps and modes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
ZIPPED_LIMIT = 50 * MiB  # Lambda: direct upload of a .zip
UNZIPPED_LIMIT = 250 * MiB  # Lambda: function code and layers, unzipped
BUNDLE_NAME = "onnxfn-lambda.zip"
HANDLER = "onnxfn.runtime.aws.handler"
ARCHES = {"arm64": "aarch64", "aarch64": "aarch64", "x86_64": "x86_64", "amd64": "x86_64"}
# The python3.12 runtime is Amazon Linux 2023 (glibc 2.34): any manylinux wheel up to 2_34 runs there.
LAMBDA_GLIBC_MINOR = 34
# pyproject's `serve` extra, minus uvicorn: on Lambda, Mangum is the server. boto3 is not bundled either
# (the Lambda runtime ships it; only s3:// model sources import it, lazily).
SERVE_REQUIREMENTS = (
    "onnxruntime>=1.17",
    "numpy>=1.26",
    "fastapi>=0.110",
    "mangum>=0.17",
    "pillow>=10",
    "python-multipart>=0.0.9",
)
# Dependencies that onnxruntime declares for its offline tooling (model conversion, quantization, symbolic
# shapes, ORT format), never imported by an InferenceSession; and packages that must never be in the zip.
DROP_DISTRIBUTIONS = frozenset(
    {"protobuf", "flatbuffers", "packaging", "sympy", "mpmath", "coloredlogs", "humanfriendly", "ml-dtypes"}
)
FORBIDDEN_TOP_LEVEL = frozenset({"tensorflow", "keras", "tf2onnx", "onnx", "uvicorn", "torch"})
# (what, why, regexes over posix paths relative to the zip root). Each rule is proven harmless by
# tests/deploy (the handler answers from the unzipped bundle in an isolated interpreter).
TRIM_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bytecode caches", (r"(^|/)__pycache__/", r"\.py[co]$")),
    ("console scripts (shebangs of the build machine)", (r"^bin/",)),
    (
        "install records (importlib.metadata needs METADATA only)",
        (r"\.dist-info/(RECORD|INSTALLER|REQUESTED|direct_url\.json)$",),
    ),
    ("test suites", (r"(^|/)tests?/", r"(^|/)conftest\.py$")),
    ("type stubs, C/Cython headers, static libs", (r"\.pyi$", r"\.pxd$", r"\.a$", r"^numpy/_core/include/")),
    (
        "numpy build tools (f2py, distutils, PyInstaller hooks, Cython examples)",
        (r"^numpy/(f2py|distutils|_pyinstaller)/", r"_examples/"),
    ),
    (
        "onnxruntime offline tooling (transformers, quantization, tools, datasets, backend)",
        (r"^onnxruntime/(transformers|quantization|tools|datasets|backend)/",),
    ),
    ("Pillow modules the API never calls (AVIF, fonts, Tk)", (r"^PIL/_(avif|imagingft|imagingtk)\.",)),
)


class BundleTooLarge(ValueError):
    """The zip exceeds a Lambda limit; the message carries the size table and what to do."""


@dataclass
class PackageSize:
    """One distribution (or ``onnxfn`` / ``models``) inside the zip."""

    name: str
    version: str
    files: int = 0
    unzipped: int = 0
    zipped: int = 0


@dataclass
class Trimmed:
    """What one trim rule removed."""

    what: str
    files: int = 0
    bytes: int = 0


@dataclass
class BundleReport:
    """What ``build_bundle`` made: path, digest, sizes per package, what was trimmed."""

    path: str
    sha256: str
    arch: str
    python: str
    zipped: int
    unzipped: int
    files: int
    packages: list[PackageSize]
    trimmed: list[Trimmed]
    models: list[str] = field(default_factory=list)
    models_from: str | None = None
    bytecode: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def top(self, n: int = 5) -> list[PackageSize]:
        """The ``n`` largest packages by unzipped size."""
        return sorted(self.packages, key=lambda p: (-p.unzipped, p.name))[:n]

    def table(self) -> str:
        """The human summary ``onnxfn bundle`` prints."""
        lines = [
            f"{self.path}  (python{self.python}, {self.arch}, handler {HANDLER})",
            f"{'package':<22}{'version':<12}{'files':>7}{'unzipped MB':>14}{'zipped MB':>12}",
        ]
        for p in sorted(self.packages, key=lambda p: (-p.unzipped, p.name)):
            lines.append(f"{p.name:<22}{p.version:<12}{p.files:>7}{_mb(p.unzipped):>14}{_mb(p.zipped):>12}")
        lines.append(
            f"{'total':<22}{'':<12}{self.files:>7}{_mb(self.unzipped):>14}{_mb(self.zipped):>12}"
            f"   (limits {UNZIPPED_LIMIT // MiB} / {ZIPPED_LIMIT // MiB} MiB)"
        )
        if self.trimmed:
            saved = sum(t.bytes for t in self.trimmed)
            lines.append(f"trimmed {_mb(saved)} MB unzipped:")
            lines += [
                f"  {_mb(t.bytes):>7} MB  {t.files:>5} files  {t.what}" for t in self.trimmed if t.files
            ]
        if self.models_from:
            lines.append(
                f"models: none inside; set ONNXFN_MODEL_DIR={self.models_from} "
                f"(serverless: --param modelDir={self.models_from} "
                f"--param modelBucket={_bucket(self.models_from)})"
            )
        else:
            lines.append(f"models: {', '.join(self.models)}")
        lines.append(f"bytecode: {self.bytecode}")
        lines.append(f"sha256 {self.sha256}  ({self.seconds:.1f} s)")
        return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / MiB:.1f}"


def _bucket(url: str) -> str:
    return url[5:].partition("/")[0]


# -- building ----------------------------------------------------------------------------------


def build_bundle(
    model_dir: str | Path | None,
    out_dir: str | Path = "dist",
    *,
    arch: str = "arm64",
    python: str = "3.12",
    models_from: str | None = None,
    name: str = BUNDLE_NAME,
    pin: bool = True,
    trim: bool = True,
    bytecode: bool | None = None,
    compile_with: str | None = None,
    requirements: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    check_limits: bool = True,
    log: Any = None,
) -> BundleReport:
    """Build ``out_dir/name`` for Lambda (``arch``, ``python``) and return its report.

    ``model_dir`` is a model directory (verified against its ``manifest.json``, or given one) or one ``.onnx``
    file; ``models_from`` (``s3://bucket/prefix``) instead leaves models out of the zip. ``pin`` fixes every
    dependency to the version installed in this environment (what you tested is what you deploy);
    ``trim=False`` keeps everything pip installed (the baseline the benchmark compares against).
    ``bytecode``: ship ``.pyc`` compiled by a Python of the target version (``compile_with``, this interpreter,
    or ``pythonX.Y`` found here), so a cold start on Lambda's read-only ``/var/task`` never compiles;
    None = when such an interpreter is found, True = required, False = never.
    Raises ``BundleTooLarge`` above Lambda's limits, ``ValueError``/``FileNotFoundError`` on bad input.
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
    if models_from is not None and (not models_from.startswith("s3://") or not _bucket(models_from)):
        raise ValueError(f"--models-from {models_from!r}: expected s3://bucket/prefix")
    compiler = None
    if bytecode is not False:
        compiler = find_python(python, compile_with)
        if compiler is None and (bytecode or compile_with):
            raise FileNotFoundError(
                f"no Python {python} to compile bytecode with{f' ({compile_with})' if compile_with else ''}: "
                f"install python{python}, pass --compile-with PATH, or --no-compile"
            )
    out = Path(out_dir)
    target = out / name
    with tempfile.TemporaryDirectory(prefix="onnxfn-bundle-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        models = _stage_models(Path(model_dir), root / "models") if model_dir is not None else []
        say(f"onnxfn bundle: fetching manylinux wheels for cp{python.replace('.', '')} {machine} (pip)…")
        _pip_install(root, machine, python, requirements or SERVE_REQUIREMENTS, pin=pin, cache_dir=cache_dir)
        owners = _record_owners(root)
        trimmed: list[Trimmed] = []
        if trim:
            trimmed += _drop_distributions(root, owners)
            trimmed += _trim(root)
            trimmed.append(_prune_vendored_libs(root))
        _check_forbidden(root)
        _stage_onnxfn(root)
        if compiler is not None:
            modules = cold_path_modules(root / "models" if models else None)
            files = None
            if modules is not None:
                files = _module_files(root, modules) | set((root / "onnxfn").rglob("*.py"))
            compiled = compile_bytecode(root, compiler, files)
            scope = "modules of the cold path" if files is not None else "modules"
            described = f"{compiled} {scope} as .pyc by {compiler} (unchecked-hash, /var/task)"
        else:
            described = (
                f"none (--no-compile, or no Python {python} here): every Lambda cold start compiles "
                "the imported modules, about +1 s; see docs/deploy.md"
            )
        out.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        entries = _write_zip(root, partial)
        packages = _package_sizes(entries, owners, root)
    os.replace(partial, target)
    report = BundleReport(
        path=str(target),
        sha256=_sha256(target),
        arch="arm64" if machine == "aarch64" else "x86_64",
        python=python,
        zipped=target.stat().st_size,
        unzipped=sum(e[1] for e in entries),
        files=len(entries),
        packages=packages,
        trimmed=[t for t in trimmed if t.files],
        models=models,
        models_from=models_from,
        bytecode=described,
        seconds=time.perf_counter() - started,
    )
    if check_limits:
        try:
            enforce_limits(report)
        except BundleTooLarge:
            target.unlink()
            raise
    return report


def enforce_limits(report: BundleReport) -> None:
    """Raise ``BundleTooLarge`` (with the size table and what to do) above Lambda's zip limits."""
    if report.zipped <= ZIPPED_LIMIT and report.unzipped <= UNZIPPED_LIMIT:
        return
    raise BundleTooLarge(
        f"the bundle is {_mb(report.zipped)} MB zipped / {_mb(report.unzipped)} MB unzipped, above Lambda's "
        f"{ZIPPED_LIMIT // MiB} MB zipped / {UNZIPPED_LIMIT // MiB} MB unzipped limits:\n{report.table()}\n"
        "Keep large models out of the zip with --models-from s3://bucket/prefix, or deploy the container "
        "image (Dockerfile, 10 GB limit); see docs/deploy.md"
    )


def _stage_models(source: Path, dest: Path) -> list[str]:
    """Copy the models (verified against ``manifest.json``, or given one) to ``dest``; return their names."""
    from onnxfn.runtime._repository import MANIFEST, sha256_file, valid_name, write_manifest

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
    try:
        entries = json.loads(manifest.read_text())["models"]
        items = sorted(entries.items())
    except (ValueError, KeyError, AttributeError, TypeError):
        raise ValueError(
            f'{manifest} is not a manifest: expected {{"models": {{"NAME": {{"file", "sha256"}}}}}}'
        ) from None
    if not items:
        raise ValueError(f"{manifest} lists no models")
    for model, entry in items:
        rel = entry.get("file") if isinstance(entry, dict) else None
        if (
            not valid_name(model)
            or not isinstance(rel, str)
            or Path(rel).is_absolute()
            or ".." in Path(rel).parts
        ):
            raise ValueError(f"{manifest}: invalid entry {model!r}")
        file = source / rel
        if not file.is_file():
            raise FileNotFoundError(f"{manifest} lists {rel} for model {model!r}, but it does not exist")
        if sha256_file(file) != str(entry.get("sha256", "")).lower():
            raise ValueError(
                f"{file}: sha256 does not match {manifest} (the runtime would refuse it): rebuild it"
            )
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest / rel)
    shutil.copyfile(manifest, dest / MANIFEST)
    return [model for model, _ in items]


def platform_tags(machine: str) -> list[str]:
    """manylinux tags that run on the Lambda python3.12 runtime (glibc 2.34), newest first."""
    return [f"manylinux_2_{minor}_{machine}" for minor in range(LAMBDA_GLIBC_MINOR, 16, -1)] + [
        f"manylinux2014_{machine}"
    ]


def installed_pins(exclude: Iterable[str] = ("onnxfn",)) -> list[str]:
    """``name==version`` for every distribution installed in this environment (pip constraints)."""
    from importlib.metadata import distributions

    skip = {_canonical(n) for n in exclude}
    pins: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if not name or _canonical(name) in skip or "+" in dist.version:
            continue
        pins.setdefault(_canonical(name), f"{name}=={dist.version}")
    return sorted(pins.values(), key=str.lower)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip_install(
    root: Path,
    machine: str,
    python: str,
    requirements: Sequence[str],
    *,
    pin: bool,
    cache_dir: str | Path | None,
) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--target", str(root), "--no-compile", "--quiet"]
    cmd += ["--disable-pip-version-check", "--no-warn-script-location", "--upgrade"]
    cmd += ["--implementation", "cp", "--python-version", python, "--only-binary=:all:"]
    for tag in platform_tags(machine):
        cmd += ["--platform", tag]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if cache_dir is not None:
        env["PIP_CACHE_DIR"] = str(cache_dir)
    constraints = root.parent / "constraints.txt"
    if pin:
        constraints.write_text("\n".join(installed_pins()) + "\n")
        cmd += ["--constraint", str(constraints)]
    cmd += list(requirements)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        noise = ("is ignored: it is neither a file nor a directory",)
        tail = [line for line in result.stderr.splitlines() if not any(n in line for n in noise)][-15:]
        hint = " (or --no-pin: some version installed here has no wheel for that target)" if pin else ""
        raise ValueError(
            f"pip could not fetch wheels for python{python} {machine}{hint}:\n" + "\n".join(tail)
        )
    constraints.unlink(missing_ok=True)


def _record_owners(root: Path) -> dict[str, tuple[str, str]]:
    """Map each installed path (posix, relative to ``root``) to its distribution (name, version)."""
    owners: dict[str, tuple[str, str]] = {}
    for info in sorted(root.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        meta = info / "METADATA"
        if meta.is_file():
            for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Name:"):
                    name = line.split(":", 1)[1].strip()
                    break
        record = info / "RECORD"
        paths = (
            [row.split(",")[0] for row in record.read_text().splitlines() if row] if record.is_file() else []
        )
        for rel in paths:
            posix = os.path.normpath(rel).replace(os.sep, "/")
            owners[posix] = (name, version)
        for file in info.rglob("*"):
            owners[file.relative_to(root).as_posix()] = (name, version)
    return owners


def _drop_distributions(root: Path, owners: dict[str, tuple[str, str]]) -> list[Trimmed]:
    dropped = Trimmed("onnxruntime tooling dependencies (" + ", ".join(sorted(DROP_DISTRIBUTIONS)) + ")")
    names = {_canonical(n) for n, _ in owners.values() if _canonical(n) in DROP_DISTRIBUTIONS}
    if not names:
        return [dropped]
    for rel, (dist, _) in list(owners.items()):
        if _canonical(dist) in names:
            path = root / rel
            if path.is_file() and not path.is_symlink():
                dropped.files += 1
                dropped.bytes += path.stat().st_size
                path.unlink()
    _remove_empty_dirs(root)
    dropped.what = "onnxruntime tooling dependencies: " + ", ".join(sorted(names))
    return [dropped]


def _trim(root: Path) -> list[Trimmed]:
    rules = [(Trimmed(what), [re.compile(p) for p in patterns]) for what, patterns in TRIM_RULES]
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("models/"):
            continue
        for trimmed, patterns in rules:
            if any(p.search(rel) for p in patterns):
                trimmed.files += 1
                trimmed.bytes += path.lstat().st_size
                path.unlink()
                break
    _remove_empty_dirs(root)
    return [t for t, _ in rules]


def _remove_empty_dirs(root: Path) -> None:
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()


def elf_needed(path: Path) -> list[str] | None:
    """DT_NEEDED entries of a 64-bit little-endian ELF file (None if it is not one, or has no sections)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        (shoff,) = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
        if not shoff or not shnum:
            return None
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
        dynamic = [s for s in sections if s[1] == 6]  # SHT_DYNAMIC
        if not dynamic:
            return []
        _, _, _, _, offset, size, link, _, _, _ = dynamic[0]
        f.seek(offset)
        raw = f.read(size)
        strtab = sections[link]
        f.seek(strtab[4])
        strings = f.read(strtab[5])
    needed = []
    for i in range(0, len(raw) - 15, 16):
        tag, value = struct.unpack_from("<qQ", raw, i)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            needed.append(strings[value : strings.index(b"\0", value)].decode())
    return needed


def _prune_vendored_libs(root: Path) -> Trimmed:
    """Remove libraries in ``*.libs/`` (auditwheel's vendored copies) that no remaining binary loads."""
    pruned = Trimmed("vendored shared libraries nothing loads any more (e.g. libavif, freetype)")
    vendored = {p.name: p for d in root.glob("*.libs") for p in d.iterdir() if p.is_file()}
    if not vendored:
        return pruned
    binaries = [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".so" or ".so." in p.name)]
    graph: dict[str, list[str]] = {}
    for binary in binaries:
        needed = elf_needed(binary)
        if needed is None:
            return pruned  # something we cannot read: keep everything
        graph[str(binary)] = needed
    reached: set[str] = set()
    todo = [str(b) for b in binaries if b.name not in vendored]
    while todo:
        for lib in graph.get(todo.pop(), []):
            if lib in vendored and lib not in reached:
                reached.add(lib)
                todo.append(str(vendored[lib]))
    for lib, path in sorted(vendored.items()):
        if lib not in reached:
            pruned.files += 1
            pruned.bytes += path.stat().st_size
            path.unlink()
    return pruned


def _check_forbidden(root: Path) -> None:
    found = sorted(p.name for p in root.iterdir() if p.name.lower() in FORBIDDEN_TOP_LEVEL)
    if found:
        raise ValueError(
            f"refusing to bundle {', '.join(found)}: the Lambda zip serves models, it never converts them"
        )


def _stage_onnxfn(root: Path) -> None:
    """``onnxfn/__init__.py``, ``onnxfn/_wire.py`` (the V2 codec the runtime imports) and
    ``onnxfn/runtime/**`` from here (never the CLI, converter, client)."""
    import importlib.util

    spec = importlib.util.find_spec("onnxfn.runtime")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("onnxfn.runtime is not importable here: install onnxfn (pip install -e .)")
    runtime = Path(next(iter(spec.submodule_search_locations)))
    package = root / "onnxfn"
    if package.exists():
        raise ValueError("a dependency installed an 'onnxfn' package; refusing to overwrite it")
    (package / "runtime").mkdir(parents=True)
    init = Path(importlib.util.find_spec("onnxfn").origin)  # type: ignore[arg-type]
    shutil.copyfile(init, package / "__init__.py")
    shutil.copyfile(init.parent / "_wire.py", package / "_wire.py")
    for file in sorted(runtime.rglob("*")):
        rel = file.relative_to(runtime)
        if file.is_dir() or "__pycache__" in rel.parts or file.suffix in (".pyc", ".pyo"):
            continue
        (package / "runtime" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, package / "runtime" / rel)


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


# Run by this environment's Python (its serve dependencies are the versions the bundle pins): the modules a
# Lambda cold start and its first requests import. Only those get .pyc, so the cold path compiles nothing
# while the rest (other image codecs, numpy.ma, pydantic.v1, ...) stays source-only and the zip stays small.
_COLD_PATH_PROBE = r"""
import base64, io, json, os, sys
import onnxruntime
from mangum import Mangum
from PIL import Image, WebPImagePlugin
from onnxfn.runtime._app import create_app
from onnxfn.runtime._repository import ModelRepository
from onnxfn.runtime._settings import Settings
repository = ModelRepository.load(sys.argv[1]) if sys.argv[1] else ModelRepository({})
handler = Mangum(create_app(repository=repository, settings=Settings(log_level="ERROR")), lifespan="off")
png = io.BytesIO()
Image.new("L", (8, 8)).save(png, format="PNG")
def event(method, path, body=None, content_type=None, binary=False):
    http = {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "x"}
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "localhost", **({"content-type": content_type} if content_type else {})},
            "requestContext": {"http": http, "stage": "$default", "requestId": "x", "accountId": "x",
                               "apiId": "x", "domainName": "localhost", "routeKey": "$default", "timeEpoch": 0},
            "body": body, "isBase64Encoded": binary}
events = [event("GET", "/v2/health/ready"), event("GET", "/v2"),
          event("POST", "/predict", base64.b64encode(png.getvalue()).decode(), "application/octet-stream", True),
          event("POST", "/predict", json.dumps({"instances": ["text"]}), "application/json")]
events += [event("GET", f"/v2/models/{name}") for name in repository.models]
for e in events:
    handler(e, None)
Image.preinit()
print(json.dumps(sorted(sys.modules)))
"""


def cold_path_modules(models: Path | None) -> list[str] | None:
    """Module names imported by a cold start plus first requests (None if this environment cannot tell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ONNXFN_"))}
    env["ONNXFN_LOG_LEVEL"] = "ERROR"
    cmd = [sys.executable, "-c", _COLD_PATH_PROBE, str(models) if models else ""]
    try:
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        return json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def _module_files(root: Path, names: Iterable[str]) -> set[Path]:
    files = set()
    for name in names:
        base = root.joinpath(*name.split("."))
        for candidate in (base.parent / f"{base.name}.py", base / "__init__.py"):
            if candidate.is_file():
                files.add(candidate)
    return files


def _zip_time() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit() and int(epoch) >= 315532800:  # zip cannot store dates before 1980
        return time.gmtime(int(epoch))[:6]
    return (1980, 1, 1, 0, 0, 0)


def _write_zip(root: Path, target: Path) -> list[tuple[str, int, int]]:
    """A deterministic zip of ``root``: sorted names, fixed time, 0644/0755. Returns (name, size, zipped)."""
    date_time = _zip_time()
    files = sorted(
        (p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )
    entries = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, path in files:
            mode = path.stat().st_mode
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.create_system = 3  # unix: keep the modes below
            info.external_attr = (stat.S_IFREG | (0o755 if mode & 0o111 else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = path.stat().st_size
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=info.file_size > 2**31) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        for info in zf.infolist():
            entries.append((info.filename, info.file_size, info.compress_size))
    return entries


def _package_sizes(
    entries: list[tuple[str, int, int]], owners: dict[str, tuple[str, str]], root: Path
) -> list[PackageSize]:
    from onnxfn import __version__

    sizes: dict[str, PackageSize] = {}
    for name, size, zipped in entries:
        top = name.split("/", 1)[0]
        if top == "onnxfn":
            key, version = "onnxfn (runtime)", __version__
        elif top == "models":
            key, version = "models", ""
        elif _source_of(name) in owners:
            key, version = owners[_source_of(name)]
        else:
            key, version = top, ""
        package = sizes.setdefault(key, PackageSize(key, version))
        package.files += 1
        package.unzipped += size
        package.zipped += zipped
    return sorted(sizes.values(), key=lambda p: (-p.unzipped, p.name))


def _source_of(name: str) -> str:
    """``pkg/__pycache__/mod.cpython-312.pyc`` → ``pkg/mod.py``; other names unchanged."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[-2] == "__pycache__" and name.endswith(".pyc"):
        return "/".join([*parts[:-2], parts[-1].split(".", 1)[0] + ".py"])
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_target() -> tuple[str, str]:
    """(arch, python) of this machine and interpreter, for a bundle that runs here."""
    import platform

    machine = platform.machine().lower()
    if machine not in ARCHES:
        raise ValueError(f"no Lambda architecture matches this machine ({machine})")
    return (
        "arm64" if ARCHES[machine] == "aarch64" else "x86_64"
    ), f"{sys.version_info[0]}.{sys.version_info[1]}"


def unpack(zip_path: str | Path, dest: str | Path) -> Path:
    """Unzip a bundle as Lambda does (into ``dest``, modes kept); return ``dest``."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                path.chmod(mode)
    return dest


# -- serverless-offline (make offline, tests/deploy) -------------------------------------------


def base_python() -> str:
    """The interpreter behind this (possibly virtual) environment: it has no site-packages of ours."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_node_modules(service: Path) -> None:
    """``npm ci`` (from package-lock.json) when ``node_modules`` is missing or stale."""
    modules = service / "node_modules"
    lock = service / "package-lock.json"
    marker = modules / ".package-lock.json"
    if modules.is_dir() and marker.is_file() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed: serverless-offline needs Node.js >= 20 and npm")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=service, check=True)


def prepare_offline(
    zip_path: str | Path, workdir: str | Path, repo: str | Path = "."
) -> tuple[Path, dict[str, str]]:
    """A serverless-offline service dir that runs the handler from the unzipped bundle.

    ``workdir`` gets ``service/`` (this repo's serverless.yml and package.json, its node_modules, the zip as
    the artifact), ``bundle/`` (the zip unpacked) and ``bin/python3``: serverless-offline spawns ``python3``,
    which here runs this machine's base interpreter with ``-S -s`` (no site-packages at all) and only the
    bundle on PYTHONPATH, like ``/var/task`` on Lambda. Returns (service dir, environment for ``osls``).
    """
    repo = Path(repo).resolve()
    workdir = Path(workdir).resolve()
    ensure_node_modules(repo)
    bundle = unpack(zip_path, workdir / "bundle")
    service = workdir / "service"
    if service.exists():
        shutil.rmtree(service)
    (service / "dist").mkdir(parents=True)
    for name in ("serverless.yml", "package.json"):
        shutil.copyfile(repo / name, service / name)
    (service / "node_modules").symlink_to(repo / "node_modules", target_is_directory=True)
    shutil.copyfile(zip_path, service / "dist" / BUNDLE_NAME)
    shim_dir = workdir / "bin"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{base_python()}" -S -s -B "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(
        PATH=f"{shim_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(bundle),
        PYTHONDONTWRITEBYTECODE="1",  # /var/task is read-only on Lambda
        ONNXFN_MODEL_DIR=env.get("ONNXFN_MODEL_DIR") or str(bundle / "models"),
        ONNXFN_API_KEY_HASHES=env.get("ONNXFN_API_KEY_HASHES", ""),
        AWS_EC2_METADATA_DISABLED="true",  # never look for credentials on the network
        SLS_TELEMETRY_DISABLED="1",
        SLS_NOTIFICATIONS_MODE="off",
        SLS_DEPRECATION_DISABLE="*",
    )
    return service, env


def offline_command(http_port: int = 3000, lambda_port: int = 3002, stage: str = "offline") -> list[str]:
    """The ``osls offline`` command line: loopback only, the given ports."""
    npx = shutil.which("npx") or "npx"
    return [
        npx, "--no-install", "osls", "offline", "start", "--stage", stage, "--host", "127.0.0.1",
        "--httpPort", str(http_port), "--lambdaPort", str(lambda_port), "--noPrependStageInUrl",
    ]  # fmt: skip


def _offline_main(argv: Sequence[str]) -> int:
    """``python -m onnxfn._bundle offline MODEL_DIR``: a local bundle, then serverless-offline."""
    parser = argparse.ArgumentParser(prog="python -m onnxfn._bundle offline")
    parser.add_argument("model", help="model directory or .onnx file")
    parser.add_argument("--workdir", default="dist/offline")
    parser.add_argument("--http-port", type=int, default=3000)
    parser.add_argument("--lambda-port", type=int, default=3002)
    args = parser.parse_args(argv)
    arch, python = local_target()
    workdir = Path(args.workdir)
    report = build_bundle(args.model, workdir, arch=arch, python=python)
    print(report.table(), file=sys.stderr)
    service, env = prepare_offline(report.path, workdir)
    print(f"serverless-offline: http://127.0.0.1:{args.http_port}  (Ctrl-C stops it)", file=sys.stderr)
    cmd = offline_command(args.http_port, args.lambda_port)
    try:
        return subprocess.run(cmd, cwd=service, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130


# -- the CLI -----------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``onnxfn bundle`` to the CLI."""
    p = subparsers.add_parser(
        "bundle",
        help="build the AWS Lambda zip (runtime + serve deps as manylinux wheels + models)",
        description="Build dist/onnxfn-lambda.zip for serverless.yml: the runtime, its serve dependencies "
        "for the target Lambda platform, and the models with their manifest. Reproducible; fails above "
        "Lambda's limits (50 MB zipped, 250 MB unzipped).",
    )
    p.add_argument("model", nargs="?", help="model directory (with manifest.json) or one .onnx file")
    p.add_argument("-o", "--output", default="dist", help="output directory (default: dist)")
    p.add_argument("--arch", default="arm64", choices=["arm64", "x86_64"], help="Lambda architecture")
    p.add_argument("--python", default="3.12", help="Lambda Python version (default: 3.12)")
    p.add_argument(
        "--models-from", metavar="S3_URL", help="serve models from s3://bucket/prefix, not the zip"
    )
    p.add_argument("--name", default=BUNDLE_NAME, help=f"zip file name (default: {BUNDLE_NAME})")
    p.add_argument(
        "--no-pin", action="store_true", help="newest matching versions, not the ones installed here"
    )
    p.add_argument("--no-trim", action="store_true", help="keep tests, stubs, tooling (to debug a trim rule)")
    p.add_argument("--cache-dir", help="pip's download cache (default: pip's own)")
    compiling = p.add_mutually_exclusive_group()
    compiling.add_argument(
        "--compile-with", metavar="PYTHON", help="interpreter of the target version that compiles the .pyc"
    )
    compiling.add_argument("--no-compile", action="store_true", help="ship sources only (slower cold starts)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_bundle_command)


def _bundle_command(args: argparse.Namespace) -> int:
    report = build_bundle(
        args.model,
        args.output,
        arch=args.arch,
        python=args.python,
        models_from=args.models_from,
        name=args.name,
        pin=not args.no_pin,
        trim=not args.no_trim,
        bytecode=False if args.no_compile else None,
        compile_with=args.compile_with,
        cache_dir=args.cache_dir,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["offline"]:
        sys.exit(_offline_main(sys.argv[2:]))
    sys.exit("usage: python -m onnxfn._bundle offline MODEL_DIR  (for bundles: onnxfn bundle --help)")
