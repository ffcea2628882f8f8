"""Screenshots of a run's report.html in headless Chromium, for the docs.

Usage: .venv/bin/python scripts/screenshot_report.py RUN_DIR OUT_DIR

Writes OUT_DIR/report_full.png (the top of the page) and one PNG per section
(report_<section>.png). Needs Debian's chromium and chromium-driver (installed by
`scripts/setup.sh dev`) and selenium.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from dnnsafety.report.browser import CHROME_FLAGS

FLAGS = (*CHROME_FLAGS, "--window-size=1400,1100", "--hide-scrollbars")


def main(run_dir: str, out_dir: str) -> None:
    report = Path(run_dir) / "report.html"
    if not report.is_file():
        raise SystemExit(f"{report} does not exist: run `dnnsafety report {run_dir}` first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="dnnsafety-shot-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(report.resolve().as_uri())
        driver.save_screenshot(str(out / "report_full.png"))
        driver.execute_script("document.querySelector('nav.toc').style.visibility = 'hidden'")
        for section in driver.find_elements(By.CSS_SELECTOR, "section.part"):
            name = section.get_attribute("id")
            section.screenshot(str(out / f"report_{name}.png"))
            print(out / f"report_{name}.png")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
