"""Every kind of model the README offers (zoo, TorchScript, module + state dict, ONNX) works
with every command or is refused up front in one line; heatmaps the LRP rules do not cover
are flagged."""

from __future__ import annotations

import csv
import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnnsafety.cli.main import main
from dnnsafety.config import ModelConfig, RetrainConfig, load_config
from dnnsafety.data.builtin import load_dataset
from dnnsafety.data.dataset import reveal_labels
from dnnsafety.features import layer_relevance
from dnnsafety.features.coverage import lrp_coverage, warn_lrp_coverage
from dnnsafety.models import script as script_module
from dnnsafety.models.loading import load_weights, make_model, safe_load
from dnnsafety.models.script import rebuild_eager
from dnnsafety.models.support import check_command, command_needs, model_support
from dnnsafety.models.zoo import SmallCNN, build_model
from dnnsafety.retraining.export import save_retrained
from dnnsafety.retraining.finetune import finetune

FAST = ["--dataset", "digits", "--epochs", "3", "--set", "train.batch_size=64"]
QUICK = ["--set", "retrain.epochs=1"]


# -- models used below (defined in a file: TorchScript reads their source) ----------------------
class Scaled(nn.Module):
    """A classifier whose forward multiplies by a buffer: not a chain of layers."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("scale", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


class ChainNet(nn.Module):
    """Children called in order, with functional ReLU, flatten and view between them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn(self.conv(x))))
        x = torch.flatten(x, 1)
        return self.fc(x.view(x.size(0), -1))


class FunctionalNet(nn.Module):
    """Functional activation and a residual addition in forward."""

    def __init__(self, act: str = "relu", residual: bool = False) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        self.act = act
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = getattr(F, self.act)
        h = F.max_pool2d(act(self.c1(x)), 2)
        out = act(self.c2(h))
        if self.residual:
            out = out + h
        return self.fc(out.view(out.size(0), -1))


class ModuleNet(nn.Module):
    """:class:`FunctionalNet` (relu, no residual) written with nn modules."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.r1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.r2 = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.r2(self.c2(self.pool(self.r1(self.c1(x)))))))


class CatNet(nn.Module):
    """Two convolutions joined with torch.cat."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.pool(self.relu(torch.cat([self.a(x), self.b(x)], 1)))))


class OneConvNet(nn.Module):
    """:class:`CatNet` with its two convolutions as one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.pool(self.relu(self.conv(x)))))


class CustomNet(nn.Module):
    """A parameter used directly in forward, and a LayerNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(3))
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x * self.gain[:, None, None]).flatten(1))


def _trained(arch: str, channels: int = 3, size: int = 16) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, channels, 10, size)
    model.train()
    model(torch.rand(16, channels, size, size))  # BatchNorm statistics away from the default
    return model.eval()


def _script(model: nn.Module, path) -> nn.Module:
    torch.jit.script(model.eval()).save(str(path))
    return torch.jit.load(str(path))


# -- TorchScript rebuilt as an eager module -------------------------------------------------------
@pytest.mark.parametrize("arch", ["small_cnn", "alexnet", "resnet"])
def test_scripted_zoo_architectures_are_rebuilt_exactly(arch, tmp_path):
    model = _trained(arch)
    scripted = _script(model, tmp_path / "m.ts")
    x = torch.rand(8, 3, 16, 16)
    rebuilt = rebuild_eager(scripted, x)
    assert rebuilt.eager and rebuilt.reason == ""
    eager = rebuilt.model
    assert not isinstance(eager, torch.jit.ScriptModule)
    assert list(eager.state_dict()) == list(scripted.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(eager(x), scripted(x), rtol=0, atol=1e-6)
    # forward hooks work, and the heatmaps are those of the original eager model (the zoo's
    # residual block is rebuilt as itself, so its canonizer applies)
    want = layer_relevance(model, x)
    got = layer_relevance(eager, x)
    assert [i.name for i in got.layers] == [i.name for i in want.layers]
    for name, value in want.maps.items():
        torch.testing.assert_close(got.maps[name], value, rtol=1e-5, atol=1e-7)


def test_chain_with_functional_relu_flatten_and_view_is_rebuilt(tmp_path):
    torch.manual_seed(0)
    net = ChainNet()
    scripted = _script(net, tmp_path / "chain.ts")
    x = torch.rand(6, 1, 8, 8)
    rebuilt = rebuild_eager(scripted, x)
    assert rebuilt.eager
    kinds = [type(m).__name__ for m in rebuilt.model.children()]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Flatten", "Linear"]
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.model(x), net(x), rtol=0, atol=1e-6)


def test_forward_with_other_operations_stays_torchscript_with_the_reason(tmp_path):
    scripted = _script(Scaled(SmallCNN(1, 10, 8)), tmp_path / "scaled.ts")
    rebuilt = rebuild_eager(scripted, torch.rand(4, 1, 8, 8))
    assert not rebuilt.eager and rebuilt.model is scripted
    assert rebuilt.reason == (
        "the forward of the model (Scaled) uses aten::mul, not only a chain of its layers"
    )


def test_a_rebuild_that_computes_something_else_is_not_trusted(tmp_path, monkeypatch):
    scripted = _script(SmallCNN(1, 10, 8), tmp_path / "m.ts")
    real = script_module._rebuild

    def wrong(module, where):
        rebuilt = real(module, where)
        if not where:  # same weights, another output
            rebuilt.add_module("extra", nn.Sigmoid())
        return rebuilt

    monkeypatch.setattr(script_module, "_rebuild", wrong)
    rebuilt = rebuild_eager(scripted, torch.rand(4, 1, 8, 8))
    assert not rebuilt.eager and rebuilt.model is scripted
    assert rebuilt.reason.startswith("the rebuilt module's outputs differ from the TorchScript")


# -- what each kind supports ----------------------------------------------------------------------
def test_model_support_per_kind(tmp_path):
    zoo = model_support(ModelConfig(arch="small_cnn"))
    assert (zoo.white_box, zoo.fine_tune, zoo.fresh, zoo.saves_as) == (True, True, True, "")
    imported = model_support(ModelConfig(arch="import", factory="m:f"))
    assert (imported.white_box, imported.fine_tune, imported.fresh) == (True, True, True)
    onnx = model_support(ModelConfig(arch="onnx", weights="m.onnx"))
    assert (onnx.white_box, onnx.fine_tune, onnx.fresh) == (False, False, False)
    ts_cfg = ModelConfig(arch="torchscript", weights="m.ts")
    rebuilt = model_support(ts_cfg, SmallCNN(1, 10, 8))
    assert (rebuilt.white_box, rebuilt.fine_tune, rebuilt.fresh) == (True, True, False)
    assert rebuilt.saves_as == "torchscript"
    scripted = _script(Scaled(SmallCNN(1, 10, 8)), tmp_path / "s.ts")
    kept = model_support(ts_cfg, scripted, "it multiplies")
    assert (kept.white_box, kept.fine_tune) == (False, True)
    assert kept.reason == "it could not be rebuilt as an eager module: it multiplies"
    frozen = model_support(ModelConfig(), SmallCNN(1, 10, 8).requires_grad_(False))
    assert (frozen.white_box, frozen.fine_tune) == (True, False)
    assert frozen.train_reason == "it has no trainable parameter (every requires_grad is False)"


def test_command_needs_and_one_line_refusals():
    assert command_needs("analyze") == ()
    assert command_needs("select", ["random"]) == ()
    assert command_needs("select", ["dsa"]) == ("white_box",)
    assert command_needs("retrain") == ("fine_tune",)
    assert command_needs("compare", ["closest"], from_scratch=True) == ("fine_tune", "fresh")
    assert command_needs("analyze", features="heatmaps") == ("white_box",)
    assert command_needs("report") == ()
    onnx = model_support(ModelConfig(arch="onnx", weights="m.onnx"))
    with pytest.raises(Exception) as info:
        check_command(onnx, "compare", command_needs("compare"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("`dnnsafety compare` fine-tunes the model, and this ONNX model")
    assert "dnnsafety select" in message and "--model-factory" in message
    # a mitigation needs no labels: selecting images to label is no alternative to it
    with pytest.raises(Exception) as info:
        check_command(onnx, "mitigate", command_needs("mitigate", ["augmix"]))
    message = str(info.value)
    assert message.startswith("`dnnsafety mitigate` fine-tunes the model, and this ONNX model")
    assert "select" not in message and "in its own framework, or give it as" in message
    with pytest.raises(Exception, match=r"Use the black-box analysis \(--features backbone\)"):
        check_command(onnx, "analyze", ("white_box",))
    check_command(model_support(ModelConfig()), "demo", command_needs("demo"))  # no error


# -- fine-tuning and saving TorchScript models ----------------------------------------------------
def test_finetune_trains_a_copy_of_a_torchscript_model(digits, tmp_path):
    torch.manual_seed(0)
    scripted = _script(Scaled(SmallCNN(1, 10, 8)), tmp_path / "s.ts")
    before = {k: v.clone() for k, v in scripted.state_dict().items()}
    cfg = RetrainConfig(epochs=1, select_by="train", lr=0.01)
    empty = digits["train"].images[:0]
    new, result = finetune(
        scripted, digits["train"], empty, np.zeros(0, np.int64), None, cfg, seed=0
    )
    assert result.best_epoch == 1
    assert isinstance(new, torch.jit.ScriptModule)
    changed = [k for k, v in new.state_dict().items() if not torch.equal(v, before[k])]
    assert "net.features.0.weight" in changed
    for key, value in scripted.state_dict().items():  # the original is untouched
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("rebuild", [True, False])
def test_retrained_torchscript_model_is_saved_as_torchscript(rebuild, digits, tmp_path):
    torch.manual_seed(0)
    source = tmp_path / "in.ts"
    net = SmallCNN(1, 10, 8) if rebuild else Scaled(SmallCNN(1, 10, 8))
    scripted = _script(net, source)
    x = digits["test"].images[:32]
    start = rebuild_eager(scripted, x)
    assert start.eager is rebuild
    cfg = ModelConfig(arch="torchscript", weights=str(source))
    support = model_support(cfg, start.model, start.reason)
    images, labels = digits["train"].images[:40], digits["train"].labels[:40]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = finetune(
            start.model,
            digits["train"],
            images,
            labels,
            None,
            RetrainConfig(epochs=1, select_by="train", lr=0.01),
            seed=0,
        )
        files = save_retrained(model, tmp_path / "out", "random", support, str(source), x)
    # torch.jit's deprecation notice (torch.export is its successor) is not for our users
    assert not [w for w in caught if "torch.jit" in str(w.message)]
    assert [f.name for f in files] == ["model.pt", "model.ts"]
    loaded = torch.jit.load(str(files[1]))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-6)
        assert not torch.allclose(loaded(x), scripted(x))  # the retrained weights, not the old
    assert not loaded.training
    assert set(safe_load(files[0])["state_dict"]) == set(scripted.state_dict())


# -- the commands, per kind -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small_cnn trained on digits, its run, and the model as TorchScript (a plain chain,
    and wrapped in a forward that multiplies, which cannot be rebuilt)."""
    root = tmp_path_factory.mktemp("kinds")
    run = root / "zoo"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    cfg = load_config(run / "config.toml")
    model = make_model(cfg.model, 1, 10, 8)
    model.load_state_dict(safe_load(run / "model.pt")["state_dict"])
    model.eval()
    torch.jit.script(model).save(str(root / "chain.ts"))
    torch.jit.script(Scaled(model).eval()).save(str(root / "scaled.ts"))
    return root


def _preds(run):
    table = pd.read_parquet(run / "samples.parquet")
    return table.sort_values("sample_id")["pred"].to_numpy()


def _fill_labels(run, strategy, path):
    cfg = load_config(run / "config.toml")
    rows = list(csv.DictReader((run / "selection" / strategy / "labels.csv").open()))
    truth = reveal_labels(load_dataset(cfg.data, cfg.seed)["pool"], [r["sample_id"] for r in rows])
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample_id", "label"])
        writer.writerows([[r["sample_id"], truth[r["sample_id"]]] for r in rows])
    return path


def _error_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1
    return err[0]


def test_torchscript_run_gets_the_white_box_analysis_and_a_torchscript_retrain(base, capsys):
    run = base / "ts"
    argv = ["--quiet", "evaluate", str(run), "--dataset", "digits", "--arch", "torchscript"]
    assert main([*argv, "--weights", str(base / "chain.ts")]) == 0
    np.testing.assert_array_equal(_preds(run), _preds(base / "zoo"))
    assert main(["--quiet", "analyze", str(run), "--layers", "classifier.1"]) == 0
    clusters = json.loads((run / "clusters.json").read_text())
    assert clusters["method"] == "hudd" and clusters["layer"] == "classifier.1"
    assert "TorchScript model rebuilt as an eager module" in (run / "run.log").read_text()
    stages = json.loads((run / "stages.json").read_text())
    assert stages["analyze"]["lrp_coverage"] == []  # a zoo model: nothing to warn about

    assert main(["--quiet", "select", str(run), "--strategy", "random", "--budget", "10"]) == 0
    labels = _fill_labels(run, "random", base / "ts_labels.csv")
    argv = ["retrain", str(run), "--strategy", "random", "--labels", str(labels), *QUICK]
    assert main(argv) == 0
    assert "retrained model: model.pt, model.ts" in capsys.readouterr().out
    folder = run / "retrained" / "random"
    assert json.loads((folder / "result.json").read_text())["model_files"] == [
        "model.pt",
        "model.ts",
    ]
    # the TorchScript file and the state dict hold the same retrained model
    retrained = load_weights(SmallCNN(1, 10, 8), folder / "model.pt").eval()
    loaded = torch.jit.load(str(folder / "model.ts"))
    x = load_dataset(load_config(run / "config.toml").data, 0)["test"].images[:64]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), retrained(x), rtol=0, atol=1e-6)


def test_torchscript_without_white_box_access(base, tmp_path, capsys):
    run = tmp_path / "scaled"
    argv = ["--quiet", "evaluate", str(run), "--dataset", "digits", "--arch", "torchscript"]
    assert main([*argv, "--weights", str(base / "scaled.ts")]) == 0
    np.testing.assert_array_equal(_preds(run), _preds(base / "zoo"))
    # an explicit white-box request is refused in one line naming both ways out
    assert main(["analyze", str(run), "--features", "hudd"]) == 2
    line = _error_line(capsys)
    assert "TorchScript model gives no access" in line and "aten::mul" in line
    assert "--features backbone" in line and "--model-factory" in line
    assert not (run / "clusters.json").exists()
    for argv in (
        ["select", str(run), "--strategy", "dsa"],
        ["compare", str(run), "--strategies", "random,dsa"],
    ):
        assert main(argv) == 2
        assert "a strategy other than dsa" in _error_line(capsys)
    # the plain command picks the black-box analysis and says so
    assert main(["--quiet", "analyze", str(run), "--set", "analysis.image_size=32"]) == 0
    assert json.loads((run / "clusters.json").read_text())["method"] == "safe"
    log = (run / "run.log").read_text()
    assert "analysing with the black-box features instead (--features backbone)" in log
    assert load_config(run / "config.toml").analysis.features == "backbone"
    # fine-tuning a TorchScript module works (it failed with "can't optimize a non-leaf Tensor")
    argv = ["--quiet", "compare", str(run), "--strategies", "random", "--budget", "10"]
    assert main([*argv, "--seeds", "1", *QUICK]) == 0
    data = json.loads((run / "comparison.json").read_text())
    assert 0 < data["strategies"]["random"]["runs"][0]["overall"] <= 1
    # a TorchScript file cannot be trained afresh
    assert main(["compare", str(run), "--set", "retrain.from_scratch=true"]) == 2
    assert "Set retrain.from_scratch=false" in _error_line(capsys)


def test_onnx_run_is_refused_before_any_long_step(base, tmp_path, capsys):
    model = load_weights(SmallCNN(1, 10, 8), base / "zoo" / "model.pt").eval()
    onnx_file = tmp_path / "model.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        str(onnx_file),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        dynamo=False,
    )
    run = tmp_path / "onnx"
    argv = ["--quiet", "evaluate", str(run), "--dataset", "digits", "--arch", "onnx"]
    assert main([*argv, "--weights", str(onnx_file)]) == 0
    assert main(["compare", str(run), "--strategies", "closest,random"]) == 2
    line = _error_line(capsys)
    assert "fine-tunes the model, and this ONNX model cannot be trained here" in line
    assert not (run / "clusters.json").exists()  # refused before the analysis
    # beside adversarial fine-tuning: the fine-tuning is refused, not its robust accuracy
    assert main(["compare", str(run), "--strategies", "adversarial,random"]) == 2
    assert "fine-tunes the model, and this ONNX model cannot be trained here" in (
        _error_line(capsys)
    )
    assert main(["mitigate", str(run), "--strategy", "adversarial"]) == 2
    assert "`dnnsafety mitigate` fine-tunes the model, and this ONNX model" in _error_line(capsys)
    assert main(["retrain", str(run), "--labels", "labels.csv"]) == 2
    assert "ONNX model cannot be trained here" in _error_line(capsys)
    assert main(["select", str(run), "--strategy", "dsa"]) == 2
    assert "ONNX model gives no access" in _error_line(capsys)
    assert main(["--quiet", "select", str(run), "--strategy", "entropy", "--budget", "5"]) == 0


FACTORY = """
import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.skip = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        h = self.relu(self.conv(x))
        return self.fc(self.flat(self.pool(h + self.skip(h))))


def build():
    return Residual()
"""


def test_module_and_state_dict_warns_on_uncovered_ops_and_retrains_to_a_state_dict(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "kinds_factory.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import kinds_factory

    torch.manual_seed(0)
    torch.save(kinds_factory.build().state_dict(), tmp_path / "sd.pt")
    run = tmp_path / "import"
    argv = ["--quiet", "evaluate", str(run), "--dataset", "digits"]
    argv += ["--model-factory", "kinds_factory:build", "--weights", str(tmp_path / "sd.pt")]
    assert main(argv) == 0
    assert main(["--quiet", "analyze", str(run), "--layers", "fc"]) == 0
    log = (run / "run.log").read_text()
    assert "LRP heatmaps of this model may be wrong: no LRP rule covers add in the forward" in log
    assert "--features backbone" in log
    stages = json.loads((run / "stages.json").read_text())
    assert stages["analyze"]["lrp_coverage"] == ["add in the forward of Residual"]
    assert main(["--quiet", "select", str(run), "--strategy", "random", "--budget", "10"]) == 0
    labels = _fill_labels(run, "random", tmp_path / "labels.csv")
    argv = ["--quiet", "retrain", str(run), "--strategy", "random", "--labels", str(labels)]
    assert main([*argv, *QUICK]) == 0
    folder = run / "retrained" / "random"
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "result.json"]
    # the state dict fits the user's factory (what --weights reads)
    retrained = load_weights(kinds_factory.build(), folder / "model.pt")
    original = load_weights(kinds_factory.build(), tmp_path / "sd.pt")
    assert not torch.equal(retrained.fc.weight, original.fc.weight)


# -- LRP coverage ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ruleset", ["default", "hudd"])
@pytest.mark.parametrize("arch", ["small_cnn", "alexnet", "resnet"])
def test_zoo_models_are_fully_covered(arch, ruleset):
    assert lrp_coverage(_trained(arch), torch.rand(2, 3, 16, 16), ruleset) == []


def test_torchvision_resnet_is_covered_and_mobilenet_residuals_are_not():
    import torchvision

    x = torch.rand(1, 3, 32, 32)
    assert lrp_coverage(torchvision.models.resnet18(), x) == []
    issues = lrp_coverage(torchvision.models.mobilenet_v2(), x)
    assert {(i.module_type, i.what) for i in issues} == {
        ("InvertedResidual", "add"),
        ("MobileNetV2", "adaptive_avg_pool2d"),
    }


def test_uncovered_operations_and_layers_are_named():
    x = torch.rand(2, 3, 8, 8)
    assert [str(i) for i in lrp_coverage(FunctionalNet(residual=True), x)] == [
        "add in the forward of FunctionalNet"
    ]
    assert [str(i) for i in lrp_coverage(FunctionalNet("gelu"), x)] == [
        "gelu x2 in the forward of FunctionalNet"
    ]
    assert [str(i) for i in lrp_coverage(CustomNet(), x)] == [
        "the LayerNorm layer 'norm'",
        "mul in the forward of CustomNet",
    ]


def test_functional_relu_and_cat_give_the_heatmaps_of_their_modules():
    """F.relu's gradient is the pass rule (relevance is zero where the ReLU outputs zero) and
    torch.cat keeps each part's relevance, so neither is flagged, and rightly so."""
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    functional, modules = FunctionalNet(), ModuleNet()
    modules.load_state_dict(functional.state_dict())
    assert lrp_coverage(functional, x) == []
    want = layer_relevance(modules, x, layers=["c2", "fc"])
    got = layer_relevance(functional, x, layers=["c2", "fc"])
    for name in ("input", "c2", "fc"):
        torch.testing.assert_close(got.maps[name], want.maps[name], rtol=1e-5, atol=1e-8)

    cat, one = CatNet(), OneConvNet()
    with torch.no_grad():
        one.conv.weight.copy_(torch.cat([cat.a.weight, cat.b.weight]))
        one.conv.bias.copy_(torch.cat([cat.a.bias, cat.b.bias]))
        one.fc.load_state_dict(cat.fc.state_dict())
    assert lrp_coverage(cat, x) == []
    # the hudd rules: zennit's default gives only the first of two parallel convolutions the
    # flat rule, which is about layer order, not about torch.cat
    got = layer_relevance(cat, x, layers=["fc"], ruleset="hudd")
    want = layer_relevance(one, x, layers=["fc"], ruleset="hudd")
    torch.testing.assert_close(got.maps["input"], want.maps["input"], rtol=1e-5, atol=1e-8)


def test_coverage_warning_names_the_issue_and_the_fix(caplog):
    x = torch.rand(1, 3, 8, 8)
    with caplog.at_level(logging.WARNING, logger="dnnsafety"):
        issues = warn_lrp_coverage(FunctionalNet(residual=True), x)
        assert warn_lrp_coverage(ModuleNet(), x) == []
    assert issues == ["add in the forward of FunctionalNet"]
    (record,) = caplog.records
    assert "no LRP rule covers add in the forward of FunctionalNet" in record.getMessage()
    assert "nn.ReLU" in record.getMessage() and "--features backbone" in record.getMessage()


def test_lrp_coverage_leaves_the_model_unchanged():
    model = FunctionalNet(residual=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lrp_coverage(model, torch.rand(2, 3, 8, 8))
    assert model.training
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# -- output conventions meet the model kinds -----------------------------------------------------
class SoftmaxScaled(nn.Module):
    """Not a chain of layers (it multiplies), and it returns probabilities."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("scale", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x) * self.scale, dim=1)


def _pipeline(run):
    from dnnsafety.pipeline import Pipeline
    from dnnsafety.runs import RunDir

    return Pipeline(RunDir(run), load_config(run / "config.toml"))


def _trained_digits_cnn(base):
    cfg = load_config(base / "zoo" / "config.toml")
    model = make_model(cfg.model, 1, 10, 8)
    model.load_state_dict(safe_load(base / "zoo" / "model.pt")["state_dict"])
    return model.eval()


def test_torchscript_softmax_head_is_rebuilt_scored_as_itself_and_saved_back(base, tmp_path):
    from dnnsafety.models.script import contains_script_module

    own = nn.Sequential(_trained_digits_cnn(base), nn.Softmax(dim=1)).eval()
    torch.jit.script(own).save(str(tmp_path / "softmax.ts"))
    run = tmp_path / "run"
    argv = ["--quiet", "evaluate", str(run), "--dataset", "digits", "--arch", "torchscript"]
    assert main([*argv, "--weights", str(tmp_path / "softmax.ts")]) == 0
    pipe = _pipeline(run)
    model = pipe.model()
    # rebuilt as eager layers, its softmax taken off so LRP starts from the logit
    assert not contains_script_module(model) and isinstance(model[-1], nn.Identity)
    assert pipe.support.white_box and pipe.support.saves_as == "torchscript"
    test = pipe.dataset["test"]
    with torch.no_grad():
        theirs = own(test.images).max(dim=1).values.numpy()
    table = pd.read_parquet(run / "samples.parquet")
    ours = table[table["split"] == "test"]["confidence"].to_numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)  # not a softmax of probabilities
    # retrained and saved back as the user's TorchScript file, which still returns probabilities
    files = save_retrained(
        model, tmp_path / "out", "x", pipe.support, str(tmp_path / "softmax.ts"), test.images[:16]
    )
    assert [f.name for f in files] == ["model.pt", "model.ts"]
    loaded = torch.jit.load(str(tmp_path / "out" / "model.ts"))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(test.images[:16]), torch.softmax(model(test.images[:16]), 1), atol=1e-5, rtol=0
        )


def test_torchscript_that_cannot_be_rebuilt_and_returns_probabilities(base, tmp_path):
    from dnnsafety.models.adapter import ScriptedLogits
    from dnnsafety.retraining.finetune import copy_model

    own = SoftmaxScaled(_trained_digits_cnn(base)).eval()
    torch.jit.script(own).save(str(tmp_path / "p.ts"))
    run = tmp_path / "run"
    argv = ["--quiet", "evaluate", str(run), "--dataset", "digits", "--arch", "torchscript"]
    assert main([*argv, "--weights", str(tmp_path / "p.ts")]) == 0
    pipe = _pipeline(run)
    model = pipe.model()
    assert isinstance(model, ScriptedLogits)  # the adapter around the TorchScript module
    support = pipe.support
    assert support.kind == "torchscript" and not support.white_box and support.fine_tune
    copied = copy_model(model)  # trainable: leaf parameters, independent of the original
    params = list(copied.parameters())
    assert params and all(p.is_leaf for p in params)
    with torch.no_grad():
        params[0].add_(1.0)
    assert not torch.equal(params[0], next(model.parameters()))
    test = pipe.dataset["test"]
    files = save_retrained(
        copied, tmp_path / "out", "x", support, str(tmp_path / "p.ts"), test.images[:16]
    )
    assert [f.name for f in files] == ["model.pt", "model.ts"]
    loaded = torch.jit.load(str(tmp_path / "out" / "model.ts"))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(test.images[:16]), torch.softmax(copied(test.images[:16]), 1), atol=1e-5, rtol=0
        )


def test_torch_export_kind_in_the_capability_check():
    support = model_support(ModelConfig(arch="export", weights="m.pt2"))
    assert support.kind == "export" and not support.white_box and support.fine_tune
    assert not support.fresh
    with pytest.raises(Exception, match="--features backbone"):
        check_command(support, "analyze", ("white_box",))
