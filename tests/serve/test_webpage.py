"""The web page in headless Chromium at a phone's viewport: it asks for the API key once,
uploads a photo through the file input, and shows the label, bars and latency."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from imgcls.data.sources import load_source
from imgcls.predict.predictor import Predictor
from imgcls.serve import ServeSettings, create_app
from imgcls.serve.live import running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

_needs = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium here")
pytestmark = [pytest.mark.browser, pytest.mark.slow, _needs]


@pytest.fixture(scope="module")
def server(digits_run: Path) -> Iterator[str]:
    with running(create_app(digits_run, ServeSettings(api_key="phone-key"))) as base_url:
        yield base_url


def test_phone_upload_shows_the_label(server: str, digits_run: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    photo = tmp_path / "photo.png"
    Image.fromarray(load_source("digits").images[3, 0].numpy()).resize((96, 96)).save(photo)
    expected = Predictor(digits_run, device="cpu").predict(photo)[0].label
    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 812},
                                    device_scale_factor=2, is_mobile=True, has_touch=True)
            local = (server, f"blob:{server}")  # blob: is the photo's own preview
            page.on("request", lambda request: None if request.url.startswith(local)
                    else outside.append(request.url))
            page.goto(server + "/", timeout=20_000)
            page.wait_for_selector("#keyform", state="visible", timeout=10_000)  # 401 seen
            page.fill("#key", "phone-key")
            page.click("#keyform button")
            page.wait_for_function("document.getElementById('model').textContent"
                                   ".includes('10 classes')", timeout=10_000)
            camera = page.locator("#camera")
            assert camera.get_attribute("accept") == "image/*"
            assert camera.get_attribute("capture") == "environment"
            camera.set_input_files(str(photo))
            page.wait_for_selector("#result:not([hidden])", timeout=10_000)
            assert page.text_content("#label") == expected
            assert page.locator(".bar").count() == 5
            assert "ms" in page.text_content("#latency")
            assert page.evaluate("sessionStorage.getItem('imgcls-api-key')") == "phone-key"
            assert not page.is_visible("#keyform")  # asked once, not again
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375  # nothing sticks out sideways on a phone
        finally:
            browser.close()
    assert outside == []  # no external network resources
