"""Where models come from: one ``.onnx`` file, a directory (with or without ``manifest.json``), or S3.

A directory with a manifest is verified: every file's sha256 must match before it is served; a model
that fails is refused (logged) and the others are still served.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import NotFound, NotReady
from ._manifest import MANIFEST, read_manifest, sha256_file, valid_name, verify_entry, write_manifest
from ._model import Model

log = logging.getLogger("onnxfn.runtime")

# The manifest helpers live in _manifest (shared with `onnxfn bundle`); these names stay importable here.
__all__ = [
    "MANIFEST",
    "Candidate",
    "ModelRepository",
    "discover",
    "sha256_file",
    "valid_name",
    "write_manifest",
]


class ModelRepository:
    """The models one app serves, by name, with a default.

    ``models`` is replaced as a whole (never mutated) when models are reloaded, so a request that already
    holds a :class:`Model` finishes on it while the next one gets the new one.
    """

    def __init__(
        self, models: dict[str, Model], default: str | None = None, errors: dict[str, str] | None = None
    ):
        self.models = models
        self.errors = errors or {}
        if default is not None and default not in models:
            raise ValueError(
                f"default model {default!r} (ONNXFN_DEFAULT_MODEL) is not among the loaded models {sorted(models)}"
            )
        self.explicit_default = default
        # Without an explicit default, /predict serves the first model by name.
        self.default = default or (sorted(models)[0] if models else None)
        # Where the models came from, for reloads (set by ``load``).
        self.source: str | None = None
        self.root: Path | None = None
        self.load_options: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        self.signatures: dict[str, tuple] = {}  # what each model's file and manifest entry looked like

    @classmethod
    def load(
        cls,
        source: str | Path,
        *,
        threads: int = 1,
        max_image_pixels: int = 40_000_000,
        default: str | None = None,
        cache_dir: str | Path | None = None,
        allow_empty: bool = False,
        instances: int = 1,
    ) -> ModelRepository:
        """Load every model ``source`` names: a file, a directory or ``s3://bucket/prefix``.

        Each model loaded, refused or skipped is logged (one JSON line each, with the reason). A source with
        no model files at all raises ``FileNotFoundError`` unless ``allow_empty`` (models may arrive by reload).
        """
        text = str(source)
        if text.startswith("s3://"):
            from ._s3 import download

            try:
                source = download(text, cache_dir=cache_dir)
            except FileNotFoundError:
                if not allow_empty:
                    raise
                log.warning(json.dumps({"event": "no_models", "source": text, "reason": "nothing there yet"}))
                return cls._empty(text, None, threads, max_image_pixels, instances)
        path = Path(source)
        options = {"threads": threads, "max_image_pixels": max_image_pixels, "instances": instances}
        if not path.exists() and allow_empty:
            log.warning(json.dumps({"event": "no_models", "source": text, "reason": "does not exist yet"}))
            return cls._empty(text, path, threads, max_image_pixels, instances)
        candidates, skipped = discover(path)
        if not candidates and not allow_empty:
            raise FileNotFoundError(f"no models in {path}: expected *.onnx files or a {MANIFEST}")
        models: dict[str, Model] = {}
        errors: dict[str, str] = {}
        signatures: dict[str, tuple] = {}
        for candidate in candidates:
            signatures[candidate.name] = candidate.signature  # before loading: a later change is seen
            try:
                models[candidate.name] = candidate.load(options)
            except (ValueError, OSError) as exc:  # refuse this one, keep serving the others
                errors[candidate.name] = str(exc)
                log.error(json.dumps({"event": "model_refused", "model": candidate.name, "reason": str(exc)}))
        repo = cls(models, default=default if default in models or not allow_empty else None, errors=errors)
        if default is not None and default not in models:
            repo.explicit_default = default
        repo.source, repo.root, repo.load_options, repo.skipped = text, path, options, skipped
        repo.signatures = signatures
        return repo

    @classmethod
    def _empty(
        cls, source: str, root: Path | None, threads: int, max_image_pixels: int, instances: int = 1
    ) -> ModelRepository:
        repo = cls({})
        repo.source, repo.root = source, root
        repo.load_options = {"threads": threads, "max_image_pixels": max_image_pixels, "instances": instances}
        return repo

    def replace(self, models: dict[str, Model], errors: dict[str, str]) -> None:
        """Swap in a new set of models at once (the reloader's commit)."""
        default = self.explicit_default
        if default is None or default not in models:
            default = default if default is not None else (sorted(models)[0] if models else None)
        self.errors = errors
        self.default = default
        self.models = models  # one reference assignment: readers see the old dict or the new one

    def problems(self) -> dict[str, str]:
        """Every model that is not served, with the reason: refused ones and skipped files."""
        return {**self.skipped, **self.errors}

    def get(self, name: str | None, version: str | None = None) -> Model:
        """The named model (or the default); NotFound lists what is available."""
        models = self.models
        if name is None:
            if self.default is None or self.default not in models:
                raise NotReady("no model is loaded: check ONNXFN_MODEL_DIR and the server log")
            name = self.default
        model = models.get(name)
        if model is None:
            available = ", ".join(sorted(models)) or "none"
            hint = f" (it failed to load: {self.errors[name]})" if name in self.errors else ""
            raise NotFound(f"unknown model {name!r}{hint}; available models: {available}")
        if version is not None and version != model.version:
            raise NotFound(f"model {name!r} has no version {version!r}; available versions: {model.version}")
        return model

    def __len__(self) -> int:
        return len(self.models)


@dataclass(frozen=True)
class Candidate:
    """A model a source names: its file, and the sha256 the manifest promises (``None``: no manifest).

    ``signature`` changes whenever the file or its manifest entry does: the reloader compares it.
    """

    name: str
    root: Path
    entry: Any  # the manifest entry (dict), or None for a plain file
    file: Path

    @property
    def signature(self) -> tuple:
        try:
            st = self.file.stat()
            stat = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stat = None
        return (json.dumps(self.entry, sort_keys=True, default=str), str(self.file), stat)

    def load(self, options: dict[str, int]) -> Model:
        """Verify (manifest) and load; logs ``model_loaded``. ``ValueError``/``OSError`` when refused."""
        start = time.perf_counter()
        if self.entry is not None:
            model = _load_verified(self.root, self.name, self.entry, options)
        else:
            model = Model(self.name, self.file, **options)
        log.info(
            json.dumps(
                {
                    "event": "model_loaded",
                    "model": model.name,
                    "version": model.version,
                    "file": str(model.path),
                    "sha256": model.sha256,
                    "ms": round((time.perf_counter() - start) * 1000, 1),
                }
            )
        )
        return model


def discover(path: Path) -> tuple[list[Candidate], dict[str, str]]:
    """The models ``path`` (a file or a directory) names, and the ``*.onnx`` files it skips, with why."""
    if path.is_file():
        return [Candidate(path.stem, path.parent, None, path)], {}
    if not path.is_dir():
        raise FileNotFoundError(f"model source {str(path)!r} is neither an .onnx file nor a directory")
    manifest = path / MANIFEST
    files = sorted(path.glob("*.onnx"))
    skipped: dict[str, str] = {}
    if manifest.is_file():
        entries = read_manifest(manifest)
        candidates = [
            Candidate(
                name, path, entry, path / str(entry.get("file", "")) if isinstance(entry, dict) else path
            )
            for name, entry in sorted(entries.items())
        ]
        listed = {c.file.name for c in candidates}
        for file in files:
            if file.name not in listed:
                reason = f"not listed in {MANIFEST}: add it with `onnxfn manifest {path}`"
                skipped[file.name] = reason
                log.warning(json.dumps({"event": "model_skipped", "file": str(file), "reason": reason}))
        return candidates, skipped
    if files:
        log.warning(
            json.dumps(
                {
                    "event": "no_manifest",
                    "dir": str(path),
                    "message": f"no {MANIFEST}: serving {len(files)} model(s) without sha256 checks "
                    f"(write one with `onnxfn manifest {path}`)",
                }
            )
        )
    return [Candidate(file.stem, path, None, file) for file in files], skipped


def _load_verified(root: Path, name: str, entry: dict, kwargs: dict) -> Model:
    target, actual = verify_entry(root, name, entry)
    return Model(name, target, sha256=actual, **kwargs)
