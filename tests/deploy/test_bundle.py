"""``onnxfn bundle``: what goes in the Lambda zip, what stays out, reproducibility, limits, CLI errors.

(``--layer`` and the refusal of a zip above 50 MiB: test_layer.py.)"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import pytest
from onnxfn.runtime._manifest import sha256_file

from onnxfn._bundle import _build, _bytecode, _deps, _models, _report, _trim, _wheel, _zip
from onnxfn.cli import main

ROOT = Path(__file__).resolve().parents[2]


# -- fast: no pip ------------------------------------------------------------------------------


def test_serve_requirements_are_pyprojects_serve_extra_without_uvicorn():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    # uvicorn (and its httptools, uvloop): Mangum serves on Lambda; prometheus_client: Lambda writes EMF
    # lines, /metrics is off there.
    names = {re.split(r"[<>=!~;\[ ]", r)[0].lower() for r in extras["serve"]} - {
        "uvicorn",
        "httptools",
        "uvloop",
        "prometheus_client",
    }
    base = {
        re.split(r"[<>=!~;\[ ]", r)[0].lower()
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    assert {re.split(r"[<>=]", r)[0] for r in _deps.SERVE_REQUIREMENTS} == names | base


def test_bundle_subcommand_is_registered(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bundle", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--arch", "--python", "--models-from", "-o", "--layer", "--wheel"):
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bundle", "/does/not/exist", "-o", "{tmp}"], "does not exist"),
        (["bundle", "-o", "{tmp}"], "MODEL_DIR"),
        (["bundle", "{models}", "--models-from", "s3://b/p", "-o", "{tmp}"], "not both"),
        (["bundle", "--models-from", "http://b/p", "-o", "{tmp}"], "s3://bucket/prefix"),
        (["bundle", "{models}", "--python", "twelve", "-o", "{tmp}"], "--python"),
        (["bundle", "{models}", "--layer", "--name", "onnxfn-layer.zip", "-o", "{tmp}"], "cannot both"),
        (["bundle", "{models}", "--wheel", "{tmp}/nope.whl", "-o", "{tmp}/out"], "no such wheel"),
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
    with pytest.raises(ValueError, match="sha256 mismatch") as exc:
        _models.stage_models(broken, tmp_path / "stage")
    assert "onnxfn manifest DIR" in str(exc.value)  # a command that exists (or `onnxfn convert`)


@pytest.mark.parametrize("file", ["../outside.onnx", "/etc/passwd", "sub/../../outside.onnx", "link.onnx"])
def test_staging_uses_the_runtimes_path_rule(tmp_path, digits_dir, file):
    """One rule for path safety: what the runtime refuses (outside the model directory), the bundle refuses,
    with the runtime's message; a symlink out of the directory included."""
    from onnxfn.runtime import load_models

    models = tmp_path / "models"
    models.mkdir()
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((digits_dir / "digits.onnx").read_bytes())
    (models / "link.onnx").symlink_to(outside)
    digest = sha256_file(outside)
    (models / "manifest.json").write_text(json.dumps({"models": {"x": {"file": file, "sha256": digest}}}))
    with pytest.raises(ValueError, match="outside the model directory"):
        _models.stage_models(models, tmp_path / "stage")
    assert "outside the model directory" in load_models(models).errors["x"]


def test_the_manifest_rules_import_without_onnxruntime():
    """Staging uses onnxfn.runtime._manifest: importing it must stay cheap (no onnxruntime, no FastAPI)."""
    import subprocess

    code = "import sys, onnxfn._bundle._models; print(sorted({'onnxruntime', 'fastapi'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_single_model_file_gets_a_manifest(tmp_path, digits_model):
    names = _models.stage_models(digits_model, tmp_path / "stage")
    assert names == ["digits"]
    manifest = json.loads((tmp_path / "stage" / "manifest.json").read_text())
    assert manifest["models"]["digits"]["file"] == "digits.onnx"


def _report_of(zipped: float, unzipped: float, layer: tuple[float, float] | None = None):
    mib = _report.MiB
    return _report.BundleReport(
        path="dist/onnxfn-lambda.zip", sha256="", arch="arm64", python="3.12",
        zipped=int(zipped * mib), unzipped=int(unzipped * mib), files=3,
        packages=[_report.PackageSize("onnxruntime", "1.0", 1, int(unzipped * mib), int(zipped * mib))],
        trimmed=[], models=["big"],
        layer=None if layer is None else _report.Archive(
            "dist/onnxfn-layer.zip", "", int(layer[0] * mib), int(layer[1] * mib), 1, []
        ),
    )  # fmt: skip


def test_limits_fail_with_the_size_table_and_a_way_out_in_mib():
    with pytest.raises(_report.BundleTooLarge) as exc:
        _report.enforce_limits(_report_of(60, 200))
    text = str(exc.value)
    assert "the zip is 60.0 MiB, above 50 MiB" in text and "onnxruntime" in text
    assert "--layer" in text and "--models-from s3://" in text and "nothing was written" in text
    assert "sha256" not in text and "dist/onnxfn-lambda.zip (not written)" in text
    assert " MB" not in text  # one unit: MiB
    with pytest.raises(_report.BundleTooLarge, match=r"unzipped is 251\.0 MiB, above 250 MiB"):
        _report.enforce_limits(_report_of(49, 251))
    _report.enforce_limits(_report_of(49, 249))


def test_layer_limits_apply_per_zip_and_unzipped_together():
    _report.enforce_limits(_report_of(20, 60, layer=(45, 140)))
    with pytest.raises(_report.BundleTooLarge, match=r"the layer zip is 51\.0 MiB") as exc:
        _report.enforce_limits(_report_of(20, 60, layer=(51, 140)))
    assert "--layer (" not in str(exc.value)  # already split: the ways out are S3 and the image
    assert "--models-from s3://" in str(exc.value)
    with pytest.raises(_report.BundleTooLarge, match=r"function zip is 50\.5 MiB"):
        _report.enforce_limits(_report_of(50.5, 60, layer=(40, 140)))
    with pytest.raises(_report.BundleTooLarge, match=r"function \+ layer unzipped is 260\.0 MiB"):
        _report.enforce_limits(_report_of(20, 120, layer=(40, 140)))


def test_a_plain_build_removes_a_stale_layer(tmp_path):
    """serverless.yml attaches the layer when dist/onnxfn-layer.json exists: a plain build must remove it."""
    for name in ("onnxfn-layer.zip", "onnxfn-layer.json"):
        (tmp_path / name).write_text("from an earlier --layer build")
    said = []
    report = _report_of(40, 120)
    _build._descriptor(tmp_path, report, "onnxfn-layer.zip", said.append)
    assert not list(tmp_path.iterdir()) and "removed" in said[0]
    report = _report_of(10, 20, layer=(40, 120))
    report.sha256, report.layer.sha256 = "a" * 64, "b" * 64
    _build._descriptor(tmp_path, report, "onnxfn-layer.zip", said.append)
    data = json.loads((tmp_path / "onnxfn-layer.json").read_text())
    assert data["bundle"] == "layer" and data["layer"] == "onnxfn-layer.zip"
    assert data["layer_sha256"] == "b" * 64 and data["function_sha256"] == "a" * 64


def _fake_wheel_install(root: Path) -> Path:
    """What ``pip install --target`` of an onnxfn wheel leaves: every part, the console script, a RECORD."""
    files = {
        "onnxfn/__init__.py": "__version__ = '0.1.0'\n",
        "onnxfn/_wire.py": "import struct\n",
        "onnxfn/cli.py": "from onnxfn.runtime import serve\n",
        "onnxfn/_bundle/__init__.py": "",
        "onnxfn/client/__init__.py": "from onnxfn._wire import struct\n",
        "onnxfn/converter/__init__.py": "import tensorflow\n",
        "onnxfn/runtime/__init__.py": "from onnxfn import __version__\nfrom ._v2 import codec\n",
        "onnxfn/runtime/_v2.py": "from .._wire import struct as codec\nfrom . import _model\n",
        "onnxfn/runtime/_model.py": "def f():\n    from onnxfn.runtime._v2 import codec\n",
        "onnxfn/py.typed": "",
        "onnxfn-0.1.0.dist-info/METADATA": "Name: onnxfn\nVersion: 0.1.0\n",
        "onnxfn-0.1.0.dist-info/RECORD": "",
        "onnxfn-0.1.0.dist-info/entry_points.txt": "",
        "bin/onnxfn": "#!/usr/bin/python\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_bundle_keeps_the_runtime_and_the_onnxfn_modules_it_imports_only(tmp_path):
    installed = _fake_wheel_install(tmp_path / "installed")
    kept = _wheel.keep_runtime(installed, tmp_path / "function")
    assert sorted(kept) == [
        "onnxfn-0.1.0.dist-info/METADATA",
        "onnxfn/__init__.py",
        "onnxfn/_wire.py",
        "onnxfn/runtime/__init__.py",
        "onnxfn/runtime/_model.py",
        "onnxfn/runtime/_v2.py",
    ]
    _wheel.check_closure(tmp_path / "function", installed)  # every onnxfn import is satisfied


def test_a_runtime_import_the_list_does_not_keep_fails_the_build(tmp_path, monkeypatch):
    installed = _fake_wheel_install(tmp_path / "installed")
    (installed / "onnxfn/runtime/_app.py").write_text("from onnxfn import _explain\n")
    (installed / "onnxfn/_explain.py").write_text("")
    monkeypatch.setattr(_wheel, "RUNTIME_FILES", ("onnxfn/__init__.py", "onnxfn/runtime/"))
    _wheel.keep_runtime(installed, tmp_path / "function")
    with pytest.raises(ValueError, match="RUNTIME_FILES") as exc:
        _wheel.check_closure(tmp_path / "function", installed)
    message = str(exc.value)
    assert "onnxfn.runtime._app imports onnxfn._explain" in message
    assert "onnxfn.runtime._v2 imports onnxfn._wire" in message


def test_runtime_files_name_the_wire_codec_and_never_the_other_parts():
    assert "onnxfn/_wire.py" in _wheel.RUNTIME_FILES and "onnxfn/runtime/" in _wheel.RUNTIME_FILES
    for part in ("onnxfn/cli.py", "onnxfn/client/", "onnxfn/converter/", "onnxfn/_bundle/"):
        assert not _wheel._kept(part + ("x.py" if part.endswith("/") else ""))


def test_the_wheel_is_built_from_the_package_folders_not_the_whole_checkout(tmp_path):
    """A checkout may hold models/ or artifacts/ of any size: the wheel build copies what it reads only."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "onnxfn"\n\n[tool.setuptools.package-dir]\n"onnxfn" = "onnxfn"\n'
        '"onnxfn.runtime" = "runtime"\n\n[tool.pytest.ini_options]\nx = "y"\n'
    )
    for folder in ("onnxfn", "runtime", "models", "tests", ".git"):
        (tmp_path / folder).mkdir()
    (tmp_path / "README.md").write_text("readme")
    (tmp_path / ".env").write_text("SECRET=1")
    names = [p.name for p in _wheel._build_inputs(tmp_path)]
    assert names == ["README.md", "onnxfn", "pyproject.toml", "runtime"]


def test_zips_are_deterministic_and_prefixed(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for d, files in (("deps", ["numpy/__init__.py", "numpy/core.so"]), ("function", ["onnxfn/a.py"])):
        for f in files:
            (tmp_path / d / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / d / f).write_text(f)
    (tmp_path / "deps" / "numpy/core.so").chmod(0o755)
    sources = [(tmp_path / "function", ""), (tmp_path / "deps", "python/")]
    entries = _zip.write_zip(tmp_path / "a.zip", sources)
    assert [e[0] for e in entries] == ["onnxfn/a.py", "python/numpy/__init__.py", "python/numpy/core.so"]
    _zip.write_zip(tmp_path / "b.zip", sources[::-1])
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
    assert modes["python/numpy/core.so"] == 0o755 and modes["onnxfn/a.py"] == 0o644
    with pytest.raises(ValueError, match="twice"):
        _zip.write_zip(tmp_path / "c.zip", [(tmp_path / "deps", ""), (tmp_path / "deps", "")])


def test_python_m_onnxfn_bundle_offers_offline_only(tmp_path):
    import subprocess

    run = [sys.executable, "-m", "onnxfn._bundle"]
    usage = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert usage.returncode == 2 and "offline MODEL_DIR" in usage.stderr
    helped = subprocess.run([*run, "offline", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert helped.returncode == 0 and "--http-port" in helped.stdout
    missing = subprocess.run([*run, "offline", "nope"], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_platform_tags_cover_lambdas_glibc():
    tags = _deps.platform_tags("aarch64")
    assert tags[0] == "manylinux_2_34_aarch64" and "manylinux_2_17_aarch64" in tags
    assert "manylinux_2_35_aarch64" not in tags  # newer than Amazon Linux 2023's glibc


def test_elf_reader_finds_needed_libraries():
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    pybind = next(capi.glob("onnxruntime_pybind11_state*.so"))
    needed = _trim.elf_needed(pybind)
    assert needed is not None and any(n.startswith("libc.so") for n in needed)
    assert _trim.elf_needed(Path(onnxruntime.__file__)) is None  # not an ELF file


def test_bytecode_is_deterministic_and_names_var_task(tmp_path):
    import marshal

    for run in ("a", "b"):
        pkg = tmp_path / run / "pkg"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("X = {'a', 'b', 'c'}\n\ndef f():\n    return frozenset(X)\n")
        (tmp_path / run / "models").mkdir()
        (tmp_path / run / "models" / "skip.py").write_text("this is not python\n")
        assert _bytecode.compile_bytecode(tmp_path / run, sys.executable) == 1
    tag = sys.implementation.cache_tag
    a = (tmp_path / "a" / "pkg" / "__pycache__" / f"__init__.{tag}.pyc").read_bytes()
    b = (tmp_path / "b" / "pkg" / "__pycache__" / f"__init__.{tag}.pyc").read_bytes()
    assert a == b  # different build dirs, same bytes
    assert marshal.loads(a[16:]).co_filename == "/var/task/pkg/__init__.py"
    assert not (tmp_path / "a" / "models" / "__pycache__").exists()


def test_find_python_accepts_only_the_target_version():
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert _bytecode.find_python(here) == sys.executable
    assert _bytecode.find_python("3.99") is None
    assert _bytecode.find_python(here, "/no/such/python") is None


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
    # onnxfn: from its wheel, the runtime and the onnxfn modules it imports; no CLI, client, converter, bundler.
    sources = {n for n in names if n.startswith("onnxfn/") and "/__pycache__/" not in n}
    runtime = ROOT / "runtime"
    expected = {"onnxfn/__init__.py", "onnxfn/_wire.py"}
    expected |= {f"onnxfn/runtime/{p.relative_to(runtime).as_posix()}" for p in runtime.rglob("*.py")}
    assert {n for n in sources if n.endswith(".py")} == expected
    assert all(n.startswith("onnxfn/runtime/") for n in sources - expected)  # py.typed, static files
    metadata = [n for n in names if n.startswith("onnxfn-")]  # importlib.metadata.version("onnxfn")
    assert len(metadata) == 1 and re.fullmatch(r"onnxfn-[^/]+\.dist-info/METADATA", metadata[0])
    assert "wheel onnxfn-" in local_bundle.onnxfn and str(ROOT) in local_bundle.onnxfn
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
    assert all(_report.source_of(n) in names for n in pycs)
    assert not [n for n in names if "__pycache__" in n and not n.endswith(f".{tag}.pyc")]
    assert "onnxfn/runtime/__pycache__/aws." + tag + ".pyc" in names
    assert "modules of the cold path" in local_bundle.bytecode  # the probe ran (else: every module)
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
    assert report.zipped < _report.ZIPPED_LIMIT and report.unzipped < _report.UNZIPPED_LIMIT
    assert sum(p.unzipped for p in report.packages) == report.unzipped
    assert report.top(1)[0].name == "onnxruntime"
    table = report.table()
    for word in ("onnxruntime", "numpy", "total", "trimmed", "test suites", report.sha256, "MiB"):
        assert word in table
    assert " MB" not in table
    assert {t.what for t in report.trimmed} >= {"bytecode caches", "test suites"} or report.trimmed


@pytest.mark.slow
def test_same_inputs_give_the_same_zip_and_the_cli_prints_its_report(
    local_bundle, deploy_models, onnxfn_wheel, tmp_path, capsys
):
    """A second build, through the CLI, from the same models and pins and another build of the same wheel:
    byte-identical."""
    argv = ["bundle", str(deploy_models), "-o", str(tmp_path), "--arch", local_bundle.arch,
            "--python", local_bundle.python, "--wheel", str(onnxfn_wheel), "--json"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sha256"] == local_bundle.sha256
    assert (tmp_path / "onnxfn-lambda.zip").read_bytes() == Path(local_bundle.path).read_bytes()
    assert data["packages"][0]["name"] == "onnxruntime"
    assert data["models"] == ["digits", "topics"]


@pytest.mark.slow
def test_the_wheel_users_install_ships_the_bundler_and_the_runtime(onnxfn_wheel):
    with zipfile.ZipFile(onnxfn_wheel) as zf:
        names = set(zf.namelist())
    for module in ("onnxfn/_bundle/__init__.py", "onnxfn/_bundle/_probe.py", "onnxfn/_wire.py"):
        assert module in names, module
    assert {f"onnxfn/runtime/{p.name}" for p in (ROOT / "runtime").glob("*.py")} <= names


def test_dockerfile_builds_the_same_runtime_on_the_lambda_base_image():
    """Not built here (no Docker engine): its contents are checked instead."""
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:3.12" in text
    assert 'CMD ["onnxfn.runtime.aws.handler"]' in text
    for requirement in _deps.SERVE_REQUIREMENTS:
        assert f'"{requirement}"' in text
    assert "uvicorn" not in text.split("FROM", 1)[1].replace("no uvicorn", "")
    assert "COPY runtime/ ${LAMBDA_TASK_ROOT}/onnxfn/runtime/" in text
    # The same onnxfn files as the zip: RUNTIME_FILES (the repo maps runtime/ to onnxfn.runtime).
    copies = [line.split()[1:-1] for line in text.splitlines() if line.startswith("COPY ")]
    copied = {
        src.replace("runtime/", "onnxfn/runtime/") if src == "runtime/" else src for c in copies for src in c
    }
    assert set(_wheel.RUNTIME_FILES) <= copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", "converter", "client", ".venv", "node_modules"} <= set(ignored)
    assert "runtime" not in ignored and "onnxfn" not in ignored
