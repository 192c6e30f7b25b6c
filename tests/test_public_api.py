"""Each part's public surface is exactly its ``__all__`` (as httpx tests its own), typed and documented."""

from __future__ import annotations

import importlib
import inspect

import pytest

PARTS = ["onnxfn.runtime", "onnxfn.converter", "onnxfn.client"]


@pytest.mark.parametrize("part", PARTS)
def test_public_names_are_exactly_all(part):
    module = importlib.import_module(part)
    public = {name for name in dir(module) if not name.startswith("_")}
    # Submodules appear in dir() once imported (e.g. onnxfn.runtime.preprocess): they are modules, not API names.
    public = {n for n in public if not inspect.ismodule(getattr(module, n, None))}
    assert public == set(module.__all__)


@pytest.mark.parametrize("part", PARTS)
def test_every_public_name_resolves_and_is_documented(part):
    module = importlib.import_module(part)
    for name in module.__all__:
        obj = getattr(module, name)
        assert inspect.getdoc(obj), f"{part}.{name} has no docstring"
        if inspect.isfunction(obj):
            hints = inspect.signature(obj)
            assert hints.return_annotation is not inspect.Signature.empty, f"{part}.{name} has no return type"
            for p in hints.parameters.values():
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    assert p.annotation is not inspect.Parameter.empty, f"{part}.{name}({p.name}) is untyped"
