"""serverless-offline for ``make offline`` and tests/deploy: this repo's serverless.yml, run without AWS.

``prepare_offline`` lays out a service directory whose ``python3`` is this machine's base interpreter with no
site-packages, and only the unzipped bundle on ``PYTHONPATH``, like ``/var/task`` on Lambda;
``offline_command`` is the ``osls offline`` command line, bound to 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ._build import BUNDLE_NAME
from ._zip import unpack


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
