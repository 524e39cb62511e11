"""report.html of a real run in headless Chromium (Debian's, driven by Playwright): it loads
with no console error and no request, every image shows, each section is there, the
per-class table sorts, and nothing overflows a phone's 375 px."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# CI always has it (.ci/run installs it): there a missing browser fails instead of skipping.
_needs = pytest.mark.skipif(not Path(CHROMIUM).is_file() and not os.environ.get("CI"),
                            reason="needs Debian's chromium package (.ci/run installs it)")
pytestmark = [pytest.mark.browser, pytest.mark.slow, _needs]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SECTIONS = ("summary", "per-class", "confusion", "curves", "mistakes", "confused-pairs",
            "calibration", "dataset")
PHONE_WIDTH = 375


@pytest.fixture(scope="module")
def run_report(digits_run: Path) -> Path:
    """The report training wrote for the shared digits run's best model on its test split."""
    return digits_run / "report.html"


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser, report: Path, width: int):
    """A page showing `report`, with the console errors and requests it made."""
    page = browser.new_page(viewport={"width": width, "height": 800})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url)
            if not request.url.startswith("data:") else None)
    page.goto(report.as_uri(), wait_until="load")
    return page, errors, requests


def test_report_loads_every_image_and_section(browser, run_report: Path) -> None:
    page, errors, requests = _open(browser, run_report, 1200)
    assert errors == []
    assert requests == [run_report.as_uri()]  # the page itself and nothing else
    images = page.evaluate("""Array.from(document.images).map(
        image => ({alt: image.alt, loaded: image.complete && image.naturalWidth > 0}))""")
    assert len(images) > 5
    assert [image["alt"] for image in images if not image["loaded"]] == []
    for section in SECTIONS:
        assert page.locator(f"section#{section}").count() == 1, section
        assert page.locator(f"section#{section} h2").is_visible(), section
    assert page.locator("#mistakes figure.mistake").count() > 0
    page.close()


def test_per_class_table_sorts_on_click(browser, run_report: Path) -> None:
    page, errors, _ = _open(browser, run_report, 1200)
    column = "#per-class td[data-column='f1']"

    def f1_values() -> list[float]:
        return [float(value) for value in
                page.locator(column).evaluate_all("cells => cells.map(c => c.dataset.value)")]

    page.get_by_role("button", name="f1").click()
    assert f1_values() == sorted(f1_values())
    page.get_by_role("button", name="f1").click()
    assert f1_values() == sorted(f1_values(), reverse=True)
    assert errors == []
    page.close()


def test_nothing_overflows_a_phone_screen(browser, run_report: Path) -> None:
    page, errors, _ = _open(browser, run_report, PHONE_WIDTH)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH + 1, f"the page is {width} px wide at {PHONE_WIDTH} px"
    assert errors == []
    page.close()


def test_report_numbers_match_the_run_metrics(digits_run: Path, run_report: Path) -> None:
    """The run's metrics.json, recomputed here from the same model: the page shows these."""
    metrics = json.loads((digits_run / "metrics.json").read_text())
    html = run_report.read_text()
    assert f'data-metric="accuracy" data-value="{metrics["accuracy"]}"' in html
    assert np.isclose(metrics["accuracy"], np.trace(metrics["confusion_matrix"])
                      / metrics["num_samples"])
