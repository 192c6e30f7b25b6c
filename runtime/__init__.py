"""onnxfn.runtime: serve ONNX models over HTTP (FastAPI) on AWS Lambda, uvicorn, or in process.

Light by design: it never imports TensorFlow or the converter, and FastAPI is imported only by
``create_app``, so ``onnxfn.runtime.preprocess`` and ``load_models`` stay cheap for edge use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    APIError,
    BadRequest,
    HeadersTooLarge,
    NotFound,
    NotReady,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from ._metadata import ModelMetadata
from ._settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ._model import Model
    from ._repository import ModelRepository

__all__ = [
    "APIError",
    "BadRequest",
    "HeadersTooLarge",
    "Model",
    "ModelMetadata",
    "ModelRepository",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "Settings",
    "Unauthorized",
    "UnsupportedMediaType",
    "create_app",
    "load_models",
    "write_manifest",
]


def create_app(source: Any = None, **kwargs: Any) -> FastAPI:
    """The HTTP app (see ``onnxfn.runtime._app.create_app``)."""
    from ._app import create_app as _create_app

    return _create_app(source, **kwargs)


def load_models(source: Any, **kwargs: Any) -> ModelRepository:
    """Models from a file, a directory or ``s3://…``, without any HTTP machinery."""
    from ._repository import ModelRepository

    return ModelRepository.load(source, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Model":
        from ._model import Model

        return Model
    if name == "ModelRepository":
        from ._repository import ModelRepository

        return ModelRepository
    if name == "write_manifest":
        from ._manifest import write_manifest

        return write_manifest
    raise AttributeError(f"module 'onnxfn.runtime' has no attribute {name!r}")
