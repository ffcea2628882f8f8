"""``dnnsafety mitigate``: a mitigation's fine-tuned model is kept, in the user's format, with
its before / after figures (robust accuracy beside adversarial fine-tuning)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dnnsafety.cli.main import main
from dnnsafety.config import load_config
from dnnsafety.models.training import predict
from dnnsafety.pipeline import Pipeline
from dnnsafety.pipeline.robust_eval import RobustEval
from dnnsafety.runs import RunDir

FAST = ["--dataset", "digits", "--epochs", "3", "--set", "train.batch_size=64"]
RESET = ["--set", "retrain.params.adversarial={}"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run = tmp_path_factory.mktemp("mitigate") / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    return run


def test_adversarial_fine_tuning_is_kept_with_its_figures(evaluated, capsys) -> None:
    argv = ["mitigate", str(evaluated), "--strategy", "adversarial", "--set", "retrain.epochs=2"]
    argv += ["--set", "retrain.robust_n=80", "--set", "retrain.params.adversarial={steps = 2}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "robust accuracy (PGD-10, 8/255)" in out and "80 test inputs attacked" in out
    folder = evaluated / "retrained" / "adversarial"
    result = json.loads((folder / "result.json").read_text())
    assert result["model_files"] == ["model.pt"] and result["params"] == {"steps": 2}
    assert result["robust"]["n"] == 80 and result["runs"][0]["plan"]["pgd_steps"] == 2
    # the saved weights load safely and are the model the run scored
    saved = torch.load(folder / "model.pt", weights_only=True)
    assert saved["strategy"] == "adversarial"
    pipe = Pipeline(RunDir(evaluated), load_config(evaluated / "config.toml"))
    model = pipe.fresh_model()
    model.load_state_dict(saved["state_dict"])
    model.eval()
    test = pipe.dataset["test"]
    accuracy = float((predict(model, test.images).pred == np.asarray(test.labels)).mean())
    assert accuracy == pytest.approx(result["runs"][0]["overall"])
    spec = RobustEval(**result["robust"])
    images, labels = spec.inputs(test)
    assert spec.accuracy(model, images, labels) == pytest.approx(
        result["runs"][0]["robust_accuracy"]
    )
    assert spec.accuracy(pipe.model(), images, labels) == pytest.approx(
        result["original"]["robust_accuracy"]
    )
    # the original model is untouched
    assert not torch.equal(
        next(iter(pipe.model().state_dict().values())), next(iter(saved["state_dict"].values()))
    )


def test_a_mitigation_without_an_attack_has_no_robust_figures(evaluated, capsys) -> None:
    argv = ["mitigate", str(evaluated), "--strategy", "augmix", "--set", "retrain.epochs=1"]
    assert main([*argv, "--seeds", "2"]) == 0
    result = json.loads((evaluated / "retrained" / "augmix" / "result.json").read_text())
    assert "robust" not in result and "robust_accuracy" not in result["runs"][0]
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    assert "robust accuracy" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # a selector needs labels: the message names that path, not just the mitigations
        (["--strategy", "closest"], "selection strategy, which needs labels: `dnnsafety select"),
        (["--strategy", "dropout"], "'dropout' is not a mitigation (a retraining strategy"),
        (["--strategy", "adversarial", "--set", "retrain.params.adversarial={betta = 1}"], "betta"),
        # (the bad parameter above is saved in config.toml: a --set is; reset it here)
        (
            ["--strategy", "adversarial", "--set", "retrain.robust=maybe", *RESET],
            "retrain.robust must be one of auto, always, never. Got 'maybe'; set it with",
        ),
        # not after the root-cause analysis it would run first
        (["--strategy", "generated"], "needs a simulator for the dataset, and 'digits' has none"),
    ],
)
def test_bad_input_is_refused_before_any_training(evaluated, argv, message, capsys) -> None:
    before = sorted(p.name for p in evaluated.iterdir())
    assert main(["mitigate", str(evaluated), *argv]) != 0
    assert message in capsys.readouterr().err
    assert not (evaluated / "retrained" / "x").exists()
    assert sorted(p.name for p in evaluated.iterdir()) == before


def test_compare_refuses_generated_without_a_simulator_before_any_run(evaluated, capsys) -> None:
    before = sorted(p.name for p in evaluated.iterdir())
    argv = ["compare", str(evaluated), "--strategies", "random,generated", "--seeds", "1"]
    assert main(argv) != 0
    assert "needs a simulator for the dataset, and 'digits' has none" in capsys.readouterr().err
    assert sorted(p.name for p in evaluated.iterdir()) == before


def test_the_api_names_the_labelled_path_for_a_selection_strategy(evaluated) -> None:
    from dnnsafety.exceptions import ConfigError
    from dnnsafety.pipeline.mitigated import mitigate_and_save

    pipe = Pipeline(RunDir(evaluated), load_config(evaluated / "config.toml"))
    with pytest.raises(
        ConfigError, match="selection strategy, which needs labels: `dnnsafety select"
    ):
        mitigate_and_save(pipe, "closest")
    with pytest.raises(ConfigError, match="'seeds' parameter"):
        mitigate_and_save(pipe, "augmix", seeds=0)


def test_the_report_lists_the_kept_model_with_its_robust_figures(evaluated) -> None:
    from dnnsafety.report.load import load_run
    from dnnsafety.report.sections.retrained import retrained_section

    argv = ["--quiet", "mitigate", str(evaluated), "--strategy", "adversarial", *RESET]
    assert main([*argv, "--set", "retrain.epochs=1", "--set", "retrain.robust_n=40"]) == 0
    context = retrained_section(load_run(evaluated))
    assert context is not None
    table = context["results"]
    headers = [h.text for h in table.headers]
    row = next(r for r in table.rows if r[0].text == "adversarial")
    result = json.loads((evaluated / "retrained" / "adversarial" / "result.json").read_text())
    assert row[1].text == "0"  # no label spent
    assert row[headers.index("robust accuracy under")].text == "robust accuracy (PGD-10, 8/255)"
    after = result["runs"][0]["robust_accuracy"]
    assert row[headers.index("robust after")].text == f"{after:.1%}"


def test_a_model_with_its_own_class_order_is_kept_with_it(evaluated, tmp_path) -> None:
    from dnnsafety.models.loading import make_model

    # the run's model as TorchScript with its outputs in another order, stated in classes.txt
    cfg = load_config(evaluated / "config.toml")
    model = make_model(cfg.model, 1, 10, 8)
    model.load_state_dict(torch.load(evaluated / "model.pt", weights_only=True)["state_dict"])
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    with torch.no_grad():
        last.weight.copy_(last.weight[order].clone())
        last.bias.copy_(last.bias[order].clone())
    own = tmp_path / "own"
    own.mkdir()
    torch.jit.script(model.eval()).save(str(own / "model.ts"))
    (own / "classes.txt").write_text("".join(f"{i}\n" for i in order))
    run = tmp_path / "run"
    given = ["--quiet", "evaluate", "--dataset", "digits", "--arch", "torchscript"]
    assert main([*given, str(run), "--weights", str(own / "model.ts")]) == 0
    argv = ["--quiet", "mitigate", str(run), "--strategy", "augmix", "--set", "retrain.epochs=1"]
    assert main(argv) == 0
    folder = run / "retrained" / "augmix"
    result = json.loads((folder / "result.json").read_text())
    assert result["model_files"] == ["model.pt", "model.ts", "classes.txt"]
    assert (folder / "classes.txt").read_text().split() == [str(i) for i in order]
    # the kept model, given as a new run's model, scores what result.json says
    again = tmp_path / "again"
    assert main([*given, str(again), "--weights", str(folder / "model.ts")]) == 0
    metrics = json.loads((again / "metrics.json").read_text())
    assert metrics["splits"]["test"]["accuracy"] == pytest.approx(result["runs"][0]["overall"])


def test_an_interrupted_run_resumes_with_the_next_seed(evaluated, monkeypatch, capsys) -> None:
    import dnnsafety.pipeline.mitigated as mitigated

    real, seeds_run = mitigated.mitigate, []

    def counting(session, strategy, seed, stop_at=None):
        if seed == stop_at:
            raise KeyboardInterrupt  # Ctrl-C during the run of that seed
        seeds_run.append(seed)
        return real(session, strategy, seed)

    argv = ["mitigate", str(evaluated), "--strategy", "jtt", "--seeds", "3"]
    argv += ["--set", "retrain.epochs=1"]
    monkeypatch.setattr(mitigated, "mitigate", lambda *a: counting(*a, stop_at=1))
    assert main(argv) == 130
    assert "run the same command to resume" in capsys.readouterr().err
    folder = evaluated / "retrained" / "jtt"
    first = json.loads((folder / "result.json").read_text())
    assert [r["seed"] for r in first["runs"]] == [0] and (folder / "model.pt").is_file()
    kept = (folder / "model.pt").stat().st_mtime_ns
    monkeypatch.setattr(mitigated, "mitigate", counting)
    assert main(argv) == 0
    assert seeds_run == [0, 1, 2]  # seed 0 was not run again
    result = json.loads((folder / "result.json").read_text())
    assert result["runs"][0] == first["runs"][0] and len(result["runs"]) == 3
    assert (folder / "model.pt").stat().st_mtime_ns == kept
    # another setting is another fine-tuning: every run again
    assert main([*argv, "--set", "retrain.lr=0.002"]) == 0
    assert seeds_run == [0, 1, 2, 0, 1, 2]
