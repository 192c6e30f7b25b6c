"""onnxfn.runtime: serve ONNX models over HTTP (FastAPI) on AWS Lambda, uvicorn, or in process.

```python
from onnxfn.runtime import create_app, load_models
app = create_app("models/")                  # the ASGI app: KServe V2 + the predict API
repo = load_models("model.onnx")             # models without HTTP: repo.get("model").run({...})
```

Light by design: it never imports TensorFlow or the converter, and FastAPI is imported only by
``create_app``, so ``onnxfn.runtime.preprocess`` and ``load_models`` stay cheap for edge use.
Where a request goes, file by file: ``docs/design.md``.
"""

from __future__ import annotations

from pathlib import Path
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


def create_app(
    source: str | Path | None = None,
    *,
    settings: Settings | None = None,
    repository: ModelRepository | None = None,
) -> FastAPI:
    """The ASGI app serving the models in ``source`` (a file, a directory or ``s3://…``).

    Without ``source``, ``settings.model_dir`` (``ONNXFN_MODEL_DIR``) is used; ``repository`` serves
    models already loaded. Models load here, eagerly.
    """
    from ._app import create_app as _create_app

    return _create_app(source, settings=settings, repository=repository)


def load_models(
    source: str | Path,
    *,
    threads: int = 1,
    max_image_pixels: int = 40_000_000,
    default: str | None = None,
    cache_dir: str | Path | None = None,
    instances: int = 1,
) -> ModelRepository:
    """Models from a file, a directory or ``s3://…``, without any HTTP machinery.

    ``instances``: onnxruntime sessions per model (requests take a free one), each with ``threads`` threads.
    """
    from ._repository import ModelRepository

    return ModelRepository.load(
        source,
        threads=threads,
        max_image_pixels=max_image_pixels,
        default=default,
        cache_dir=cache_dir,
        instances=instances,
    )


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


def __dir__() -> list[str]:
    return sorted(__all__)
