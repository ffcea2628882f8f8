"""The report in a real browser: no console errors, no injected script, a working map tooltip.

Needs Chromium, chromedriver and selenium; skipped when one is missing. Set
``DNNSAFETY_SAVE_SCREENSHOTS=1`` to also write the screenshots to ``docs/img/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from browser_support import _save, _severe, driver  # noqa: F401 - the driver fixture
from dnnsafety.report import render_report
from report_runs import make_run

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # a real browser / the whole demo


@pytest.fixture(scope="module")
def page(driver: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:  # noqa: F811
    run = make_run(tmp_path_factory.mktemp("browser") / "run", full=True)
    driver.get(render_report(run).as_uri())
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    return driver


def test_page_loads_without_errors_and_has_its_parts(page: Any, tmp_path: Path) -> None:
    with pytest.raises(NoAlertPresentException):
        page.switch_to.alert.text  # noqa: B018 - the access raises when there is no alert
    assert _severe(page) == []
    ids = [s.get_attribute("id") for s in page.find_elements(By.CSS_SELECTOR, "section.part")]
    assert ids == ["summary", "performance", "clusters", "layers", "map", "retraining"]
    nav = page.find_elements(By.CSS_SELECTOR, "nav.toc a")
    assert [a.get_attribute("href").rsplit("#", 1)[1] for a in nav] == ids
    assert len(page.find_elements(By.CSS_SELECTOR, "article.card.cluster")) == 2
    assert len(page.find_elements(By.CSS_SELECTOR, "#map svg circle")) == 10
    table = page.find_element(By.CSS_SELECTOR, "#retraining table")
    assert "ClosestU" in table.text and "91.2%" in table.text
    _save(page.find_element(By.TAG_NAME, "header"), tmp_path, "header")
    for name in ("clusters", "map", "retraining"):
        _save(page.find_element(By.ID, name), tmp_path, name)


def test_hostile_strings_are_shown_as_text(page: Any) -> None:
    cells = page.find_elements(By.CSS_SELECTOR, "#performance td, #performance th")
    hostile = [c for c in cells if "<script>alert(1)</script>" in c.text]
    assert hostile, "the hostile class name should be visible as text"
    assert page.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    assert page.find_elements(By.CSS_SELECTOR, "[onerror]") == []
    assert len(page.find_elements(By.TAG_NAME, "script")) == 2
    with pytest.raises(NoAlertPresentException):
        page.switch_to.alert.text  # noqa: B018


def test_hovering_a_map_point_shows_its_thumbnail(page: Any, tmp_path: Path) -> None:
    tip = page.find_element(By.ID, "map-tip")
    assert not tip.is_displayed()
    dot = page.find_element(By.CSS_SELECTOR, "#map circle[data-c='0']")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", dot)
    ActionChains(page).move_to_element(dot).perform()
    WebDriverWait(page, 5).until(lambda d: tip.is_displayed())
    assert "cluster 0" in tip.text
    thumb = tip.find_element(By.CLASS_NAME, "thumb")
    assert thumb.is_displayed()
    assert "data:image/png;base64," in thumb.value_of_css_property("background-image")
    _save(page.find_element(By.CSS_SELECTOR, "#map .map-wrap"), tmp_path, "map_hover")
    hostile = page.find_element(By.CSS_SELECTOR, "#map circle[data-i='9']")
    ActionChains(page).move_to_element(hostile).perform()
    WebDriverWait(page, 5).until(lambda d: "<script>" in tip.text)
    assert _severe(page) == []


def test_contact_sheet_toggle_and_lightbox(page: Any) -> None:
    button = page.find_element(By.CSS_SELECTOR, "#cluster-0 button.toggle")
    sheet = page.find_element(By.ID, "sheet-0")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    assert "collapsed" in sheet.get_attribute("class")
    button.click()
    assert "collapsed" not in sheet.get_attribute("class")
    assert button.text == "Show less"
    sheet.find_element(By.TAG_NAME, "img").click()
    box = page.find_element(By.ID, "lightbox")
    WebDriverWait(page, 5).until(lambda d: box.is_displayed())
    box.click()
    WebDriverWait(page, 5).until(lambda d: not box.is_displayed())
    assert _severe(page) == []
