"""``compare`` measures every model's robust accuracy when a compared strategy trains against
an attack (``[retrain] robust``): same inputs and attack seed for the original, every run and
the control; shown in the terminal and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dnnsafety.adversarial import ATTACKS, robust_accuracy
from dnnsafety.cli.main import main
from dnnsafety.config import RunConfig, dump_config, load_config
from dnnsafety.data.builtin import load_dataset
from dnnsafety.exceptions import ConfigError
from dnnsafety.models.training import predict
from dnnsafety.pipeline import Pipeline
from dnnsafety.pipeline.robust_eval import (
    DEFAULT_ROBUST_EPS,
    RobustEval,
    RobustScorer,
    robust_eval,
)
from dnnsafety.report.render import _render_section
from dnnsafety.report.sections import SECTIONS
from dnnsafety.runs import RunDir

FAST = ["--dataset", "digits", "--epochs", "3", "--set", "train.batch_size=64"]


def _pipeline(gradients: bool = True, **retrain: object) -> SimpleNamespace:
    config = RunConfig()
    for key, value in retrain.items():
        setattr(config.retrain, key, value)
    support = SimpleNamespace(gradients=gradients)
    return SimpleNamespace(config=config, support=support, run=Path("RUN"))


def test_auto_measures_only_beside_a_strategy_that_trains_against_an_attack() -> None:
    assert robust_eval(_pipeline(), ["random", "closest", "augmix"]) is None  # type: ignore[arg-type]
    spec = robust_eval(_pipeline(), ["random", "adversarial"])  # type: ignore[arg-type]
    assert spec is not None and spec.eps == pytest.approx(8 / 255) and spec.n == 500
    custom = _pipeline(params={"adversarial": {"eps": 0.1}}, robust_n=40)
    spec = robust_eval(custom, ["adversarial"])  # type: ignore[arg-type]
    assert spec is not None and (spec.eps, spec.n, spec.attack, spec.steps) == (0.1, 40, "pgd", 10)
    always = robust_eval(_pipeline(robust="always"), ["random"])  # type: ignore[arg-type]
    assert always is not None and always.eps == DEFAULT_ROBUST_EPS
    assert robust_eval(_pipeline(robust="never"), ["adversarial"]) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "gradients", "message"),
    [
        ({"robust": "yes"}, True, "retrain.robust must be one of auto, always, never"),
        ({"robust_n": 0}, True, "retrain.robust_n"),
        ({"params": {"adversarial": {"eps": 2.0}}}, True, "eps"),
        ({"robust": "always"}, False, "--attack square"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(settings, gradients, message) -> None:
    with pytest.raises(ConfigError, match=message):
        robust_eval(_pipeline(gradients, **settings), ["adversarial"])  # type: ignore[arg-type]


def test_robust_accuracy_matches_the_attack_library_and_falls_with_the_budget(digits) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    images, labels = digits.images[:80], np.asarray(digits.labels[:80])
    spec = RobustEval(eps=8 / 255, n=80, seed=3)
    pgd = ATTACKS.create("pgd", {"steps": 10})
    expected = robust_accuracy(model, pgd, images, labels, [8 / 255], 3)[0]["robust_accuracy"]
    assert spec.accuracy(model, images, labels) == pytest.approx(expected)
    clean = float((predict(model, images).pred == labels).mean())
    tiny = RobustEval(eps=1e-7, n=80, seed=3).accuracy(model, images, labels)
    huge = RobustEval(eps=0.5, n=80, seed=3).accuracy(model, images, labels)
    assert tiny == pytest.approx(clean) and huge < clean


def test_the_attacked_subset_is_seeded_and_capped_by_the_split(digits) -> None:
    a = RobustEval(eps=0.03, n=30, seed=1).inputs(digits)
    b = RobustEval(eps=0.03, n=30, seed=1).inputs(digits)
    assert a[0].shape[0] == 30 and torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert RobustEval(eps=0.03, n=10**6, seed=1).inputs(digits)[0].shape[0] == len(digits)
    # the figures say how many inputs were attacked, not how many were asked for
    scorer = RobustScorer(RobustEval(eps=0.03, n=10**6, seed=1), digits)
    assert scorer.spec is not None and scorer.spec.n == len(digits)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(RunConfig().data.__class__(name="digits"), 0)["test"]


def test_compare_with_adversarial_fine_tuning_reports_robust_accuracy(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    argv = ["--quiet", "compare", str(run), "--strategies", "adversarial,random"]
    argv += ["--budget", "20", "--seeds", "1", "--set", "retrain.epochs=1"]
    argv += ["--set", "retrain.robust_n=60", "--set", "retrain.params.adversarial={steps = 1}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "robust accuracy (PGD-10, 8/255) on 60 test inputs" in out
    # each run's line gives its robust accuracy and the attack's time (not in "done in")
    done = re.findall(r"done in \d+s, test accuracy [\d.]+%(.*)", (run / "run.log").read_text())
    note = r", robust accuracy [\d.]+% \(PGD-10: \d+s\)"
    assert len(done) == 3 and all(re.fullmatch(note, d) for d in done)
    data = json.loads((run / "comparison.json").read_text())
    assert data["robust"] == {"eps": 8 / 255, "n": 60, "seed": 0, "attack": "pgd", "steps": 10}
    assert data["settings"]["strategies"] == ["adversarial", "random"]  # not the config default
    runs = [r for s in data["strategies"].values() for r in s["runs"]] + data["control"]["runs"]
    assert len(runs) == 3 and all(0 <= r["robust_accuracy"] <= 1 for r in runs)
    for entry in [*data["strategies"].values(), data["control"]]:
        assert entry["summary"]["robust_accuracy"]["mean"] == entry["runs"][0]["robust_accuracy"]
    # the original's figure is the attack's on the same seeded subset of the test split
    pipe = Pipeline(RunDir(run), load_config(run / "config.toml"))
    spec = RobustEval(**data["robust"])
    images, labels = spec.inputs(pipe.dataset["test"])
    assert data["original"]["robust_accuracy"] == pytest.approx(
        spec.accuracy(pipe.model(), images, labels)
    )
    clean = float((predict(pipe.model(), images).pred == labels).mean())
    assert data["original"]["robust_accuracy"] <= clean

    html = str(_render_section(SimpleNamespace(comparison=data), SECTIONS["retraining"])["html"])  # type: ignore[arg-type,index]
    assert "robust accuracy (PGD-10, 8/255)" in html and "of 60 test" in html

    # turned off: no robust figures, and the runs are new ones (their fingerprint differs)
    assert main([*argv, "--set", "retrain.robust=never"]) == 0
    plain = json.loads((run / "comparison.json").read_text())
    assert "robust" not in plain and "robust_accuracy" not in plain["original"]
    assert all("robust_accuracy" not in r for r in plain["strategies"]["random"]["runs"])
    assert "robust" not in capsys.readouterr().out
    assert reused(run) == 0
    # said once (the check before the analysis stays silent), with where the setting lives
    assert (run / "run.log").read_text().count("robust accuracy: not measured") == 1
    # on again (a --set is saved in the run's config.toml, so it is set back): the three runs
    # with robust accuracy are reused, figures and all
    assert main([*argv, "--set", "retrain.robust=auto"]) == 0
    assert reused(run) == 3 and json.loads((run / "comparison.json").read_text()) == data


def reused(run) -> int:
    log = (run / "run.log").read_text()
    return len(re.findall(r"fine-tune \d+/\d+ \([^)]*, seed \d+\): reused", log))


def test_the_report_drops_the_scenario_columns_but_keeps_the_robust_one() -> None:
    ci = {"mean": 0.5, "low": None, "high": None}
    summary = {"overall": ci, "rare": ci, "robust_accuracy": {**ci, "mean": 0.25}}
    run = {"seed": 0, "overall": 0.5, "robust_accuracy": 0.25, "improved": 1, "worsened": 0}
    data = {
        "budget": 0,
        "seeds": [0],
        "scenarios": ["unknown"],
        "original": {"overall": 0.9, "robust_accuracy": 0.1, "per_scenario": {}},
        "strategies": {"adversarial": {"cost": 0, "runs": [run], "summary": summary}},
        "robust": {"eps": 8 / 255, "n": 50, "seed": 0, "attack": "pgd", "steps": 10},
    }
    context = SECTIONS["retraining"].build(SimpleNamespace(comparison=data))  # type: ignore[arg-type]
    assert context is not None
    table = context["main_table"]
    headers = [h.text for h in table.headers]
    assert headers[:4] == ["strategy", "labels spent", "overall", "robust accuracy (PGD-10, 8/255)"]
    assert "rare scenarios" not in headers and len(table.rows[1]) == len(headers)
    assert "25.0%" in table.rows[1][3].text and "10.0%" in table.rows[0][3].text


def test_a_bad_robust_setting_fails_before_the_analysis(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    before = sorted(p.name for p in run.iterdir())
    argv = ["--quiet", "compare", str(run), "--strategies", "closest,adversarial"]
    assert main([*argv, "--set", "retrain.robust=sometimes"]) != 0
    assert "retrain.robust must be one of auto, always, never" in capsys.readouterr().err
    # nothing was analysed or compared (the analysis would add its clusters and features)
    assert sorted(p.name for p in run.iterdir()) == before


def test_runs_scored_without_robust_accuracy_are_reused_whatever_robust_says(tmp_path) -> None:
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    argv = ["--quiet", "compare", str(run), "--strategies", "random", "--budget", "20"]
    argv += ["--seeds", "1", "--set", "retrain.epochs=1"]
    assert main(argv) == 0 and reused(run) == 0
    # nothing measures robust accuracy in either: the saved runs (random, control) are reused
    assert main([*argv, "--set", "retrain.robust_n=77"]) == 0 and reused(run) == 2
    assert main([*argv, "--set", "retrain.robust=never"]) == 0 and reused(run) == 4
    # measured now: new runs, with the figure
    assert main([*argv, "--set", "retrain.robust=always"]) == 0 and reused(run) == 4
    data = json.loads((run / "comparison.json").read_text())
    (first,) = data["strategies"]["random"]["runs"]
    assert data["robust"]["n"] == 77 and "robust_accuracy" in first


# (a bad mitigation parameter is saved, and its error says where: test_saved_params_hint.py)
@pytest.mark.parametrize("setting", ["retrain.robust=yes", "retrain.robust_n=0"])
def test_a_bad_robust_setting_is_not_saved_in_the_run_config(tmp_path, capsys, setting) -> None:
    # a saved bad value would fail every later compare of the folder, even without --set
    run = tmp_path / "run"
    run.mkdir()
    saved = dump_config(RunConfig())
    (run / "config.toml").write_text(saved, encoding="utf-8")
    for command in (["compare", str(run), "--strategies"], ["mitigate", str(run), "--strategy"]):
        argv = ["--quiet", *command, "adversarial", "--set", setting]
        assert main(argv) != 0
        assert "retrain.robust" in capsys.readouterr().err
        assert (run / "config.toml").read_text(encoding="utf-8") == saved


def test_robust_never_beside_adversarial_says_where_it_comes_from_and_the_fix(caplog) -> None:
    # a --set is saved in config.toml: a later compare drops the column without a --set
    with caplog.at_level("INFO", logger="dnnsafety.pipeline.robust_eval"):
        assert robust_eval(_pipeline(robust="never"), ["adversarial"]) is None  # type: ignore[arg-type]
        assert robust_eval(_pipeline(robust="never"), ["random"]) is None  # type: ignore[arg-type]
    said = [r.getMessage() for r in caplog.records if "not measured" in r.getMessage()]
    assert len(said) == 1 and "config.toml" in said[0] and "retrain.robust=auto" in said[0]


def test_compare_help_says_when_robust_accuracy_is_measured_and_the_setting() -> None:
    from click.testing import CliRunner

    from dnnsafety.cli.compare import command

    out = " ".join(CliRunner().invoke(command, ["--help"], terminal_width=1000).output.split())
    assert "robust accuracy" in out and "retrain.robust=always|never" in out
