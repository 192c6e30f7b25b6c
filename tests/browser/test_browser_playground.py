"""The playground page (``GET /``) in chromium: digits and text through the page, errors a user can read,
the explanation overlay, the key kept in memory only, no request outside the page's origin."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from models import digit_png

pytestmark = pytest.mark.slow


def _open(tab, key: str | None = ""):
    page = tab.page
    key = tab.key if key == "" else key
    response = page.goto(tab.origin + "/")
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "connect-src 'self'" in csp
    if key is not None:
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Use key").click()
    return page


def _wait_models(page) -> None:
    page.wait_for_function("() => !document.getElementById('model').disabled")


def test_digit_png_gets_the_right_label_and_overlay(tab, digits_data, tmp_path):
    _, x_test, _, y_test = digits_data
    index = 0  # tests/runtime/test_api.py checks that the model gets this one right
    image = tmp_path / "digit.png"
    image.write_bytes(digit_png(x_test[index]))
    page = _open(tab)
    _wait_models(page)
    assert page.locator("#model").input_value() == "digits"
    page.wait_for_function("() => document.getElementById('model-info').textContent.includes('image-class')")
    page.locator("#file").set_input_files(str(image))  # the file picker; a change event predicts
    top = page.locator("#topk li").first.locator(".name")
    top.wait_for()
    assert top.inner_text() == str(y_test[index])
    assert page.locator("#topk li").count() == 5
    # The explanation overlay toggle: an image appears in place of the preview, and goes again.
    page.get_by_label("Show explanation overlay").check()
    overlay = page.locator("#overlay")
    overlay.wait_for(state="visible")
    src = overlay.get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    from PIL import Image

    shown = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert shown.format == "PNG" and max(shown.size) >= 224
    page.wait_for_function("() => document.getElementById('overlay').naturalWidth >= 224")  # decoded, shown
    assert page.locator("#preview").is_hidden()
    assert f"Evidence for “{y_test[index]}”" in page.locator("#caption").inner_text()
    screenshot = tmp_path / "playground-digits.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
    page.get_by_label("Show explanation overlay").uncheck()
    overlay.wait_for(state="hidden")
    assert page.locator("#preview").is_visible()
    # The key stayed in memory: no storage, no cookie.
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert tab.context.cookies() == []
    assert tab.key not in page.evaluate("document.documentElement.outerHTML")
    assert tab.unexpected_console_errors() == []


def test_text_model_gets_a_label_and_word_scores(tab, tmp_path):
    page = _open(tab)
    _wait_models(page)
    page.get_by_label("Model", exact=True).select_option("topics")
    text = page.get_by_label("Text", exact=True)
    text.wait_for(state="visible")
    assert page.locator("#drop").is_hidden()
    text.fill("Our team scored a late goal to win the match")
    page.get_by_role("button", name="Predict").click()
    top = page.locator("#topk li").first.locator(".name")
    top.wait_for()
    assert top.inner_text() == "sports"
    page.get_by_label("Show explanation overlay").check()
    words = page.locator("#tokens span")
    words.first.wait_for()
    assert words.count() == 10
    scores = {w.inner_text(): float(w.get_attribute("title")) for w in words.all()}
    assert max(scores, key=scores.get) in {"team", "scored", "goal", "win", "match"}
    page.screenshot(path=str(tmp_path / "playground-text.png"), full_page=True)
    assert tab.unexpected_console_errors() == []


def test_drag_and_drop_an_image(tab, digits_data):
    _, x_test, _, y_test = digits_data
    png = base64.b64encode(digit_png(x_test[0])).decode()
    page = _open(tab)
    _wait_models(page)
    page.evaluate(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            const drop = document.getElementById("drop");
            drop.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
            drop.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""",
        png,
    )
    top = page.locator("#topk li").first.locator(".name")
    top.wait_for()
    assert top.inner_text() == str(y_test[0])
    assert "dropped.png" in page.locator("#file-name").inner_text()
    assert tab.unexpected_console_errors() == []


def test_wrong_or_missing_key_is_a_clear_error(tab):
    page = _open(tab, key=None)
    page.wait_for_function("() => document.getElementById('status').textContent.includes('needs an API key')")
    assert page.evaluate("document.activeElement.id") == "api-key"
    error = page.get_by_role("alert")
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_label("API key").press("Enter")  # the keyboard works: Enter submits the key form
    page.wait_for_function("() => document.getElementById('error').textContent.includes('Wrong API key')")
    assert "invalid API key" in error.inner_text()
    # The browser logs the 401 answers themselves; nothing else.
    assert tab.unexpected_console_errors("status of 401") == []
    page.get_by_label("API key").fill(tab.key)
    page.get_by_role("button", name="Use key").click()
    _wait_models(page)
    assert error.is_hidden()


def test_not_an_image_and_too_large_are_clear_errors(tab, tmp_path):
    page = _open(tab)
    _wait_models(page)
    notes = tmp_path / "notes.txt"
    notes.write_text("just words")
    page.locator("#file").set_input_files(str(notes))
    error = page.get_by_role("alert")
    error.wait_for()
    assert "“notes.txt” is not an image" in error.inner_text()
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"this is not really a PNG file")
    page.locator("#file").set_input_files(str(fake))
    page.wait_for_function("() => document.getElementById('error').textContent.includes('could not use')")
    assert "body is not an image" in error.inner_text()
    from PIL import Image

    big = tmp_path / "big.png"
    noise = np.random.default_rng(0).integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big)
    assert big.stat().st_size > 150_000
    page.locator("#file").set_input_files(str(big))
    page.wait_for_function("() => document.getElementById('error').textContent.includes('Too large')")
    assert "ONNXFN_MAX_BODY_BYTES" in error.inner_text()
    assert tab.unexpected_console_errors("status of 400", "status of 413") == []


def test_every_control_has_a_label_and_takes_keyboard_focus(tab):
    page = _open(tab)
    _wait_models(page)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
              .filter(el => !(el.labels && el.labels.length) && !el.textContent.trim())
              .map(el => el.id)"""
    )
    assert unlabelled == []
    focused = []
    for _ in range(8):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert {"api-key", "model", "file"} <= set(focused), focused
    assert re.search(r"onnxfn playground", page.title())
