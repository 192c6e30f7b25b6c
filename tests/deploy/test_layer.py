"""``onnxfn bundle --layer``: a model too big to share one 50 MiB zip with the dependencies.

Without ``--layer`` such a bundle is refused (nothing written, no sha256, units in MiB, the ways out named);
with it, the dependencies become a Lambda layer zip (``python/…``) and the function zip holds the runtime and
the models. Unzipped side by side as Lambda does (the layer under /opt, the function as the task root, the
same sys.path order), they answer HTTP API v2 events in an isolated interpreter; serverless.yml attaches the
layer when the build wrote its descriptor (``osls package``, CloudFormation answered by moto).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import big_tensor_model, run_probe
from lambda_probe import http_api_event
from models import digit_png

from onnxfn._bundle import build_bundle, local_target, unpack
from onnxfn._bundle._report import UNZIPPED_LIMIT, ZIPPED_LIMIT, MiB
from onnxfn.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIG_MIB = 12  # random weights: the zip cannot shrink them; the dependencies alone are 40-49 MiB zipped


@pytest.fixture(scope="module")
def big_models(deploy_models, tmp_path_factory):
    """digits + topics + ``big`` (12 MiB of incompressible weights), with their manifest; W summed."""
    from onnxfn.runtime import write_manifest

    root = tmp_path_factory.mktemp("big-models")
    for file in deploy_models.glob("*.onnx"):
        shutil.copyfile(file, root / file.name)
    summed = big_tensor_model(root / "big.onnx", BIG_MIB)
    write_manifest(root)
    return root, summed


@pytest.fixture(scope="module")
def layered(big_models, onnxfn_wheel, tmp_path_factory):
    arch, python = local_target()
    out = tmp_path_factory.mktemp("dist-layer")
    report = build_bundle(
        big_models[0], out, arch=arch, python=python, layer=True, wheel=onnxfn_wheel, log=lambda m: None
    )
    return report, out


def test_without_layer_the_bundle_is_refused_and_nothing_is_written(
    big_models, onnxfn_wheel, tmp_path, capsys
):
    arch, python = local_target()
    out = tmp_path / "dist"
    argv = ["bundle", str(big_models[0]), "-o", str(out), "--arch", arch, "--python", python,
            "--wheel", str(onnxfn_wheel)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "onnxfn bundle: error: Lambda would refuse this bundle, so nothing was written" in err
    assert "above 50 MiB (direct upload)" in err and "--layer" in err and "--models-from s3://" in err
    assert "big" in err and "not written" in err
    assert "sha256" not in err  # no digest of a zip that does not exist
    assert " MB" not in err  # one unit
    assert not out.exists() or not list(out.iterdir())


def test_with_layer_each_zip_is_within_lambdas_limits(layered):
    report, out = layered
    assert report.layer is not None
    assert report.zipped <= ZIPPED_LIMIT and report.layer.zipped <= ZIPPED_LIMIT
    assert report.zipped + report.layer.zipped > ZIPPED_LIMIT  # what one zip could not hold
    assert report.unzipped + report.layer.unzipped <= UNZIPPED_LIMIT
    assert report.zipped > 0.8 * BIG_MIB * MiB  # the model is in the function zip (float32 barely shrinks)
    assert Path(report.path).stat().st_size == report.zipped
    assert Path(report.layer.path).stat().st_size == report.layer.zipped
    table = report.table()
    for line in ("Lambda layer", "function: code + models", "function + layer unzipped", report.layer.sha256):
        assert line in table
    assert " MB" not in table
    assert sorted(p.name for p in out.iterdir()) == [
        "onnxfn-lambda.zip",
        "onnxfn-layer.json",
        "onnxfn-layer.zip",
    ]
    descriptor = json.loads((out / "onnxfn-layer.json").read_text())
    assert descriptor["bundle"] == "layer" and descriptor["layer_sha256"] == report.layer.sha256
    assert descriptor["function_sha256"] == report.sha256


def test_the_layer_holds_the_dependencies_and_the_function_the_runtime_and_models(layered):
    report, _ = layered
    layer_names = zipfile.ZipFile(report.layer.path).namelist()
    function_names = zipfile.ZipFile(report.path).namelist()
    assert all(n.startswith("python/") for n in layer_names)
    layer_tops = {n.split("/")[1] for n in layer_names}
    assert {"onnxruntime", "numpy", "fastapi", "pydantic", "mangum", "PIL"} <= layer_tops
    assert "onnxfn" not in layer_tops and "models" not in layer_tops
    function_tops = {n.split("/")[0] for n in function_names}
    assert {t for t in function_tops if not t.endswith(".dist-info")} == {"onnxfn", "models"}
    assert {"models/big.onnx", "models/digits.onnx", "models/manifest.json"} <= set(function_names)
    assert {p.name for p in report.layer.packages} >= {"onnxruntime", "numpy"}
    assert {p.name for p in report.packages} == {"onnxfn (runtime)", "models"}


def test_layer_bytecode_names_opt_python(layered):
    import marshal
    import sys

    report, _ = layered
    tag = sys.implementation.cache_tag
    with zipfile.ZipFile(report.layer.path) as zf:
        pyc = zf.read(f"python/numpy/__pycache__/__init__.{tag}.pyc")
    with zipfile.ZipFile(report.path) as zf:
        own = zf.read(f"onnxfn/runtime/__pycache__/aws.{tag}.pyc")
    assert marshal.loads(pyc[16:]).co_filename == "/opt/python/numpy/__init__.py"
    assert marshal.loads(own[16:]).co_filename == "/var/task/onnxfn/runtime/aws.py"


def test_function_and_layer_side_by_side_answer_like_lambda(layered, big_models, digits_data, tmp_path):
    """/var/task = the function zip, /opt = the layer zip; sys.path as on Lambda's python3.x runtimes."""
    report, _ = layered
    task = unpack(report.path, tmp_path / "var" / "task")
    opt = unpack(report.layer.path, tmp_path / "opt")
    assert not (task / "numpy").exists()  # the function zip alone could not run
    major_minor = report.python
    site = opt / "python" / "lib" / f"python{major_minor}" / "site-packages"
    path = os.pathsep.join(str(p) for p in (task, site, opt / "python"))
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]], dtype=np.float32)
    octet = {"content-type": "application/octet-stream"}
    events = [
        http_api_event("POST", "/v1/models/digits:predict", digit_png(digits_data[1][0]), octet),
        http_api_event(
            "POST", "/v1/models/topics:predict", json.dumps({"instances": ["Rain and storm today"]}),
            {"content-type": "application/json"},
        ),
        http_api_event(
            "POST", "/v1/models/big:predict", json.dumps({"instances": x.tolist()}),
            {"content-type": "application/json"},
        ),
        http_api_event("GET", "/v2/models/big"),
    ]  # fmt: skip
    env = {"LAMBDA_TASK_ROOT": str(task), "ONNXFN_MODEL_DIR": "", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}
    responses, summary = run_probe(path, events, tmp_path, env)
    assert [r["statusCode"] for r in responses] == [200] * len(events), responses
    bodies = [json.loads(r["body"]) for r in responses]
    assert bodies[0]["predictions"][0][0]["label"] == str(digits_data[3][0])
    assert bodies[1]["predictions"][0][0]["label"] == "weather"
    outputs = np.asarray(bodies[2]["outputs"], dtype=np.float64).ravel()  # a tensor model: raw outputs
    np.testing.assert_allclose(outputs, x.astype(np.float64) @ big_models[1], rtol=1e-4)
    assert bodies[3]["name"] == "big"
    # onnxfn from the function, every dependency from the layer, nothing from this environment.
    modules = summary["modules"]
    assert summary["tensorflow"] is False
    assert all(p.startswith(str(task)) for n, p in modules.items() if n.split(".")[0] == "onnxfn" and p)
    for name in ("numpy", "onnxruntime", "fastapi", "pydantic", "mangum", "PIL.Image"):
        assert modules[name].startswith(str(opt / "python")), (name, modules[name])


def test_serverless_package_attaches_the_layer(layered, node_modules, moto_server, tmp_path):
    """With dist/onnxfn-layer.json the same serverless.yml adds the layer and attaches it to the function.
    osls asks CloudFormation for the last layer version: moto answers (no stack yet); nothing else is sent."""
    _, out = layered
    service = tmp_path / "service"
    (service / "dist").mkdir(parents=True)
    for name in ("serverless.yml", "package.json"):
        shutil.copyfile(ROOT / name, service / name)
    (service / "node_modules").symlink_to(node_modules, target_is_directory=True)
    for file in out.iterdir():
        shutil.copyfile(file, service / "dist" / file.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ONNXFN_"))}
    env.update(
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=moto_server, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true", ONNXFN_API_KEY_HASHES="", SLS_TELEMETRY_DISABLED="1",
        SLS_NOTIFICATIONS_MODE="off", SLS_DEPRECATION_DISABLE="*",
    )  # fmt: skip
    result = subprocess.run(
        ["npx", "--no-install", "osls", "package", "--stage", "prod"],
        cwd=service, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cfn = json.loads((service / ".serverless" / "cloudformation-template-update-stack.json").read_text())
    layers = {k: r for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::LayerVersion"}
    assert list(layers) == ["DepsLambdaLayer"]
    props = layers["DepsLambdaLayer"]["Properties"]
    assert props["CompatibleRuntimes"] == ["python3.12"] and props["CompatibleArchitectures"] == ["arm64"]
    assert props["Content"]["S3Key"].endswith("/onnxfn-layer.zip")
    function = next(r for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    assert function["Properties"]["Layers"] == [{"Ref": "DepsLambdaLayer"}]
    assert function["Properties"]["Code"]["S3Key"].endswith("/onnxfn-lambda.zip")
    state = json.loads((service / ".serverless" / "serverless-state.json").read_text())
    layer = state["service"]["initialServerlessConfig"]["layers"]["deps"]
    assert layer["package"]["artifact"] == "dist/onnxfn-layer.zip"  # uploaded as built, never repackaged
