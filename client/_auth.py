"""Authentication, applied to each attempt of a request (``requests`` auth callables).

- ``APIKeyAuth(key)``: ``x-api-key: KEY`` (onnxfn's own keys, API Gateway usage-plan keys);
- ``BearerAuth(token)``: ``Authorization: Bearer TOKEN`` (onnxfn keys, JWT/Cognito authorizers);
- ``SigV4Auth(...)``: AWS Signature Version 4 for IAM-protected API Gateway (``execute-api``) and Lambda
  Function URLs (``lambda``). Service and region come from the URL when it is an AWS host; credentials from
  the usual AWS chain (environment, ``~/.aws``, SSO, container and instance roles) through botocore
  (``pip install 'onnxfn[aws]'``), or from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` without it.
  Every attempt is signed anew (fresh ``x-amz-date``, refreshed temporary credentials).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ["APIKeyAuth", "BearerAuth", "SigV4Auth", "resolve_auth"]


class APIKeyAuth:
    """Send ``x-api-key: KEY``."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, r: Any) -> Any:
        r.headers["x-api-key"] = self.key
        return r

    def __repr__(self) -> str:
        return "APIKeyAuth(****)"


class BearerAuth:
    """Send ``Authorization: Bearer TOKEN``; ``token`` may be a callable returning a fresh token."""

    def __init__(self, token: str | Callable[[], str]) -> None:
        self.token = token

    def __call__(self, r: Any) -> Any:
        token = self.token() if callable(self.token) else self.token
        r.headers["Authorization"] = f"Bearer {token}"
        return r

    def __repr__(self) -> str:
        return "BearerAuth(****)"


_EXECUTE_API = re.compile(r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_LAMBDA_URL = re.compile(r"^[a-z0-9]+\.lambda-url\.(?P<region>[a-z0-9-]+)\.on\.aws$")
# Headers never signed: hop-by-hop ones, and ones proxies or the HTTP library may change.
_UNSIGNED = frozenset(
    {
        "accept",
        "accept-encoding",
        "baggage",
        "connection",
        "content-length",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def service_region_from_url(url: str) -> tuple[str | None, str | None]:
    """``("execute-api"|"lambda", region)`` for AWS API Gateway / Function URL hosts, else Nones."""
    host = (urlsplit(url).hostname or "").lower()
    match = _EXECUTE_API.match(host)
    if match:
        return "execute-api", match["region"]
    match = _LAMBDA_URL.match(host)
    if match:
        return "lambda", match["region"]
    return None, None


class SigV4Auth:
    """AWS Signature Version 4 (header form), the same canonical form botocore signs.

    ``service``: ``execute-api`` (API Gateway) or ``lambda`` (Function URLs); ``region``: e.g. ``eu-west-1``.
    Both default to what the URL's host says, then ``AWS_REGION``/``AWS_DEFAULT_REGION`` and
    ``execute-api`` (for custom domains). ``credentials``: ``(access_key, secret_key[, token])``, an object
    with those attributes (botocore/boto3 credentials, refreshed on each signing), or None for the chain.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        service: str | None = None,
        credentials: Any = None,
        profile: str | None = None,
    ) -> None:
        self.region = region
        self.service = service
        self.profile = profile
        self._credentials = credentials
        self._now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)

    def __repr__(self) -> str:
        return f"SigV4Auth(service={self.service!r}, region={self.region!r})"

    # -- credentials -------------------------------------------------------------------------------
    def credentials(self) -> tuple[str, str, str | None]:
        """``(access_key, secret_key, token)`` for this signing."""
        creds = self._credentials
        if creds is None:
            creds = self._credentials = _default_credentials(self.profile)
        if isinstance(creds, (tuple, list)):
            access, secret, token = (*creds, None)[:3]
            return str(access), str(secret), token
        frozen = creds.get_frozen_credentials() if hasattr(creds, "get_frozen_credentials") else creds
        return frozen.access_key, frozen.secret_key, getattr(frozen, "token", None)

    def _scope(self, url: str) -> tuple[str, str]:
        service, region = service_region_from_url(url)
        service = self.service or service or "execute-api"
        region = self.region or region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            region = _botocore_region(self.profile)
        if not region:
            raise ValueError(
                f"SigV4: cannot tell the AWS region of {url}: pass SigV4Auth(region=...) or set AWS_REGION"
            )
        return service, region

    # -- signing -----------------------------------------------------------------------------------
    def __call__(self, r: Any) -> Any:
        body = r.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, (bytes, bytearray)):
            raise TypeError("SigV4 signing needs the body as bytes (streamed bodies are not supported)")
        self.sign(r.method, r.url, r.headers, bytes(body))
        return r

    def sign(self, method: str, url: str, headers: Any, body: bytes) -> None:
        """Add ``Authorization``, ``x-amz-date``, ``x-amz-content-sha256`` (and the session token) to
        ``headers`` (a mutable mapping; names compared case-insensitively)."""
        access, secret, token = self.credentials()
        service, region = self._scope(url)
        now = self._now().astimezone(dt.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        for name in [
            k for k in headers if k.lower() in ("authorization", "x-amz-date", "x-amz-security-token")
        ]:
            del headers[name]
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        for name in [k for k in headers if k.lower() == "x-amz-content-sha256"]:
            del headers[name]
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = payload_hash
        if token:
            headers["x-amz-security-token"] = token
        canonical, signed = canonical_request(method, url, headers, payload_hash)
        scope = f"{day}/{region}/{service}/aws4_request"
        string_to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = _hmac(f"AWS4{secret}".encode(), day)
        for part in (region, service, "aws4_request"):
            key = _hmac(key, part)
        signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )


def canonical_request(method: str, url: str, headers: Any, payload_hash: str) -> tuple[str, str]:
    """The SigV4 canonical request and its SignedHeaders list."""
    parts = urlsplit(url)
    signed: dict[str, list[str]] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname in _UNSIGNED or lname == "authorization":
            continue
        signed.setdefault(lname, []).append(" ".join(str(value).split()))
    if "host" not in signed:
        signed["host"] = [_host(url)]
    names = sorted(signed)
    canonical_headers = "".join(f"{n}:{','.join(sorted(signed[n]))}\n" for n in names)
    query = ""
    if parts.query:
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        query = "&".join(f"{k}={v}" for k, _, v in sorted((k, "=", v) for k, _, v in pairs))
    signed_names = ";".join(names)
    lines = [
        method.upper(),
        _canonical_path(parts.path),
        query,
        canonical_headers,
        signed_names,
        payload_hash,
    ]
    return "\n".join(lines), signed_names


def _canonical_path(path: str) -> str:
    """RFC 3986 dot-segment removal and duplicate-slash removal, then URI-encoding (botocore's form)."""
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment and segment != ".":
            if segment == "..":
                if segments:
                    segments.pop()
            else:
                segments.append(segment)
    normal = (
        ("/" if path[0] == "/" else "") + "/".join(segments) + ("/" if path[-1] == "/" and segments else "")
    )
    return quote(normal, safe="/~")


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is not None and parts.port != default:
        host = f"{host}:{parts.port}"
    return host


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _default_credentials(profile: str | None) -> Any:
    try:
        import botocore.session
    except ImportError:
        access = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if access and secret:
            return (access, secret, os.environ.get("AWS_SESSION_TOKEN"))
        raise ValueError(
            "SigV4: no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or "
            "pip install 'onnxfn[aws]' to use profiles, SSO and instance roles"
        ) from None
    creds = botocore.session.Session(profile=profile).get_credentials()
    if creds is None:
        raise ValueError("SigV4: botocore found no AWS credentials (environment, ~/.aws, SSO, instance role)")
    return creds


def _botocore_region(profile: str | None) -> str | None:
    try:
        import botocore.session
    except ImportError:
        return None
    region = botocore.session.Session(profile=profile).get_config_variable("region")
    return region if isinstance(region, str) else None


def resolve_auth(auth: Any, url: str) -> Any:
    """``auth=`` as given to ``Client``: a callable (``requests`` auth), ``"sigv4"``/``"aws"``/``"iam"``,
    or None."""
    if auth is None or callable(auth):
        return auth
    if isinstance(auth, str) and auth.lower() in ("sigv4", "aws", "iam", "aws_iam"):
        return SigV4Auth()
    if (
        isinstance(auth, tuple)
        and len(auth) == 2
        and isinstance(auth[0], str)
        and auth[0].lower() == "bearer"
    ):
        return BearerAuth(auth[1])
    raise TypeError(
        f"auth must be 'sigv4', ('bearer', TOKEN), or an auth callable (APIKeyAuth, BearerAuth, SigV4Auth, "
        f"or any requests auth), got {auth!r}"
    )
