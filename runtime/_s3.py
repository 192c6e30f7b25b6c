"""``s3://bucket/prefix`` model sources: downloaded once into a local cache (``/tmp`` on Lambda)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("onnxfn.runtime")


def parse(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"s3 URL {url!r} has no bucket")
    return bucket, prefix


def download(url: str, *, cache_dir: str | Path | None = None) -> Path:
    """Fetch every object under the prefix (a single ``.onnx`` key, or a folder) once; return the local path.

    The cache lives under ``$ONNXFN_CACHE_DIR`` or the temp dir (``/tmp`` on Lambda), keyed by the URL, so a
    warm Lambda container, or a second process on the same host, reuses it.
    """
    import boto3  # only S3 sources need it: `pip install onnxfn[aws]`

    bucket, prefix = parse(url)
    base = Path(cache_dir or os.environ.get("ONNXFN_CACHE_DIR") or tempfile.gettempdir()) / "onnxfn-models"
    target = base / hashlib.sha256(url.encode()).hexdigest()[:16]
    done = target / ".complete"
    if done.exists():
        return _single_or_dir(target, prefix)
    client = boto3.client("s3", endpoint_url=os.environ.get("ONNXFN_S3_ENDPOINT_URL") or None)
    paginator = client.get_paginator("list_objects_v2")
    keys = [
        obj["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
        if not obj["Key"].endswith("/")
    ]
    if not keys:
        raise FileNotFoundError(f"nothing under {url}: upload NAME.onnx files and manifest.json there")
    target.mkdir(parents=True, exist_ok=True)
    root = prefix if prefix.endswith("/") or len(keys) > 1 else prefix.rpartition("/")[0]
    for key in keys:
        rel = key[len(root) :].lstrip("/") if root else key
        dest = (target / rel).resolve()
        if target.resolve() not in dest.parents:
            raise ValueError(f"refusing S3 key {key!r}: it would land outside the cache")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        client.download_file(bucket, key, str(tmp))
        os.replace(tmp, dest)
    done.write_text(url)
    log.info('{"event": "s3_downloaded", "objects": %d}', len(keys))
    return _single_or_dir(target, prefix)


def _single_or_dir(target: Path, prefix: str) -> Path:
    if prefix.endswith(".onnx"):
        return target / prefix.rpartition("/")[2]
    return target
