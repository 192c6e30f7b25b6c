"""``/docs`` (Swagger UI) renders the API in chromium with no request leaving the server: its assets
come from the package, not from a CDN (FastAPI's default is a blank page offline)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_swagger_ui_renders_the_operations_offline(tab, tmp_path):
    page = tab.page
    response = page.goto(tab.origin + "/docs")
    assert response.status == 200 and "script-src 'self';" in response.headers["content-security-policy"]
    page.get_by_text("/v2/health/live", exact=True).wait_for()
    assert page.get_by_text("KServe V2 inference", exact=True).first.is_visible()
    assert page.get_by_text("/v1/models/{name}:explain", exact=True).is_visible()
    assert page.get_by_role("button", name="Authorize").is_visible()  # the API key scheme is offered
    page.screenshot(path=str(tmp_path / "docs.png"))
    assets = [u for u in tab.requests if "/static/docs/" in u]
    assert any(u.endswith("swagger-ui-bundle.js") for u in assets) and any(u.endswith(".css") for u in assets)
    assert tab.unexpected_console_errors() == []


def test_redoc_is_not_served(tab):
    """ReDoc's bundle fetches its logo from a CDN: there is no /redoc rather than a page that leaks."""
    assert tab.page.goto(tab.origin + "/redoc").status in (401, 404)
