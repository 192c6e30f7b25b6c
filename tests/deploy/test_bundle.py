"""``onnxfn bundle``: what goes in the Lambda zip, what stays out, reproducibility, limits, CLI errors."""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import pytest

from onnxfn import _bundle
from onnxfn.cli import main

ROOT = Path(__file__).resolve().parents[2]


# -- fast: no pip ------------------------------------------------------------------------------


def test_serve_requirements_are_pyprojects_serve_extra_without_uvicorn():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=!~;\[ ]", r)[0].lower() for r in extras["serve"]} - {"uvicorn"}
    base = {
        re.split(r"[<>=!~;\[ ]", r)[0].lower()
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    assert {re.split(r"[<>=]", r)[0] for r in _bundle.SERVE_REQUIREMENTS} == names | base


def test_bundle_subcommand_is_registered(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bundle", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--arch", "--python", "--models-from", "-o"):
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bundle", "/does/not/exist", "-o", "{tmp}"], "does not exist"),
        (["bundle", "-o", "{tmp}"], "MODEL_DIR"),
        (["bundle", "{models}", "--models-from", "s3://b/p", "-o", "{tmp}"], "not both"),
        (["bundle", "--models-from", "http://b/p", "-o", "{tmp}"], "s3://bucket/prefix"),
        (["bundle", "{models}", "--python", "twelve", "-o", "{tmp}"], "--python"),
    ],
)
def test_user_errors_exit_2_with_a_clear_message(argv, message, tmp_path, digits_dir, capsys):
    argv = [a.format(tmp=tmp_path, models=digits_dir) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing half-built


def test_unknown_arch_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bundle", "models", "--arch", "riscv64"])
    assert exc.value.code == 2


def test_models_are_verified_against_the_manifest(tmp_path, digits_dir):
    broken = tmp_path / "models"
    broken.mkdir()
    (broken / "digits.onnx").write_bytes((digits_dir / "digits.onnx").read_bytes() + b"tampered")
    (broken / "manifest.json").write_text((digits_dir / "manifest.json").read_text())
    with pytest.raises(ValueError, match="sha256"):
        _bundle._stage_models(broken, tmp_path / "stage")


def test_a_single_model_file_gets_a_manifest(tmp_path, digits_model):
    names = _bundle._stage_models(digits_model, tmp_path / "stage")
    assert names == ["digits"]
    manifest = json.loads((tmp_path / "stage" / "manifest.json").read_text())
    assert manifest["models"]["digits"]["file"] == "digits.onnx"


def test_limits_fail_with_the_size_table_and_a_way_out():
    report = _bundle.BundleReport(
        path="dist/onnxfn-lambda.zip", sha256="0" * 64, arch="arm64", python="3.12",
        zipped=60 * _bundle.MiB, unzipped=200 * _bundle.MiB, files=3,
        packages=[_bundle.PackageSize("onnxruntime", "1.0", 1, 100 * _bundle.MiB, 40 * _bundle.MiB)],
        trimmed=[], models=["big"],
    )  # fmt: skip
    with pytest.raises(_bundle.BundleTooLarge) as exc:
        _bundle.enforce_limits(report)
    text = str(exc.value)
    assert "60.0 MB zipped" in text and "onnxruntime" in text and "--models-from s3://" in text
    report.zipped, report.unzipped = 49 * _bundle.MiB, 251 * _bundle.MiB
    with pytest.raises(_bundle.BundleTooLarge, match=r"251\.0 MB unzipped"):
        _bundle.enforce_limits(report)
    report.unzipped = 249 * _bundle.MiB
    _bundle.enforce_limits(report)


def test_platform_tags_cover_lambdas_glibc():
    tags = _bundle.platform_tags("aarch64")
    assert tags[0] == "manylinux_2_34_aarch64" and "manylinux_2_17_aarch64" in tags
    assert "manylinux_2_35_aarch64" not in tags  # newer than Amazon Linux 2023's glibc


def test_elf_reader_finds_needed_libraries():
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    pybind = next(capi.glob("onnxruntime_pybind11_state*.so"))
    needed = _bundle.elf_needed(pybind)
    assert needed is not None and any(n.startswith("libc.so") for n in needed)
    assert _bundle.elf_needed(Path(onnxruntime.__file__)) is None  # not an ELF file


def test_bytecode_is_deterministic_and_names_var_task(tmp_path):
    import marshal

    for run in ("a", "b"):
        pkg = tmp_path / run / "pkg"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("X = {'a', 'b', 'c'}\n\ndef f():\n    return frozenset(X)\n")
        (tmp_path / run / "models").mkdir()
        (tmp_path / run / "models" / "skip.py").write_text("this is not python\n")
        assert _bundle.compile_bytecode(tmp_path / run, sys.executable) == 1
    tag = sys.implementation.cache_tag
    a = (tmp_path / "a" / "pkg" / "__pycache__" / f"__init__.{tag}.pyc").read_bytes()
    b = (tmp_path / "b" / "pkg" / "__pycache__" / f"__init__.{tag}.pyc").read_bytes()
    assert a == b  # different build dirs, same bytes
    assert marshal.loads(a[16:]).co_filename == "/var/task/pkg/__init__.py"
    assert not (tmp_path / "a" / "models" / "__pycache__").exists()


def test_find_python_accepts_only_the_target_version():
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert _bundle.find_python(here) == sys.executable
    assert _bundle.find_python("3.99") is None
    assert _bundle.find_python(here, "/no/such/python") is None


# -- slow: a real build (manylinux wheels from PyPI, cached by pip) -----------------------------


@pytest.mark.slow
def test_bundle_has_the_runtime_and_serve_deps_only(local_bundle):
    with zipfile.ZipFile(local_bundle.path) as zf:
        names = zf.namelist()
        infos = zf.infolist()
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    tops = {n.split("/", 1)[0] for n in names}
    for required in ("onnxfn", "onnxruntime", "numpy", "fastapi", "starlette", "pydantic", "pydantic_core",
                     "mangum", "PIL", "python_multipart", "anyio", "models"):  # fmt: skip
        assert required in tops, required
    onnxfn_files = {n for n in names if n.startswith("onnxfn/")}
    assert "onnxfn/__init__.py" in onnxfn_files and "onnxfn/runtime/aws.py" in onnxfn_files
    sources = {n for n in onnxfn_files if "/__pycache__/" not in n}
    assert all(
        n in ("onnxfn/__init__.py", "onnxfn/_wire.py") or n.startswith("onnxfn/runtime/") for n in sources
    )
    runtime_sources = {p.name for p in (ROOT / "runtime").glob("*.py")}
    assert {Path(n).name for n in sources if n.startswith("onnxfn/runtime/")} == runtime_sources
    for forbidden in (
        "tensorflow",
        "keras",
        "tf2onnx",
        "onnx",
        "uvicorn",
        "boto3",
        "botocore",
        "tests",
        "bin",
    ):
        assert forbidden not in tops, forbidden
    # Bytecode: only what we compiled for the target Python (no stale caches of the build machine), each
    # beside its source, hash-based and unchecked: a read-only /var/task never compiles at cold start.
    tag = f"cpython-{local_bundle.python.replace('.', '')}"
    pycs = [n for n in names if n.endswith((".pyc", ".pyo"))]
    assert pycs and all(n.split("/")[-2] == "__pycache__" and n.endswith(f".{tag}.pyc") for n in pycs)
    assert all(_bundle._source_of(n) in names for n in pycs)
    assert not [n for n in names if "__pycache__" in n and not n.endswith(f".{tag}.pyc")]
    assert "onnxfn/runtime/__pycache__/aws." + tag + ".pyc" in names
    with zipfile.ZipFile(local_bundle.path) as zf:
        header = zf.read("onnxfn/runtime/__pycache__/aws." + tag + ".pyc")[:8]
    assert int.from_bytes(header[4:8], "little") == 0b01  # hash-based, check_source off
    assert not [n for n in names if n.endswith("dist-info/RECORD")]
    assert not [n for n in names if "/tests/" in n]
    assert not [n for n in names if n.startswith("onnxruntime/") and "/transformers/" in n]
    assert {"models/digits.onnx", "models/topics.onnx", "models/manifest.json"} <= set(names)
    # importlib.metadata (fastapi, pydantic and onnxruntime ask it for versions) reads METADATA: kept.
    for dist in ("fastapi", "pydantic", "onnxruntime", "numpy", "starlette"):
        assert any(re.fullmatch(rf"{dist}-[^/]+\.dist-info/METADATA", n) for n in names), dist


@pytest.mark.slow
def test_size_report_and_limits(local_bundle):
    report = local_bundle
    assert report.zipped == Path(report.path).stat().st_size
    assert report.zipped < _bundle.ZIPPED_LIMIT and report.unzipped < _bundle.UNZIPPED_LIMIT
    assert sum(p.unzipped for p in report.packages) == report.unzipped
    assert report.top(1)[0].name == "onnxruntime"
    table = report.table()
    for word in ("onnxruntime", "numpy", "total", "trimmed", "test suites", report.sha256):
        assert word in table
    assert {t.what for t in report.trimmed} >= {"bytecode caches", "test suites"} or report.trimmed


@pytest.mark.slow
def test_same_inputs_give_the_same_zip_and_the_cli_prints_its_report(
    local_bundle, deploy_models, tmp_path, capsys
):
    """A second build, through the CLI, from the same models and pins: byte-identical."""
    argv = ["bundle", str(deploy_models), "-o", str(tmp_path), "--arch", local_bundle.arch,
            "--python", local_bundle.python, "--json"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sha256"] == local_bundle.sha256
    assert (tmp_path / "onnxfn-lambda.zip").read_bytes() == Path(local_bundle.path).read_bytes()
    assert data["packages"][0]["name"] == "onnxruntime"
    assert data["models"] == ["digits", "topics"]


def test_dockerfile_builds_the_same_runtime_on_the_lambda_base_image():
    """Not built here (no Docker engine): its contents are checked instead."""
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:3.12" in text
    assert 'CMD ["onnxfn.runtime.aws.handler"]' in text
    for requirement in _bundle.SERVE_REQUIREMENTS:
        assert f'"{requirement}"' in text
    assert "uvicorn" not in text.split("FROM", 1)[1].replace("no uvicorn", "")
    assert "COPY runtime/ ${LAMBDA_TASK_ROOT}/onnxfn/runtime/" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", "converter", "client", ".venv", "node_modules"} <= set(ignored)
    assert "runtime" not in ignored and "onnxfn" not in ignored
