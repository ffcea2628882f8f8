"""``dnnsafety attack`` in-process on the tiny digits set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dnnsafety.cli.main import main
from dnnsafety.pipeline.artifacts import Adversarial, read_artifact

FAST = ["--dataset", "digits", "--epochs", "4", "--set", "train.batch_size=64"]


@pytest.mark.slow
def test_attack_writes_inputs_curve_detection_and_a_derived_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    argv = ["--quiet", "attack", str(run), "--attack", "fgsm", "--eps", "0.1", "--n", "60"]
    argv += ["--eps-list", "0.02,0.1", "--detectors", "squeeze,knn"]
    assert main([*argv, "--derive", str(tmp_path / "derived")]) == 0
    out = capsys.readouterr().out
    assert "robust accuracy" in out and "detector squeeze: AUROC" in out
    record = read_artifact(Adversarial, run).attacks["fgsm"]
    assert record.n == 60 and record.eps == 0.1 and record.norm == "linf"
    assert [r["eps"] for r in record.curve] == [0.02, 0.1]
    assert record.robust_accuracy < record.clean_accuracy
    assert set(record.detection) == {"squeeze", "knn"}
    assert 0.0 <= record.detection["knn"]["auroc"] <= 1.0
    data = np.load(run / record.files["inputs"])
    table = pd.read_csv(run / record.files["predictions"])
    assert data["adversarial"].shape == data["clean"].shape == (60, 1, 8, 8)
    assert (table["linf"] <= 0.1 + 1e-6).all()
    flipped = data["success"]
    assert (data["adversarial_pred"][flipped] != data["clean_pred"][flipped]).all()
    for key in ("robustness", "roc", "examples"):
        assert (run / record.files[key]).stat().st_size > 1000
    assert main(["--quiet", "report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "Adversarial inputs" in html and "detector" in html and "data:image/png" in html
    # a second attack is added, the first kept
    assert main(["--quiet", "attack", str(run), "--attack", "cw", "--n", "20",
                 "--param", "steps=20", "--detectors", "none"]) == 0  # fmt: skip
    both = json.loads((run / "adversarial.json").read_text())
    assert set(both["attacks"]) == {"fgsm", "cw"} and both["schema_version"] == 1
    # the derived run analyses clean and adversarial test inputs together
    derived = tmp_path / "derived"
    assert main(["--quiet", "evaluate", str(derived)]) == 0
    samples = pd.read_parquet(derived / "samples.parquet")
    test = samples[samples["split"] == "test"]
    assert (test["scenario"] == "adversarial-fgsm").sum() == 60
    adv_acc = test.loc[test["scenario"] == "adversarial-fgsm", "correct"].mean()
    assert adv_acc == pytest.approx(record.robust_accuracy)


def test_unknown_attack_and_gradient_attack_on_onnx_are_refused(tmp_path, capsys):
    assert main(["attack", str(tmp_path), "--attack", "nope"]) == 2
    assert "Unknown attack 'nope'" in capsys.readouterr().err
    run = tmp_path / "onnx"
    run.mkdir()
    (run / "config.toml").write_text(
        '[model]\narch = "onnx"\nweights = "model.onnx"\n[data]\nname = "digits"\n'
    )
    assert main(["attack", str(run), "--attack", "pgd"]) == 2
    err = capsys.readouterr().err
    assert "--attack square" in err and "ONNX" in err
