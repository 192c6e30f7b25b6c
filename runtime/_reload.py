"""Hot model reload: poll the model source, swap changed models in atomically, never serve a bad one.

Every ``ONNXFN_RELOAD_INTERVAL`` seconds a daemon thread looks at the source the repository was loaded
from: a model directory (``manifest.json`` and each model file: stat and manifest entry), a single file, or
``s3://bucket/prefix`` (object ETags; changed objects are downloaded into the local cache first, the
manifest after the model files, each file replaced atomically). A model whose file or manifest entry
changed is loaded *beside* the serving one, its sha256 checked against the manifest, warmed up, and only
then swapped in with one reference assignment (``ModelRepository.replace``): a request that already has
the old model finishes on it; the next one gets the new one. A model that fails (corrupt file, sha256
mismatch, unreadable graph) is refused and logged, and the old one keeps serving; it is retried only when
its file or manifest entry changes again. A model gone from the source is unloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from . import _metrics
from ._model import Model
from ._repository import ModelRepository, discover

log = logging.getLogger("onnxfn.runtime")

__all__ = ["Reloader"]


class Reloader:
    """Polls ``repository``'s source every ``interval`` seconds (a daemon thread) and swaps changed models."""

    def __init__(self, repository: ModelRepository, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the reload interval must be positive (0 turns reload off)")
        self.repository = repository
        self.interval = interval
        self.source = repository.source or ""
        # name -> the signature that failed (not retried until it changes); startup refusals count too.
        self._failed: dict[str, tuple] = {
            name: repository.signatures[name] for name in repository.errors if name in repository.signatures
        }
        self._etags: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # S3: what the local cache holds is not assumed to match the bucket (the cache may be from an earlier
        # run): the first poll compares every object, by MD5 where the ETag is one, and fetches what differs.

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="onnxfn-reload", daemon=True)
            self._thread.start()
            log.info(json.dumps({"event": "reload_on", "source": self.source, "interval_s": self.interval}))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # a broken poll (S3 down, manifest mid-edit) keeps what is served
                log.error(json.dumps({"event": "reload_failed", "source": self.source, "reason": str(exc)}))

    def poll(self) -> bool:
        """One look at the source; returns whether the served set of models changed."""
        with self._lock:
            if self.source.startswith("s3://"):
                self._sync_s3()
            root = self.repository.root
            if root is None or not root.exists():
                return False
            candidates, skipped = discover(root)
            return self._apply(candidates, skipped)

    def _apply(self, candidates: list[Any], skipped: dict[str, str]) -> bool:
        repo = self.repository
        current = repo.models
        signatures = dict(repo.signatures)
        models: dict[str, Model] = {}
        errors: dict[str, str] = {}
        loaded, refused = [], []
        for candidate in candidates:
            name = candidate.name
            signature = candidate.signature
            old = current.get(name)
            if old is not None and signatures.get(name) == signature:
                models[name] = old
                continue
            if self._failed.get(name) == signature:  # refused before, unchanged since: keep what was there
                if old is not None:
                    models[name] = old
                errors[name] = repo.errors.get(name, "refused")
                continue
            try:
                model = candidate.load(repo.load_options)
                model.warmup()
            except (ValueError, OSError) as exc:
                self._failed[name] = signature
                errors[name] = str(exc)
                refused.append(name)
                _metrics.model_refused(name)
                log.error(
                    json.dumps(
                        {
                            "event": "model_reload_refused",
                            "model": name,
                            "reason": str(exc),
                            "serving": old.version if old is not None else None,
                        }
                    )
                )
                if old is not None:
                    models[name] = old  # the old one keeps serving
                continue
            self._failed.pop(name, None)
            signatures[name] = signature
            models[name] = model
            loaded.append(name)
        removed = sorted(set(current) - set(models))
        for name in removed:
            signatures.pop(name, None)
        for name in skipped:
            if name not in repo.skipped:
                log.warning(json.dumps({"event": "model_skipped", "file": name, "reason": skipped[name]}))
        repo.skipped = skipped
        if not loaded and not removed:
            repo.errors = errors
            return False
        repo.signatures = signatures
        repo.replace(models, errors)
        _metrics.models_loaded(len(models))
        log.info(
            json.dumps(
                {
                    "event": "models_reloaded",
                    "loaded": {n: models[n].version for n in loaded},
                    "removed": removed,
                    "refused": refused,
                    "serving": sorted(models),
                }
            )
        )
        return True

    # -- S3 ----------------------------------------------------------------------------------------
    def _sync_s3(self) -> None:
        """Download the objects whose ETag changed into the local cache (manifest last), drop deleted ones."""
        root = self.repository.root
        client, etags = _s3_etags(self.source)
        if root is None:  # nothing was there at start: do the first download now
            from ._s3 import download

            if etags:
                self.repository.root = download(self.source)
                self._etags = etags
            return
        if etags == self._etags:
            return
        from ._s3 import parse

        bucket, prefix = parse(self.source)
        base = root if root.is_dir() else root.parent
        strip = prefix if prefix.endswith("/") or len(etags) > 1 else prefix.rpartition("/")[0]
        changed = [k for k, tag in etags.items() if self._etags.get(k) != tag]
        changed.sort(key=lambda k: k.endswith("manifest.json"))  # the manifest after the files it names
        fetched = 0
        for key in changed:
            dest = _local(base, key, strip)
            if dest.is_file() and _same_content(dest, etags[key]):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
            client.download_file(bucket, key, str(tmp))
            os.replace(tmp, dest)
            fetched += 1
        removed = 0
        known = set(self._etags) or {k for k in _local_keys(base, strip, prefix)}
        for key in known - set(etags):
            dest = _local(base, key, strip)
            if dest.is_file():
                dest.unlink()
                removed += 1
        self._etags = etags
        if fetched or removed:
            log.info(
                json.dumps(
                    {"event": "s3_synced", "source": self.source, "fetched": fetched, "removed": removed}
                )
            )


def _s3_etags(url: str) -> tuple[Any, dict[str, str]]:
    import boto3

    from ._s3 import parse

    bucket, prefix = parse(url)
    client = boto3.client("s3", endpoint_url=os.environ.get("ONNXFN_S3_ENDPOINT_URL") or None)
    etags = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):
                etags[obj["Key"]] = obj["ETag"]
    return client, etags


def _same_content(path: Path, etag: str) -> bool:
    """Whether ``path`` holds the object whose ETag is ``etag`` (an MD5 for single-part uploads)."""
    tag = etag.strip('"')
    if "-" in tag or len(tag) != 32:  # multipart: the ETag is not the content's MD5; fetch it
        return False
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == tag


def _local_keys(base: Path, strip: str, prefix: str) -> list[str]:
    """The S3 keys the files in the local cache stand for (for objects deleted before the first poll)."""
    if not base.is_dir() or prefix.endswith(".onnx"):
        return []
    root = strip.rstrip("/") + "/" if strip else ""
    return [
        root + str(p.relative_to(base))
        for p in base.rglob("*")
        if p.is_file() and not p.name.startswith(".") and ".part-" not in p.name
    ]


def _local(base: Path, key: str, strip: str) -> Path:
    rel = key[len(strip) :].lstrip("/") if strip else key
    dest = (base / rel).resolve()
    if base.resolve() not in dest.parents:
        raise ValueError(f"refusing S3 key {key!r}: it would land outside the cache")
    return dest
