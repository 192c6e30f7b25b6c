"""A real browser (Debian's chromium, driven by Playwright) against a real ``onnxfn serve`` on 127.0.0.1.

Playwright's own browser download cannot run here, so the tests use ``/usr/bin/chromium`` (``.ci/run``
installs the Debian package when it is missing) and skip, saying so, only when it is absent. Each test gets
a fresh profile (user-data-dir), a log of every request the page makes (anything leaving the server's
origin is blocked and recorded) and of console errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("ONNXFN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
API_KEY = "playground-test-key"


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium; .ci/run does)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def playwright(chromium_path):
    """Module-scoped: Playwright's sync API runs an asyncio loop in this thread while it is started, which
    would break later tests that run their own loop (Mangum's handler)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser_models(tmp_path_factory) -> Path:
    """digits (image, logistic regression on real digits) and topics (text, bag of words)."""
    from models import digits_logreg, topics_bow
    from onnxfn.runtime import write_manifest

    root = tmp_path_factory.mktemp("browser-models")
    digits_logreg(root / "digits.onnx")
    topics_bow(root / "topics.onnx")
    write_manifest(root)
    return root


@pytest.fixture(scope="session")
def server(browser_models):
    """``onnxfn serve`` with an API key and a 150 kB body limit (so "too large" is easy to reach)."""
    from onnxfn.runtime._auth import hash_key
    from servers import onnxfn_serve

    env = {"ONNXFN_API_KEY_HASHES": hash_key(API_KEY)}
    args = ("--default-model", "digits", "--max-body-bytes", "150000", "--threads", "1")
    with onnxfn_serve(browser_models, *args, env=env) as (url, _):
        yield url


@dataclass
class Tab:
    """A page in a fresh browser profile, with what it requested and what it logged."""

    page: Any
    context: Any
    origin: str
    key: str = API_KEY
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def unexpected_console_errors(self, *allowed: str) -> list[str]:
        return [e for e in self.console_errors if not any(a in e for a in allowed)]


@pytest.fixture
def tab(playwright, chromium_path, server, tmp_path):
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(chromium_path),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1200, "height": 820},
        service_workers="block",
    )
    t = Tab(page=None, context=context, origin=server)

    def gate(route):
        request_url = route.request.url
        if request_url.startswith(server + "/") or request_url == server:
            route.continue_()
        else:
            t.blocked.append(request_url)
            route.abort()

    context.route("**/*", gate)
    context.on("request", lambda request: t.requests.append(request.url))
    page = context.pages[0] if context.pages else context.new_page()
    page.on("console", lambda msg: t.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: t.console_errors.append(f"pageerror: {exc}"))
    page.set_default_timeout(20_000)
    t.page = page
    try:
        yield t
    finally:
        context.close()
    assert not t.blocked, f"the page tried to leave its origin: {t.blocked}"
    outside = [u for u in t.requests if not u.startswith((server + "/", "data:", "blob:"))]
    assert not outside, f"requests outside {server}: {outside}"
