"""The serve dependencies for the Lambda platform: ``pip install --platform manylinux… --target``.

Wheels built for Lambda's CPU and glibc, whatever machine builds; versions pinned to those installed here by
default (what you tested is what you deploy). Also: which distribution owns each installed file (for the
size table and the trim), and the Lambda target of this machine (for bundles that run here).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

ARCHES = {"arm64": "aarch64", "aarch64": "aarch64", "x86_64": "x86_64", "amd64": "x86_64"}
# The python3.12 runtime is Amazon Linux 2023 (glibc 2.34): any manylinux wheel up to 2_34 runs there.
LAMBDA_GLIBC_MINOR = 34
# pyproject's `serve` extra, minus uvicorn, httptools and uvloop (on Lambda, Mangum is the server) and prometheus_client (Lambda
# writes CloudWatch EMF lines instead of serving /metrics). boto3 is not bundled either (the Lambda runtime
# ships it; only s3:// model sources import it, lazily).
SERVE_REQUIREMENTS = (
    "onnxruntime>=1.17",
    "numpy>=1.26",
    "fastapi>=0.110",
    "mangum>=0.17",
    "pillow>=10",
    "python-multipart>=0.0.9",
    "fastapi-offline>=1.7",  # Swagger UI's files, so /docs works without a CDN (runtime/_pages.py)
)


def platform_tags(machine: str) -> list[str]:
    """manylinux tags that run on the Lambda python3.12 runtime (glibc 2.34), newest first."""
    return [f"manylinux_2_{minor}_{machine}" for minor in range(LAMBDA_GLIBC_MINOR, 16, -1)] + [
        f"manylinux2014_{machine}"
    ]


def canonical(name: str) -> str:
    """A distribution name normalised as PEP 503 does (``Python_Multipart`` → ``python-multipart``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_pins(exclude: Iterable[str] = ("onnxfn",)) -> list[str]:
    """``name==version`` for every distribution installed in this environment (pip constraints)."""
    from importlib.metadata import distributions

    skip = {canonical(n) for n in exclude}
    pins: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if not name or canonical(name) in skip or "+" in dist.version:
            continue
        pins.setdefault(canonical(name), f"{name}=={dist.version}")
    return sorted(pins.values(), key=str.lower)


def pip_install(
    root: Path,
    machine: str,
    python: str,
    requirements: Sequence[str],
    *,
    pin: bool,
    cache_dir: str | Path | None,
) -> None:
    """Install ``requirements`` for cp``python`` on manylinux ``machine`` into ``root`` (binary wheels only)."""
    cmd = [sys.executable, "-m", "pip", "install", "--target", str(root), "--no-compile", "--quiet"]
    cmd += ["--disable-pip-version-check", "--no-warn-script-location", "--upgrade"]
    cmd += ["--implementation", "cp", "--python-version", python, "--only-binary=:all:"]
    for tag in platform_tags(machine):
        cmd += ["--platform", tag]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if cache_dir is not None:
        env["PIP_CACHE_DIR"] = str(cache_dir)
    constraints = root.parent / f"{root.name}-constraints.txt"
    if pin:
        constraints.write_text("\n".join(installed_pins()) + "\n")
        cmd += ["--constraint", str(constraints)]
    cmd += list(requirements)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    constraints.unlink(missing_ok=True)
    if result.returncode != 0:
        noise = ("is ignored: it is neither a file nor a directory",)
        tail = [line for line in result.stderr.splitlines() if not any(n in line for n in noise)][-15:]
        hint = " (or --no-pin: some version installed here has no wheel for that target)" if pin else ""
        raise ValueError(
            f"pip could not fetch wheels for python{python} {machine}{hint}:\n" + "\n".join(tail)
        )


def record_owners(root: Path) -> dict[str, tuple[str, str]]:
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


def local_target() -> tuple[str, str]:
    """(arch, python) of this machine and interpreter, for a bundle that runs here."""
    import platform

    machine = platform.machine().lower()
    if machine not in ARCHES:
        raise ValueError(f"no Lambda architecture matches this machine ({machine})")
    return (
        "arm64" if ARCHES[machine] == "aarch64" else "x86_64"
    ), f"{sys.version_info[0]}.{sys.version_info[1]}"
