"""``onnxfn.cli.missing_extra``: which extra a missing module asks for (the venv tests run the real thing)."""

from __future__ import annotations

import pytest

from onnxfn.cli import EXTRA_MODULES, main, missing_extra


def _missing(name: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"No module named {name!r}", name=name)


@pytest.mark.parametrize(
    ("module", "command", "extra"),
    [
        ("keras", "convert", "convert"),
        ("tensorflow.python", "convert", "convert"),
        ("onnxruntime", "quantize", "convert"),  # quantize needs the converter's onnxruntime
        ("onnxruntime", "serve", "serve"),
        ("onnxruntime", "predict", "serve"),  # a local model: Client.local needs the runtime
        ("uvicorn", "serve", "serve"),
        ("PIL", "predict", "serve"),
        ("requests", "predict", "client"),
        ("boto3", "serve", "aws"),  # s3:// model sources
    ],
)
def test_a_missing_module_names_its_extra(module, command, extra):
    message = missing_extra(_missing(module), command)
    assert message is not None
    assert f"the '{extra}' extra is not installed" in message
    assert f"pip install 'onnxfn[{extra}]'" in message


def test_the_cause_chain_is_followed():
    try:
        try:
            raise _missing("fastapi")
        except ImportError as exc:
            raise ImportError("the app could not start") from exc
    except ImportError as outer:
        assert "onnxfn[serve]" in (missing_extra(outer, "serve") or "")


def test_other_import_errors_are_not_disguised():
    assert missing_extra(_missing("onnxfn.client._transports"), "predict") is None  # a broken install
    assert missing_extra(_missing("no_such_thing"), "serve") is None
    assert missing_extra(ImportError("cannot import name 'x' from 'y'"), "serve") is None
    # an ImportError that already says what to install (Client.local's) is passed on as it is
    told = ImportError("Client.local needs the runtime's dependencies: pip install 'onnxfn[serve]'")
    assert missing_extra(told, "predict") == str(told)


def test_every_extra_in_the_table_exists_in_pyproject():
    from pathlib import Path

    from setuptools.config.pyprojecttoml import read_configuration

    root = Path(__file__).resolve().parents[2]
    extras = read_configuration(root / "pyproject.toml", expand=False)["project"]["optional-dependencies"]
    assert set(EXTRA_MODULES) <= set(extras)


def test_main_prints_the_extra_and_exits_2(monkeypatch, capsys, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` fails as in an install without it
    assert main(["serve", str(tmp_path), "--port", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "onnxfn serve: error: the 'serve' extra is not installed (no module named 'uvicorn')"
    )
    assert "pip install 'onnxfn[serve]'" in err
