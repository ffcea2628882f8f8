"""Black-box analysis (SAFE): feature sources, the analyze command, ONNX models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dnnsafety.cli.main import main
from dnnsafety.exceptions import ConfigError, InvalidInputError, ModelLoadError, NotFittedError
from dnnsafety.features import FEATURE_SOURCES, FeatureContext, make_source

FAST = ["--dataset", "digits", "--epochs", "3", "--set", "train.batch_size=64"]


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.classifier(self.features(x)))


def _params(name: str) -> dict:
    if name == "backbone":
        return {"image_size": 32}
    if name == "autoencoder":
        return {"epochs": 1, "latent": 4}
    return {}


@pytest.fixture(scope="module")
def context():
    torch.manual_seed(0)
    images = torch.rand(40, 1, 8, 8)
    return FeatureContext(model=TinyNet().eval(), unlabeled=images, seed=0), images


@pytest.mark.parametrize("name", FEATURE_SOURCES.names())
def test_feature_source_contract(name, context):
    ctx, images = context
    source = make_source(name, **_params(name))
    with pytest.raises(NotFittedError):
        source.transform(images)
    assert source.fit(ctx) is source
    feats = source.transform(images[:10])
    assert feats.dtype == np.float32 and feats.ndim == 2 and feats.shape[0] == 10
    assert np.isfinite(feats).all() and feats.shape[1] > 0
    again = make_source(name, **_params(name)).fit(ctx).transform(images[:10])
    np.testing.assert_allclose(feats, again, rtol=1e-5, atol=1e-6)
    # batching does not change the features
    np.testing.assert_allclose(source.transform(images[:3]), feats[:3], rtol=1e-4, atol=1e-5)
    with pytest.raises(InvalidInputError, match="N x C x H x W"):
        source.transform(images[0])


def test_activations_are_the_input_of_the_last_linear_layer(context):
    ctx, images = context
    feats = make_source("activations").fit(ctx).transform(images[:5])
    net = ctx.model
    expected = net.classifier(net.features(images[:5])).detach().numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5)


def test_sources_that_need_the_model_say_so():
    for name in ("activations", "heatmaps"):
        with pytest.raises(ConfigError, match="model"):
            make_source(name).fit(FeatureContext(model=None))
    with pytest.raises(ConfigError, match="unlabeled"):
        make_source("autoencoder").fit(FeatureContext())
    with pytest.raises(ConfigError, match="Bad parameters"):
        make_source("pixels", nonsense=1)


def test_activations_leave_a_training_model_in_training_mode(context):
    _, images = context
    torch.manual_seed(1)
    model = TinyNet().train()
    model.classifier.append(nn.Dropout(0.5))  # in training mode dropout would change the rows
    feats = make_source("activations").fit(FeatureContext(model=model)).transform(images[:5])
    assert all(m.training for m in model.modules())
    model.eval()
    expected = model.classifier(model.features(images[:5])).detach().numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5)


def test_sources_declare_what_they_need():
    needs = {name: FEATURE_SOURCES.get(name).requires for name in FEATURE_SOURCES.names()}
    assert needs == {
        "activations": {"model"},
        "autoencoder": {"unlabeled"},
        "combined": {"model", "image_shape"},
        "backbone": set(),
        "heatmaps": {"model", "image_shape"},
        "pixels": set(),
    }


def test_old_flat_analysis_keys_give_the_same_source_parameters():
    from dnnsafety.config import AnalysisConfig, PluginConfig, RunConfig, from_dict, merge
    from dnnsafety.pipeline.analyze.safe import source_params, source_spec

    old = from_dict(
        AnalysisConfig,
        {
            "features": "backbone",
            "backbone": "resnet18",
            "backbone_weights": "/w.pth",
            "image_size": 64,
            "feature_layer": "features.0",
        },
    )
    # exactly what the backbone got before sources took {name, params}
    assert source_params(old) == {"arch": "resnet18", "weights": "/w.pth", "image_size": 64}
    heat = from_dict(AnalysisConfig, {"features": "heatmaps", "feature_layer": "features.0"})
    assert source_params(heat) == {"layer": "features.0", "ruleset": "default"}
    assert source_params(AnalysisConfig(features="pixels")) == {}
    # the table form: params go to the constructor and override the flat keys
    table = from_dict(
        AnalysisConfig,
        {"features": {"name": "backbone", "params": {"image_size": 32}}, "image_size": 64},
    )
    assert source_spec(table) == PluginConfig(
        "backbone", {"arch": "mobilenet_v2", "weights": "", "image_size": 32}
    )
    merged = merge(
        RunConfig(), {"analysis.features.params.latent": 8, "analysis.features": "autoencoder"}
    )
    assert source_params(merged.analysis) == {"latent": 8}
    assert merged.section("analysis")["features"] == {
        "name": "autoencoder",
        "params": {"latent": 8},
    }
    # a plug-in with default parameters fingerprints as its bare name, as in older runs
    assert RunConfig().section("analysis")["features"] == "backbone"
    assert RunConfig().section("analysis")["cluster"] == "guarded"


def test_fit_source_passes_only_what_the_source_requires(tmp_path, monkeypatch):
    from dnnsafety.config import AnalysisConfig
    from dnnsafety.pipeline.analyze import safe
    from dnnsafety.runs import RunDir

    seen: list[FeatureContext] = []

    def record(self, context):
        seen.append(context)
        return self

    class FakeSplit:
        images = torch.rand(5, 1, 8, 8)

    class FakeData:
        splits = ("train", "pool")
        image_shape = (1, 8, 8)

        def __getitem__(self, split):
            return FakeSplit()

    run = RunDir(tmp_path / "run", create=True)
    model = TinyNet()
    for name in ("pixels", "activations", "heatmaps", "autoencoder"):
        cfg = AnalysisConfig(features=name)
        monkeypatch.setattr(FEATURE_SOURCES.get(name), "fit", record)
        safe.fit_source(cfg, model, FakeData(), run, seed=0)  # type: ignore[arg-type]
    pixels, activations, heatmaps, autoencoder = seen
    assert pixels.model is None and pixels.unlabeled is None and pixels.extra == {}
    assert activations.model is model and activations.unlabeled is None
    assert heatmaps.model is model and heatmaps.extra == {"image_shape": (1, 8, 8)}
    assert autoencoder.model is None and autoencoder.unlabeled.shape == (10, 1, 8, 8)


def test_backbone_takes_any_torchvision_architecture_and_weights_file(tmp_path, context):
    import torchvision

    _, images = context
    torch.manual_seed(0)
    net = torchvision.models.get_model("resnet18", weights=None)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    weights = str(tmp_path / "r18.pth")
    source = make_source("backbone", arch="resnet18", weights=weights, image_size=32)
    feats = source.fit(FeatureContext()).transform(images[:4])
    assert feats.shape == (4, 512)
    with pytest.raises(ConfigError, match="Unknown backbone"):
        make_source("backbone", arch="no_such_net").fit(FeatureContext())
    with pytest.raises(ConfigError, match="needs a weights file"):
        make_source("backbone", arch="resnet18").fit(FeatureContext())
    with pytest.raises(ModelLoadError, match="do not fit the MobileNetV2"):
        make_source("backbone", weights=str(tmp_path / "r18.pth")).fit(FeatureContext())


def test_backbone_refuses_a_pickle_weights_file(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(Exception, match=r"(?i)unsafe|weights|pickle"):
        make_source("backbone", weights=str(bad)).fit(FeatureContext())
    assert not marker.exists()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run = tmp_path_factory.mktemp("bb") / "base"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    return run


def _errors(run):
    table = pd.read_parquet(run / "samples.parquet")
    return table, table[(table["split"] == "test") & (table["correct"] == False)]  # noqa: E712


@pytest.mark.parametrize(
    "features,reduce,cluster",
    [("pixels", "pca", "kmeans"), ("backbone", "umap", "dbscan"), ("activations", "none", "ward")],
)
def test_blackbox_analyze_writes_the_same_outputs_as_hudd(
    evaluated, tmp_path, capsys, features, reduce, cluster
):
    run = tmp_path / "run"
    shutil.copytree(evaluated, run)
    argv = ["--quiet", "analyze", str(run), "--features", features]
    argv += ["--reduce", reduce, "--cluster", cluster, "--set", "analysis.image_size=32"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{features} features -> {reduce} -> {cluster}" in out
    data = json.loads((run / "clusters.json").read_text())
    assert data["method"] == "safe" and data["features"] == features
    table, errors = _errors(run)
    assert data["n_errors"] == len(errors) > 0
    assert errors["cluster"].notna().all()
    assert table.loc[table["split"] != "test", "cluster"].isna().all()
    noise = errors["cluster"] == -1
    assert data["n_noise"] == int(noise.sum())
    members = sorted(m for c in data["clusters"] for m in c["members"])
    assert members == sorted(errors.loc[~noise, "sample_id"])
    for c in data["clusters"]:
        assert (run / c["contact_sheet"]).exists()
        assert c["representative_images"][0]["role"] == "medoid"
        assert all((run / r["path"]).exists() for r in c["representative_images"])
    points = json.loads((run / "analysis" / "map.json").read_text())["points"]
    assert len(points) == len(errors) and (run / "analysis" / "thumbs.png").exists()
    # features are cached: another clusterer reuses them
    cached = sorted((run / "analysis" / "features").glob(f"{features}_*/part_*.npy"))
    assert len(cached) == 1
    assert main(["--quiet", "analyze", str(run), "--cluster", "hdbscan"]) == 0
    assert sorted((run / "analysis" / "features").glob(f"{features}_*/part_*.npy")) == cached


def test_unknown_registry_names_are_clear_errors(evaluated, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(evaluated, run)
    assert main(["analyze", str(run), "--features", "nope"]) == 2
    assert "Unknown feature source 'nope'" in capsys.readouterr().err
    assert main(["analyze", str(run), "--features", "pixels", "--cluster", "nope"]) == 2
    assert "Unknown clusterer 'nope'" in capsys.readouterr().err


def test_onnx_model_supports_the_black_box_path_only(evaluated, tmp_path, capsys):
    from dnnsafety.config import load_config
    from dnnsafety.models.loading import make_model, safe_load

    cfg = load_config(evaluated / "config.toml")
    model = make_model(cfg.model, 1, 10, 8)
    model.load_state_dict(safe_load(evaluated / "model.pt")["state_dict"])
    model.eval()
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
    run = tmp_path / "onnx_run"
    argv = ["--quiet", "evaluate", str(run), "--dataset", "digits"]
    assert main([*argv, "--arch", "onnx", "--weights", str(onnx_file)]) == 0
    ours, _ = _errors(run)
    theirs, _ = _errors(evaluated)
    np.testing.assert_array_equal(ours["pred"].to_numpy(), theirs["pred"].to_numpy())
    assert main(["analyze", str(run), "--features", "hudd"]) == 2  # white-box by name
    assert "ONNX model gives no access" in capsys.readouterr().err
    # the plain command picks the black-box analysis
    assert main(["--quiet", "analyze", str(run), "--set", "analysis.image_size=32"]) == 0
    assert json.loads((run / "clusters.json").read_text())["method"] == "safe"


def test_bad_onnx_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    argv = ["evaluate", str(tmp_path / "r"), "--dataset", "digits", "--arch", "onnx"]
    assert main([*argv, "--weights", str(bad)]) == 2
    assert "not a loadable ONNX model" in capsys.readouterr().err


def test_class_conditional_clusters_hold_one_true_class_each(evaluated, tmp_path):
    """The analysis passes each error's true class to the conditional clusterer."""
    run = tmp_path / "run"
    shutil.copytree(evaluated, run)
    argv = ["--quiet", "analyze", str(run), "--features", "pixels", "--reduce", "pca"]
    assert main([*argv, "--cluster", "conditional"]) == 0
    data = json.loads((run / "clusters.json").read_text())
    assert data["cluster"] == "conditional" and data["params"]["cluster"]["by"] == "true"
    _, errors = _errors(run)
    per_cluster = errors.groupby("cluster")["label"].nunique()
    assert (per_cluster == 1).all() and len(per_cluster) >= errors["label"].nunique()
