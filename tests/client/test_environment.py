"""Proxy and netrc settings from the environment, for Client (requests) and AsyncClient (aiohttp) alike.

Both transports read them once per client instead of on every call (requests and aiohttp's
``trust_env`` re-read them per request: half of requests' per-call cost, two worker-thread hops per
request in aiohttp), so these tests pin down that the settings are still honoured.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from onnxfn.client import AsyncClient, Client

from .helpers import OK_PREDICTION

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
UNREACHABLE = "http://onnxfn-target.invalid:9"  # a name that never resolves: only a proxy can answer


def _ok(seen, n):
    return 200, {}, OK_PREDICTION


def _predict_both(url: str, **kwargs) -> None:
    with Client(url, max_retries=0, **kwargs) as c:
        assert c.predict(PNG).label == "7"

    async def main() -> None:
        async with AsyncClient(url, max_retries=0, **kwargs) as c:
            assert (await c.predict(PNG)).label == "7"

    asyncio.run(main())


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    return monkeypatch


def test_http_proxy_carries_every_request(stub, clean_env):
    proxy = stub(_ok)
    clean_env.setenv("HTTP_PROXY", proxy.url)
    clean_env.setenv("http_proxy", proxy.url)
    _predict_both(UNREACHABLE)
    # A forward proxy sees the absolute URL of the target in the request line.
    assert [s.path.split("?")[0] for s in proxy.seen] == [f"{UNREACHABLE}/predict"] * 2


def test_no_proxy_goes_direct(stub, clean_env):
    proxy, target = stub(_ok), stub(_ok)
    clean_env.setenv("HTTP_PROXY", proxy.url)
    clean_env.setenv("http_proxy", proxy.url)
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    clean_env.setenv("no_proxy", "127.0.0.1")
    _predict_both(target.url)
    assert proxy.seen == [] and [s.path.split("?")[0] for s in target.seen] == ["/predict"] * 2


def test_netrc_credentials_when_nothing_else_authenticates(stub, clean_env, tmp_path):
    target = stub(_ok)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login reader password s3cret\n")
    netrc.chmod(0o600)
    clean_env.setenv("NETRC", str(netrc))
    _predict_both(target.url)
    basic = "Basic " + base64.b64encode(b"reader:s3cret").decode()
    assert [s.headers.get("authorization") for s in target.seen] == [basic] * 2

    # An explicit Authorization (here a bearer token) wins over the netrc entry.
    target.seen.clear()
    _predict_both(target.url, headers={"Authorization": "Bearer tok"})
    assert [s.headers.get("authorization") for s in target.seen][-1] == "Bearer tok"
