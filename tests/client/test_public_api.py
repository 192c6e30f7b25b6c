"""The public surface of ``onnxfn.client`` (as httpx tests its own): exactly ``__all__``, each name
importable and documented, typed signatures without ``*args``/``**kwargs``, and ``AsyncClient``
mirroring ``Client`` method for method."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import onnxfn.client as client_module
import pytest
from onnxfn.client import AsyncClient, Client

ENDPOINTS = ["predict", "predict_batch", "infer", "metadata", "models", "health"]


def test_dir_is_exactly_all():
    public = {n for n in dir(client_module) if not n.startswith("_")}
    assert public == set(client_module.__all__)
    assert len(client_module.__all__) == len(set(client_module.__all__))


@pytest.mark.parametrize("name", client_module.__all__)
def test_each_name_is_importable_and_documented(name):
    obj = getattr(importlib.import_module("onnxfn.client"), name)
    assert inspect.getdoc(obj), f"onnxfn.client.{name} has no docstring"
    assert not name.startswith(("Transport", "Request", "Response"))  # transports are private


def _public_methods(cls):
    for name, member in inspect.getmembers(cls):
        if not name.startswith("_") and callable(member):
            yield name, member


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_public_methods_are_typed_without_catch_all_arguments(cls):
    for name, method in [("__init__", cls.__init__), *_public_methods(cls)]:
        signature = inspect.signature(method)
        assert signature.return_annotation is not inspect.Signature.empty, f"{cls.__name__}.{name}"
        for p in signature.parameters.values():
            assert p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD), f"{cls.__name__}.{name}(*{p.name})"
            if p.name not in ("self", "cls"):
                assert p.annotation is not inspect.Parameter.empty, f"{cls.__name__}.{name}({p.name})"
        if name != "__init__":
            assert inspect.getdoc(method), f"{cls.__name__}.{name} has no docstring"


@pytest.mark.parametrize("name", ENDPOINTS)
def test_async_client_mirrors_client(name):
    sync, asynchronous = getattr(Client, name), getattr(AsyncClient, name)
    assert inspect.iscoroutinefunction(asynchronous) and not inspect.iscoroutinefunction(sync)
    assert str(inspect.signature(sync)) == str(inspect.signature(asynchronous))


def test_constructors_take_the_same_arguments():
    sync = set(inspect.signature(Client.__init__).parameters) - {"session"}  # requests-only
    assert sync == set(inspect.signature(AsyncClient.__init__).parameters)


def test_typed_marker_is_shipped():
    assert (Path(client_module.__file__).parent / "py.typed").is_file()
