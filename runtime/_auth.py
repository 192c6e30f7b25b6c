"""API keys: clients send ``x-api-key: KEY`` or ``Authorization: Bearer KEY``; the server knows only
sha256 hex digests of the accepted keys (``ONNXFN_API_KEY_HASHES``) and compares in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Open without a key: health, the API description, and the pages a browser opens (the playground, the docs)
# with their static assets. The API calls those pages make need a key like any other.
OPEN_PATHS = frozenset(
    {"/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/"}
)
OPEN_PREFIXES = ("/static/",)


def is_open(path: str, open_paths: frozenset[str] = OPEN_PATHS) -> bool:
    """True for the routes anyone may call (``open_paths``, and files under ``OPEN_PREFIXES``)."""
    return path in open_paths or (path.startswith(OPEN_PREFIXES) and ".." not in path)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key and its sha256 digest (what ``onnxfn keygen`` prints)."""
    key = "onnxfn_" + secrets.token_urlsafe(32)
    return key, hash_key(key)


def key_from_headers(headers: dict[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authorized(key: str | None, hashes: tuple[str, ...]) -> bool:
    """True when ``key`` hashes to one of ``hashes``. Every hash is compared, so timing leaks nothing."""
    if not key:
        return False
    digest = hash_key(key).encode()
    ok = False
    for expected in hashes:
        ok |= hmac.compare_digest(digest, expected.encode())
    return ok
