"""The distribution users install, used outside the source tree.

Builds the sdist and the wheel once (``python -m build --no-isolation``), checks them against the source
folders, installs the wheel into fresh venvs in temporary directories and runs what a new user runs:

- ``[serve,client]``: ``onnxfn --help``/``--version``, ``onnxfn serve`` a real model, ``Client.predict``,
  ``Client.local`` and ``onnxfn predict`` against it;
- ``[client]`` only: no onnxruntime, FastAPI or TensorFlow in the venv; the client predicts against a server
  run from the dev venv; ``Client.local`` and the commands of other extras say which extra to install.

pip's own cache keeps the installs quick; nothing but the package index is contacted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from models import digit_png
from servers import free_port, onnxfn_serve, stop, wait_ready

import onnxfn

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("onnxruntime", "fastapi", "starlette", "uvicorn", "tensorflow", "keras", "tf2onnx", "onnx")
VERSION = onnxfn.__version__


def run(cmd: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return result


def check(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    result = run(cmd, **kwargs)
    assert result.returncode == 0, (
        f"{cmd} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def package_dir() -> dict[str, str]:
    """pyproject.toml's ``[tool.setuptools.package-dir]``: import name → source folder."""
    from setuptools.config.pyprojecttoml import read_configuration

    return read_configuration(ROOT / "pyproject.toml", expand=False)["tool"]["setuptools"]["package-dir"]


def source_files(folder: str) -> list[str]:
    """Files under ``folder`` (relative to it) that belong to the project: tracked or new, not ignored."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "--", folder], cwd=ROOT)
    if listed.returncode == 0 and listed.stdout.strip():
        paths = [Path(line) for line in listed.stdout.splitlines()]
    else:  # not a git checkout (an unpacked sdist)
        paths = [p.relative_to(ROOT) for p in (ROOT / folder).rglob("*") if p.is_file()]
    files = []
    for path in paths:
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo") or not (ROOT / path).is_file():
            continue
        files.append(path.relative_to(folder).as_posix())
    return sorted(files)


@dataclass(frozen=True)
class Dists:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> Dists:
    out = tmp_path_factory.mktemp("dist")
    check([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], cwd=ROOT)
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert [w.name for w in wheels] == [f"onnxfn-{VERSION}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"onnxfn-{VERSION}.tar.gz"]
    return Dists(wheels[0], sdists[0])


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user who activated ``venv``: nothing from the dev venv or the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONNOUSERSITE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass(frozen=True)
class Venv:
    path: Path
    home: Path  # a working directory outside the source tree

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def env(self) -> dict[str, str]:
        return clean_env(self.path)

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
        return run([*args], cwd=self.home, env=self.env, timeout=timeout)

    def onnxfn(self, *args: str | Path) -> subprocess.CompletedProcess:
        return self.run(self.path / "bin" / "onnxfn", *args)

    def script(self, code: str, *args: str | Path) -> subprocess.CompletedProcess:
        """Run ``code`` in the venv; it must import onnxfn from the venv, never from the source tree."""
        guard = textwrap.dedent(
            f"""
            import sys, onnxfn
            assert onnxfn.__file__.startswith({str(self.path)!r}), onnxfn.__file__
            assert not any(p.startswith({str(ROOT)!r}) for p in sys.path if p), sys.path
            """
        )
        return self.run(self.python, "-c", guard + textwrap.dedent(code), *args)

    def pip(self, *args: str | Path) -> subprocess.CompletedProcess:
        """The dev venv's pip working on this venv (``pip --python``), with pip's default cache."""
        return run([sys.executable, "-m", "pip", "--python", self.python, *args], cwd=self.home)


def make_venv(tmp: Path, dists: Dists, extras: str) -> Venv:
    venv = Venv(tmp / "venv", tmp / "home")
    venv.home.mkdir()
    check([sys.executable, "-m", "venv", "--without-pip", venv.path], cwd=tmp)
    result = venv.pip("install", "--quiet", f"{dists.wheel}[{extras}]")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory, digits_data) -> tuple[list[Path], list[int]]:
    """20 held-out digits as PNG files, with their true labels."""
    _, x_test, _, y_test = digits_data
    folder = tmp_path_factory.mktemp("pngs")
    paths = []
    for i in range(20):
        path = folder / f"digit{i}.png"
        path.write_bytes(digit_png(x_test[i]))
        paths.append(path)
    return paths, [int(y) for y in y_test[:20]]


PREDICT = """
import json, sys
from onnxfn.client import Client
target, files = sys.argv[1], sys.argv[2:]
with (Client(target) if target.startswith("http") else Client.local(target)) as client:
    answers = [client.predict(f) for f in files]
print(json.dumps([[p.label, p.score] for p in answers]))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def predict_in(venv: Venv, target: str | Path, pngs: list[Path]) -> tuple[list[list], list[str]]:
    """``Client(target).predict`` (or ``Client.local``) on each PNG, in ``venv``: (label, score) pairs and
    the heavy modules that process had imported."""
    result = venv.script(PREDICT.format(heavy=set(HEAVY)), target, *pngs)
    assert result.returncode == 0, result.stderr[-3000:]
    answers, modules = result.stdout.strip().splitlines()[-2:]
    return json.loads(answers), json.loads(modules)


# -- the built files ------------------------------------------------------------------------------------


def test_wheel_holds_every_package_file_license_and_py_typed(dists):
    with zipfile.ZipFile(dists.wheel) as whl:
        names = set(whl.namelist())
        license_text = whl.read(f"onnxfn-{VERSION}.dist-info/licenses/LICENSE").decode()
        metadata = whl.read(f"onnxfn-{VERSION}.dist-info/METADATA").decode()
    expected = set()
    for name, folder in package_dir().items():
        prefix = name.replace(".", "/")
        files = source_files(folder)
        assert "__init__.py" in files and "py.typed" in files, f"{folder}/ lacks __init__.py or py.typed"
        expected |= {f"{prefix}/{f}" for f in files}
    shipped = {n for n in names if not n.startswith(f"onnxfn-{VERSION}.dist-info/")}
    assert sorted(expected - shipped) == [], "source files missing from the wheel"
    assert sorted(shipped - expected) == [], "files in the wheel that are not in the source folders"
    assert "onnxfn/client/_transports/local.py" in shipped  # the file the first wheel forgot
    assert license_text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0" in license_text
    headers = dict(line.split(": ", 1) for line in metadata.split("\n\n")[0].splitlines() if ": " in line)
    assert headers["Version"] == VERSION
    assert headers["License-Expression"] == "Apache-2.0"
    for extra in ("serve", "client", "convert", "aws", "docs", "dev"):
        assert f"Provides-Extra: {extra}" in metadata


def test_sdist_holds_sources_tests_docs_and_license(dists):
    with tarfile.open(dists.sdist) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    top = f"onnxfn-{VERSION}/"
    missing = [
        f"{folder}/{f}"
        for folder in [*package_dir().values(), "tests", "docs"]
        for f in source_files(folder)
        if top + f"{folder}/{f}" not in names
    ]
    assert missing == [], "files missing from the sdist"
    for f in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "setup.py", "mkdocs.yml"):
        assert top + f in names, f


def test_twine_check_is_clean(dists):
    result = check([sys.executable, "-m", "twine", "check", "--strict", dists.sdist, dists.wheel], cwd=ROOT)
    assert result.stdout.count("PASSED") == 2, result.stdout


# -- [client] only --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory, dists) -> Venv:
    return make_venv(tmp_path_factory.mktemp("client-only"), dists, "client")


@pytest.fixture(scope="module")
def dev_server(digits_dir) -> Iterator[str]:
    """``onnxfn serve`` from the dev venv, for the client-only venv to call."""
    with onnxfn_serve(digits_dir) as (url, _):
        yield url


def test_client_only_venv_has_no_server_or_converter_dependencies(client_venv):
    result = client_venv.script(
        f"""
        import importlib.util, json
        import onnxfn.client
        print(json.dumps([m for m in {HEAVY!r} if importlib.util.find_spec(m) is not None]))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_client_only_venv_predicts_against_a_server(client_venv, dev_server, digit_pngs):
    from onnxfn.client import Client

    pngs, truth = digit_pngs
    answers, heavy = predict_in(client_venv, dev_server, pngs)
    assert heavy == []
    with Client(dev_server) as dev_client:  # the same server, called from the dev venv
        expected = [dev_client.predict(p) for p in pngs]
    assert [a[0] for a in answers] == [p.label for p in expected]
    assert [a[1] for a in answers] == pytest.approx([p.score for p in expected], abs=1e-6)
    correct = sum(a[0] == str(y) for a, y in zip(answers, truth, strict=True))
    assert correct >= 17, answers  # logistic regression on digits: ~96% held-out


def test_client_only_venv_client_local_names_the_serve_extra(client_venv, digits_model):
    result = client_venv.script(
        f"""
        from onnxfn.client import Client
        try:
            Client.local({str(digits_model)!r})
        except ImportError as exc:
            print(type(exc).__name__, exc)
        else:
            raise SystemExit("Client.local worked without onnxruntime")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "onnxfn[serve]" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        (["convert", "{home}/model.keras", "-o", "{home}/model.onnx"], "convert"),
        (["quantize", "{model}", "-o", "{home}/int8.onnx", "--mode", "dynamic"], "convert"),
        (["serve", "{models}", "--port", "9"], "serve"),
        (["predict", "{model}", "{png}"], "serve"),
    ],
    ids=["convert", "quantize", "serve", "predict-local"],
)
def test_client_only_venv_commands_of_other_extras_fail_kindly(
    client_venv, digits_dir, digits_model, digit_pngs, command, extra
):
    (client_venv.home / "model.keras").write_bytes(b"")  # exists: the missing extra is what fails
    values = {
        "home": client_venv.home,
        "model": digits_model,
        "models": digits_dir,
        "png": digit_pngs[0][0],
    }
    result = client_venv.onnxfn(*[part.format(**values) for part in command])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"onnxfn {command[0]}: error: the '{extra}' extra is not installed")
    assert f"pip install 'onnxfn[{extra}]'" in result.stderr


def test_client_only_venv_the_advised_pip_command_resolves(client_venv):
    """What the error message says (``pip install 'onnxfn[serve]'``) works with onnxfn installed from the
    wheel, although onnxfn is not on the index: pip keeps the installed onnxfn and adds the extra's deps."""
    result = client_venv.pip("install", "--dry-run", "onnxfn[serve]")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    would = next(line for line in result.stdout.splitlines() if line.startswith("Would install"))
    assert "onnxruntime-" in would and "fastapi-" in would and "uvicorn-" in would
    assert "onnxfn-" not in would


# -- [serve,client] -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory, dists) -> Venv:
    return make_venv(tmp_path_factory.mktemp("serve-client"), dists, "serve,client")


@pytest.fixture(scope="module")
def venv_server(serve_venv, digits_dir) -> Iterator[str]:
    """``onnxfn serve`` run by the venv's console script, from a directory outside the tree."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [serve_venv.path / "bin" / "onnxfn", "serve", digits_dir, "--host", "127.0.0.1", "--port", str(port)],
        cwd=serve_venv.home,
        env=serve_venv.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(url, proc)
        yield url
    finally:
        stop(proc)
        if proc.stdout:
            proc.stdout.close()


def test_serve_venv_cli_help_and_version(serve_venv):
    help_ = serve_venv.onnxfn("--help")
    assert help_.returncode == 0, help_.stderr
    for command in ("convert", "quantize", "serve", "predict", "keygen", "bundle"):
        assert command in help_.stdout
    version = serve_venv.onnxfn("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"onnxfn {VERSION}"
    metadata = serve_venv.script(
        "import importlib.metadata as m, onnxfn; print(m.version('onnxfn'), onnxfn.__version__)"
    )
    assert metadata.stdout.split() == [VERSION, VERSION]


def test_serve_venv_serves_and_the_client_predicts(serve_venv, venv_server, digits_model, digit_pngs):
    pngs, truth = digit_pngs
    answers, _ = predict_in(serve_venv, venv_server, pngs)
    correct = sum(a[0] == str(y) for a, y in zip(answers, truth, strict=True))
    assert correct >= 17, answers
    local, heavy = predict_in(serve_venv, digits_model, pngs)  # Client.local: same model, in process
    assert [a[0] for a in local] == [a[0] for a in answers]
    assert [a[1] for a in local] == pytest.approx([a[1] for a in answers], abs=1e-6)
    assert "onnxruntime" in heavy and "fastapi" not in heavy  # local needs the runtime, not the web stack
    cli = serve_venv.onnxfn("predict", venv_server, *pngs[:3], "--json")
    assert cli.returncode == 0, cli.stderr
    rows = json.loads(cli.stdout)
    assert [r["input"] for r in rows] == [str(p) for p in pngs[:3]]
    assert [r["label"] for r in rows] == [a[0] for a in answers[:3]]
