"""Fixtures for the deployment tests: models, the bundle for this machine (built once), serverless-offline.

Nothing here needs AWS: no credentials, no network beyond PyPI (wheels) and npm (``npm ci``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))  # lambda_probe

from deploy_helpers import API_KEY, sha256_hex  # noqa: E402
from models import digits_logreg, topics_bow  # noqa: E402
from servers import free_port, onnxfn_serve  # noqa: E402


@pytest.fixture(scope="session")
def deploy_models(tmp_path_factory) -> Path:
    """``digits`` (image, the default model: first by name) and ``topics`` (text), with a manifest."""
    from onnxfn.runtime import write_manifest

    root = tmp_path_factory.mktemp("deploy-models")
    digits_logreg(root / "digits.onnx")
    topics_bow(root / "topics.onnx")
    write_manifest(root)
    return root


@pytest.fixture(scope="session")
def local_bundle(deploy_models, tmp_path_factory):
    """The bundle built for this machine's arch and Python (so it can run here); its BundleReport."""
    from onnxfn._bundle import build_bundle, local_target

    arch, python = local_target()
    out = tmp_path_factory.mktemp("dist")
    return build_bundle(deploy_models, out, arch=arch, python=python, log=lambda message: None)


@pytest.fixture(scope="session")
def onnxfn_wheel(tmp_path_factory) -> Path:
    """The onnxfn wheel of this checkout, built once: later builds in the session take it (``--wheel``)."""
    from onnxfn._bundle._wheel import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def unpacked_bundle(local_bundle, tmp_path_factory) -> Path:
    from onnxfn._bundle import unpack

    return unpack(local_bundle.path, tmp_path_factory.mktemp("lambda") / "task")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """``npm ci`` from the committed lockfile when node_modules is missing (CI starts from a clean clone)."""
    from onnxfn._bundle._offline import ensure_node_modules

    ensure_node_modules(ROOT)
    return ROOT / "node_modules"


@pytest.fixture(scope="session")
def offline_service(local_bundle, node_modules, tmp_path_factory):
    """(service dir, env) for osls: this repo's serverless.yml, the local bundle unpacked as the code."""
    from onnxfn._bundle._offline import prepare_offline

    service, env = prepare_offline(local_bundle.path, tmp_path_factory.mktemp("offline"), repo=ROOT)
    for name in [k for k in env if k.startswith("AWS_") and k not in ("AWS_EC2_METADATA_DISABLED",)]:
        del env[name]  # prove that no AWS credentials are needed, and never find a developer's own
    env.update(AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull)
    env["ONNXFN_API_KEY_HASHES"] = sha256_hex(API_KEY)
    return service, env


@pytest.fixture(scope="session")
def offline_url(offline_service):
    """serverless-offline on 127.0.0.1 (free ports), running the handler from the unzipped bundle."""
    from onnxfn._bundle._offline import offline_command

    service, env = offline_service
    http_port, lambda_port = free_port(), free_port()
    log = open(service / "offline.log", "w+b")
    proc = subprocess.Popen(
        offline_command(http_port, lambda_port),
        cwd=service,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: osls, node and python3 go down together
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait_offline(url, proc, log)
        yield url
    finally:
        _stop_group(proc)
        log.close()


def _wait_offline(url: str, proc: subprocess.Popen, log, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            # The first request makes serverless-offline unpack the artifact and spawn python3 (cold start).
            if requests.get(f"{url}/v2/health/ready", timeout=60).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.5)
    log.seek(0)
    raise RuntimeError(
        f"serverless-offline did not become ready:\n{log.read().decode(errors='replace')[-4000:]}"
    )


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group outlived its leader
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def serve_url(deploy_models):
    """``onnxfn serve`` on the same models: the reference answers."""
    with onnxfn_serve(deploy_models) as (url, _):
        yield url


@pytest.fixture(scope="session")
def lambda_runtime_dir(tmp_path_factory) -> Path:
    """A stand-in for Lambda's /var/runtime: boto3 and its dependencies only (the runtime ships them)."""
    from importlib.metadata import distribution

    root = tmp_path_factory.mktemp("var-runtime")
    for dist_name in ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"):
        dist = distribution(dist_name)
        tops = (dist.read_text("top_level.txt") or "").split()
        if not tops:  # no top_level.txt: the first path component of its files
            tops = sorted({f.parts[0] for f in dist.files or [] if not f.parts[0].endswith(".dist-info")})
        for top in tops:
            for candidate in (Path(dist.locate_file(top)), Path(dist.locate_file(f"{top}.py"))):
                if candidate.exists() and not (root / candidate.name).exists():
                    (root / candidate.name).symlink_to(candidate)
    return root
