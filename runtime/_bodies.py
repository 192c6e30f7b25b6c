"""Predict request bodies: image bytes, JSON ``{"instances": [...]}`` or untyped (sniffed); ``top_k``."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ._errors import BadRequest, UnsupportedMediaType
from ._image import sniff_image

IMAGE_TYPES = ("image/", "application/octet-stream")


def media_type(header: str) -> str:
    return header.split(";")[0].strip().lower()


def parse_body(content_type: str, body: bytes) -> tuple[list[Any], int | None]:
    """Instances and ``top_k`` from a non-multipart body: image bytes, JSON, or sniffed when untyped."""
    if content_type.startswith(IMAGE_TYPES):
        if not body:
            raise BadRequest("empty body: send the image bytes")
        return [body], None
    if content_type in ("application/json", "text/json") or content_type.endswith("+json"):
        return parse_json(body)
    if not content_type:
        if sniff_image(body):
            return [body], None
        if body.lstrip()[:1] in (b"{", b"["):
            return parse_json(body)
        raise UnsupportedMediaType(
            "cannot tell what the body is: send an image with Content-Type image/png (or "
            'application/octet-stream), or JSON {"instances": [...]} with Content-Type application/json'
        )
    raise UnsupportedMediaType(
        f"unsupported Content-Type {content_type!r}: use image/*, application/octet-stream, "
        "multipart/form-data or application/json"
    )


def parse_top_k(query_value: str | None, body_value: int | None) -> int | None:
    """``?top_k=`` wins over the body's ``top_k``."""
    if query_value is None:
        return body_value
    if not query_value.isdigit() or int(query_value) < 1:
        raise BadRequest("top_k must be a positive integer")
    return int(query_value)


def parse_json(body: bytes) -> tuple[list[Any], int | None]:
    if not body:
        raise BadRequest('empty body: send JSON {"instances": [...]}')
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f'body is not valid JSON ({exc}): send {{"instances": [...]}}') from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest(
            'JSON body needs an "instances" list, e.g. {"instances": ["<base64 PNG>"], "top_k": 3}'
        )
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise BadRequest('"instances" must be a list')
    for i, item in enumerate(instances):  # before any size limit: a malformed body is a 400, not a 413
        if not isinstance(item, (str, list, dict)):
            raise BadRequest(
                f"instance {i} is {json.dumps(item)}: send a base64 image or a text (a string), a numeric "
                'row (a list), or an object keyed by input name ({"b64": ...} for an image)'
            )
    top_k = payload.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise BadRequest('"top_k" must be a positive integer')
    return instances, top_k


def decode_image_instances(instances: list[Any]) -> list[Any]:
    """Base64 strings (or ``{"b64": ...}``) become bytes; everything else passes through."""
    out = []
    for i, item in enumerate(instances):
        if isinstance(item, dict) and set(item) == {"b64"}:
            item = item["b64"]
        if isinstance(item, str):
            try:
                out.append(base64.b64decode(item, validate=True))
            except (binascii.Error, ValueError):
                raise BadRequest(f"instance {i} is not valid base64: encode each image with base64") from None
        else:
            out.append(item)
    return out
