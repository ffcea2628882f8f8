"""The demo's full loop on a small dataset, and its report in a real browser."""

from __future__ import annotations

import json
from typing import Any

import pytest

from browser_support import _save, _severe, driver  # noqa: F401 - the driver fixture
from dnnsafety.cli.main import main

pytestmark = pytest.mark.slow  # a real browser / the whole demo

By = pytest.importorskip("selenium.webdriver.common.by").By


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("demo") / "run"
    argv = ["--quiet", "demo", "--out", str(run), "--dataset", "digits"]
    argv += ["--set", "train.epochs=3", "--set", "retrain.epochs=1"]
    assert main(argv) == 0
    return run


def test_demo_runs_every_stage_and_prints_the_report_path(demo_run, capsys):
    stages = json.loads((demo_run / "stages.json").read_text())
    assert {"train", "evaluate", "analyze"} <= set(stages)
    # the detection, bias and robustness stages ran and wrote their artifacts
    for name in ("detection.json", "bias.json", "robustness.json"):
        assert (demo_run / name).is_file(), name
    # the second analysis (HUDD beside the black-box default) and its agreement
    alt = demo_run / "analysis" / "alt" / "hudd"
    assert json.loads((alt / "clusters.json").read_text())["method"] == "hudd"
    assert (alt / "agreement.json").is_file() and (alt / "agreement.png").is_file()
    comparison = json.loads((demo_run / "comparison.json").read_text())
    assert set(comparison["strategies"]) == {"closest", "random", "entropy"}
    assert (demo_run / "report.html").is_file()
    # a rerun reuses everything and ends with the report path
    argv = ["demo", "--out", str(demo_run), "--dataset", "digits"]
    assert main([*argv, "--set", "train.epochs=3", "--set", "retrain.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "Open the report: file://" in out and "report.html" in out


def test_demo_report_in_chromium(demo_run, driver: Any, tmp_path):  # noqa: F811
    driver.get((demo_run / "report.html").as_uri())
    assert _severe(driver) == []
    ids = [s.get_attribute("id") for s in driver.find_elements(By.CSS_SELECTOR, "section.part")]
    assert ids == [
        "summary",
        "performance",
        "clusters",
        "agreement",
        "map",
        "detection",
        "bias",
        "retraining",
        "robustness",
    ]
    main_cards = driver.find_elements(By.CSS_SELECTOR, "#clusters article.card.cluster")
    assert len(main_cards) == len(json.loads((demo_run / "clusters.json").read_text())["clusters"])
    assert "adjusted Rand index" in driver.find_element(By.ID, "agreement").text
    assert driver.find_elements(By.CSS_SELECTOR, "#map svg circle")
    retraining = driver.find_element(By.ID, "retraining").text
    assert "closest" in retraining and "random" in retraining and "entropy" in retraining
    _save(driver.find_element(By.TAG_NAME, "main"), tmp_path, "demo")
