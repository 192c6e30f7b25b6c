"""The unzipped bundle alone runs the Lambda handler: an isolated interpreter (``python -I -S``) with
only the bundle on ``sys.path`` answers API Gateway HTTP API (v2) events, without TensorFlow."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import run_probe
from lambda_probe import http_api_event
from models import digit_jpeg, digit_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def events(digits_data):
    x_test = digits_data[1]
    png, jpeg = digit_png(x_test[0]), digit_jpeg(x_test[1])
    batch = {"instances": [base64.b64encode(digit_png(x)).decode() for x in x_test[2:6]]}
    text = {"instances": ["Storm and rain in the forecast today", "Pizza with cheese and a spicy sauce"]}
    octet = {"content-type": "application/octet-stream"}
    return [
        http_api_event("POST", "/predict", png, octet),
        http_api_event("POST", "/predict", jpeg, {"content-type": "image/jpeg"}),
        http_api_event("POST", "/predict", json.dumps(batch), {"content-type": "application/json"}),
        http_api_event(
            "POST", "/v1/models/topics:predict", json.dumps(text), {"content-type": "application/json"}
        ),
        http_api_event("GET", "/v2/health/ready"),
        http_api_event("GET", "/v2/models/topics"),
    ]


@pytest.fixture(scope="module")
def bundle_run(unpacked_bundle, events, tmp_path_factory):
    env = {"ONNXFN_MODEL_DIR": str(unpacked_bundle / "models")}
    return run_probe(unpacked_bundle, events, tmp_path_factory.mktemp("probe"), env)


def test_handler_answers_from_the_unzipped_bundle(bundle_run, digits_data):
    responses, _ = bundle_run
    assert [r["statusCode"] for r in responses] == [200] * len(responses), responses
    bodies = [json.loads(r["body"]) for r in responses]
    y_test = digits_data[3]
    assert bodies[0]["model"] == "digits"
    assert bodies[0]["predictions"][0][0]["label"] == str(y_test[0])
    assert bodies[1]["predictions"][0][0]["label"] == str(y_test[1])
    assert [p[0]["label"] for p in bodies[2]["predictions"]] == [str(y) for y in y_test[2:6]]
    assert bodies[3]["model"] == "topics"
    assert [p[0]["label"] for p in bodies[3]["predictions"]] == ["weather", "food"]
    assert bodies[4] == {"ready": True}
    assert bodies[5]["name"] == "topics"


def test_everything_comes_from_the_bundle_and_nothing_from_tensorflow(bundle_run, unpacked_bundle):
    _, summary = bundle_run
    assert summary["tensorflow"] is False
    assert summary["sys_path"][0] == str(unpacked_bundle)
    assert not [p for p in summary["sys_path"] if "site-packages" in p]
    outside = {
        name: path for name, path in summary["modules"].items() if path and str(unpacked_bundle) not in path
    }
    assert not outside, outside
    for package in (
        "onnxfn.runtime.aws",
        "onnxruntime",
        "numpy",
        "fastapi",
        "pydantic",
        "PIL.Image",
        "mangum",
    ):
        assert package in summary["modules"], package


def test_answers_equal_the_installed_packages(bundle_run, unpacked_bundle, events, tmp_path):
    installed, _ = run_probe("-", events, tmp_path, {"ONNXFN_MODEL_DIR": str(unpacked_bundle / "models")})
    for ours, theirs in zip(bundle_run[0], installed, strict=True):
        assert ours["statusCode"] == theirs["statusCode"]
        assert json.loads(ours["body"]) == json.loads(theirs["body"])


def test_package_metadata_is_enough_for_importlib_metadata(unpacked_bundle):
    code = (
        "import sys; sys.path[:] = [sys.argv[1]] + [p for p in sys.path if 'site-packages' not in p]\n"
        "from importlib.metadata import version\n"
        "for d in ('fastapi', 'pydantic', 'pydantic-core', 'starlette', 'onnxruntime', 'numpy', 'pillow',"
        " 'mangum', 'python-multipart', 'anyio'): print(d, version(d))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(unpacked_bundle)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert len(out.splitlines()) == 10


def test_every_onnxfn_module_in_the_bundle_imports_from_the_bundle_alone(unpacked_bundle, tmp_path):
    """Each onnxfn module shipped (the runtime, the wire codec, ...) imports in ``python -I -S`` with only
    the bundle on sys.path, and everything of onnxfn it pulls in comes from the bundle."""
    files = sorted((unpacked_bundle / "onnxfn").rglob("*.py"))
    modules = [".".join(f.relative_to(unpacked_bundle).with_suffix("").parts) for f in files]
    modules = [m.removesuffix(".__init__") for m in modules]
    assert {"onnxfn._wire", "onnxfn.runtime.aws", "onnxfn.runtime.serve"} <= set(modules)
    code = (
        "import importlib, json, sys\n"
        "sys.path[:] = [sys.argv[1]] + [p for p in sys.path if 'site-packages' not in p]\n"
        "for name in sys.argv[2:]: importlib.import_module(name)\n"
        "print(json.dumps({n: getattr(m, '__file__', '') for n, m in sys.modules.items() if n.startswith('onnxfn')}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ONNXFN_"))}
    env.update(ONNXFN_MODEL_DIR=str(unpacked_bundle / "models"), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code, str(unpacked_bundle), *modules],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert set(modules) <= set(loaded)
    assert all(path.startswith(str(unpacked_bundle)) for path in loaded.values()), loaded


def test_handler_is_not_importable_without_the_bundle(tmp_path):
    """The isolation is real: the same interpreter flags without the bundle cannot import the handler."""
    code = (
        "import sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p]\n"
        "import onnxfn.runtime.aws\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_models_load_from_lambda_task_root(unpacked_bundle, events, tmp_path):
    """On Lambda ONNXFN_MODEL_DIR is empty (serverless.yml's default): models come from $LAMBDA_TASK_ROOT."""
    env = {
        "LAMBDA_TASK_ROOT": str(unpacked_bundle),
        "ONNXFN_MODEL_DIR": "",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
    }
    responses, _ = run_probe(unpacked_bundle, events[:1], tmp_path, env)
    assert responses[0]["statusCode"] == 200
    assert Path(unpacked_bundle / "models" / "manifest.json").is_file()


def test_models_from_s3_bundle_serves_models_downloaded_at_init(
    deploy_models, events, moto_server, lambda_runtime_dir, onnxfn_wheel, tmp_path
):
    """``--models-from s3://…``: no models in the zip; the handler fetches them at init (boto3 from the
    Lambda runtime, not the bundle) and answers like the bundle with models inside."""
    import zipfile

    import boto3

    from onnxfn._bundle import build_bundle, local_target, unpack

    arch, python = local_target()
    report = build_bundle(
        None, tmp_path / "dist", arch=arch, python=python, models_from="s3://models/prod/",
        wheel=onnxfn_wheel, log=lambda m: None,
    )  # fmt: skip
    names = zipfile.ZipFile(report.path).namelist()
    assert not [n for n in names if n.startswith("models/")]
    assert not [n for n in names if n.split("/")[0] in ("boto3", "botocore")]
    assert "ONNXFN_MODEL_DIR=s3://models/prod/" in report.table()
    task = unpack(report.path, tmp_path / "task")

    credentials = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="models")
    for file in deploy_models.iterdir():
        s3.upload_file(str(file), "models", f"prod/{file.name}")
    env = {
        **credentials,
        "AWS_EC2_METADATA_DISABLED": "true",
        "ONNXFN_MODEL_DIR": "s3://models/prod/",
        "ONNXFN_S3_ENDPOINT_URL": moto_server,
        "ONNXFN_CACHE_DIR": str(tmp_path / "tmp"),
    }
    path = f"{task}{os.pathsep}{lambda_runtime_dir}"
    responses, summary = run_probe(path, events[:4], tmp_path, env)
    assert [r["statusCode"] for r in responses] == [200] * 4, responses
    assert summary["modules"]["onnxfn.runtime._s3"].startswith(str(task))
    with_models, _ = run_probe(task, events[:4], tmp_path, {"ONNXFN_MODEL_DIR": str(deploy_models)})
    assert [json.loads(r["body"]) for r in responses] == [json.loads(r["body"]) for r in with_models]
