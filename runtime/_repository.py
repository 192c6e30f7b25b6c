"""Where models come from: one ``.onnx`` file, a directory (with or without ``manifest.json``), or S3.

A directory with a manifest is verified: every file's sha256 must match before it is served; a model
that fails is refused (logged) and the others are still served.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from ._errors import NotFound, NotReady
from ._manifest import MANIFEST, read_manifest, sha256_file, valid_name, verify_entry, write_manifest
from ._model import Model

log = logging.getLogger("onnxfn.runtime")

# The manifest helpers live in _manifest (shared with `onnxfn bundle`); these names stay importable here.
__all__ = ["MANIFEST", "ModelRepository", "sha256_file", "valid_name", "write_manifest"]


class ModelRepository:
    """The models one app serves, by name, with a default."""

    def __init__(
        self, models: dict[str, Model], default: str | None = None, errors: dict[str, str] | None = None
    ):
        self.models = models
        self.errors = errors or {}
        if default is not None and default not in models:
            raise ValueError(
                f"default model {default!r} (ONNXFN_DEFAULT_MODEL) is not among the loaded models {sorted(models)}"
            )
        # Without an explicit default, /predict serves the first model by name.
        self.default = default or (sorted(models)[0] if models else None)

    @classmethod
    def load(
        cls,
        source: str | Path,
        *,
        threads: int = 1,
        max_image_pixels: int = 40_000_000,
        default: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> ModelRepository:
        """Load every model ``source`` names: a file, a directory or ``s3://bucket/prefix``."""
        text = str(source)
        if text.startswith("s3://"):
            from ._s3 import download

            source = download(text, cache_dir=cache_dir)
        path = Path(source)
        kwargs = {"threads": threads, "max_image_pixels": max_image_pixels}
        if path.is_file():
            model = Model(path.stem, path, **kwargs)
            return cls({model.name: model}, default=default)
        if not path.is_dir():
            raise FileNotFoundError(f"model source {text!r} is neither an .onnx file nor a directory")
        manifest = path / MANIFEST
        loaders: dict[str, Callable[[], Model]] = {}
        if manifest.is_file():
            for name, entry in sorted(read_manifest(manifest).items()):
                loaders[name] = partial(_load_verified, path, name, entry, kwargs)
        else:
            files = sorted(path.glob("*.onnx"))
            if files:
                log.warning(
                    json.dumps(
                        {
                            "event": "no_manifest",
                            "dir": str(path),
                            "message": f"no {MANIFEST}: serving {len(files)} model(s) without sha256 checks",
                        }
                    )
                )
            for file in files:
                loaders[file.stem] = partial(Model, file.stem, file, **kwargs)
        if not loaders:
            raise FileNotFoundError(f"no models in {path}: expected *.onnx files or a {MANIFEST}")
        models: dict[str, Model] = {}
        errors: dict[str, str] = {}
        for name, load_one in loaders.items():
            try:
                models[name] = load_one()
            except (ValueError, OSError) as exc:  # refuse this one, keep serving the others
                errors[name] = str(exc)
                log.error(json.dumps({"event": "model_refused", "model": name, "reason": str(exc)}))
        return cls(models, default=default, errors=errors)

    def get(self, name: str | None, version: str | None = None) -> Model:
        """The named model (or the default); NotFound lists what is available."""
        if name is None:
            if self.default is None:
                raise NotReady("no model is loaded: check ONNXFN_MODEL_DIR and the server log")
            name = self.default
        model = self.models.get(name)
        if model is None:
            available = ", ".join(sorted(self.models)) or "none"
            hint = f" (it failed to load: {self.errors[name]})" if name in self.errors else ""
            raise NotFound(f"unknown model {name!r}{hint}; available models: {available}")
        if version is not None and version != model.version:
            raise NotFound(f"model {name!r} has no version {version!r}; available versions: {model.version}")
        return model

    def __len__(self) -> int:
        return len(self.models)


def _load_verified(root: Path, name: str, entry: dict, kwargs: dict) -> Model:
    target, actual = verify_entry(root, name, entry)
    return Model(name, target, sha256=actual, **kwargs)
