"""A headless Chromium for the browser tests (the report's and the demo's): the ``driver``
fixture, screenshots (``_save``) and console errors (``_severe``). Skipped when Chromium,
chromedriver or selenium is missing.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dnnsafety.report.browser import CHROME_FLAGS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

START_TIMEOUT_S = 60
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    chromium = _find("chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium")
    chromedriver = _find("chromedriver", "/usr/bin/chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("Chromium or chromedriver is not installed")
    profile = tempfile.mkdtemp(prefix="dnnsafety-chrome-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(webdriver.Chrome, service=Service(chromedriver), options=options)
    try:
        browser = future.result(timeout=START_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        future.add_done_callback(lambda f: f.exception() is None and f.result().quit())
        pytest.fail(f"Chromium did not start within {START_TIMEOUT_S} s")
    except WebDriverException as exc:
        pytest.fail(f"Chromium could not be started: {exc.msg}")
    finally:
        pool.shutdown(wait=False)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _save(element: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"report_{name}.png"
    driver = element.parent
    driver.execute_script("document.querySelector('nav.toc').style.visibility = 'hidden'")
    try:
        assert element.screenshot(str(path)) and path.stat().st_size > 0
    finally:
        driver.execute_script("document.querySelector('nav.toc').style.visibility = ''")
    if os.environ.get("DNNSAFETY_SAVE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / path.name)


def _severe(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
