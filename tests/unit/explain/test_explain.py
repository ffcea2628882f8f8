from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dnnsafety.clustering import cluster_layer, pairwise_distances
from dnnsafety.evaluation import score_clusters
from dnnsafety.exceptions import InvalidInputError
from dnnsafety.explain import contact_sheet, describe_clusters, plot_wicd
from dnnsafety.failures import error_inputs


@pytest.fixture()
def planted():
    """Three planted groups of errors; group 0 has low brightness, group 2 high rotation."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20)) * 10
    sizes = [12, 8, 5]
    x = np.concatenate([c + rng.normal(size=(n, 20)) for c, n in zip(centres, sizes, strict=True)])
    truth = np.repeat([0, 1, 2], sizes)
    brightness = np.where(
        truth == 0, rng.uniform(0.1, 0.15, len(truth)), rng.uniform(0.5, 1.2, len(truth))
    )
    rotation = np.where(
        truth == 2, rng.uniform(40, 42, len(truth)), rng.uniform(-60, 60, len(truth))
    )
    errors = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(len(truth))],
            "label": truth,
            "pred": (truth + 1) % 3,
            "scenario": np.array(["night", "nominal", "tilt"])[truth],
            "meta.brightness": brightness,
            "meta.rotation": rotation,
            "meta.side": np.where(truth == 1, "bottom", "none"),
        }
    )
    return x.astype(np.float32), truth, errors


def test_describe_clusters_finds_medoid_labels_and_shared_parameters(planted):
    x, _, errors = planted
    d = pairwise_distances(x)
    res = cluster_layer(d, precomputed=True, k_rule="silhouette")
    assert res.k == 3
    clusters = describe_clusters(res.labels, d, errors, ["a", "b", "c"])
    assert [c["size"] for c in clusters] == [12, 8, 5]
    night = clusters[0]
    assert night["true_labels"] == {"a": 12} and night["predicted_labels"] == {"b": 12}
    assert night["scenarios"] == {"night": 12}
    assert night["medoid"] in night["members"]
    # the medoid minimises the summed distance to the other members
    members = [int(s[1:]) for s in night["members"]]
    sums = d[np.ix_(members, members)].sum(axis=1)
    assert night["medoid"] == f"s{members[int(np.argmin(sums))]}"
    assert "brightness" in night["shared_parameters"] and night["captures_cause"]
    assert "rotation" in clusters[2]["shared_parameters"]
    assert clusters[1]["metadata"]["side"] == {"top": "bottom", "share": 1.0}
    # distinctive = low variance AND a shifted mean: brightness is low in the night cluster
    distinct = {d["parameter"]: d for d in night["distinctive_parameters"]}
    assert distinct["brightness"]["direction"] == "low"
    assert distinct["brightness"]["cluster_mean"] < 0.16
    assert distinct["brightness"]["shift_in_std"] <= -1
    tilt = {d["parameter"]: d["direction"] for d in clusters[2]["distinctive_parameters"]}
    assert tilt.get("rotation") == "high"
    # rotation does not set the nominal cluster apart (wide spread, centred)
    assert "rotation" not in {d["parameter"] for d in clusters[1]["distinctive_parameters"]}
    assert abs(sum(c["share_of_errors"] for c in clusters) - 1) < 1e-12


def test_scores_against_ground_truth(planted):
    _, truth, errors = planted
    meta = errors[["meta.brightness", "meta.rotation"]]
    perfect = score_clusters(truth, errors["scenario"], meta)
    assert perfect.purity == 1 and perfect.coverage == 1 and perfect.ari == pytest.approx(1)
    # night and tilt clusters capture their cause; the share agrees with describe_clusters
    d = pairwise_distances(planted[0])
    described = describe_clusters(truth, d, errors, ["a", "b", "c"])
    assert described[0]["captures_cause"] and described[2]["captures_cause"]
    share = np.mean([c["captures_cause"] for c in described])
    assert perfect.variance_ratio_share == pytest.approx(share) and share >= 2 / 3
    merged = score_clusters(np.where(truth == 2, 0, truth), errors["scenario"])
    assert merged.coverage == pytest.approx(2 / 3) and merged.uncovered == ("tilt",)
    assert merged.purity == pytest.approx((12 / 17 + 1) / 2)
    assert merged.purity_weighted == pytest.approx((12 + 8) / 25)
    noisy = score_clusters(np.where(truth == 1, -1, truth), errors["scenario"])
    assert noisy.noise_share == pytest.approx(8 / 25) and noisy.n_clusters == 2


def test_error_inputs_selects_wrong_labelled_predictions():
    samples = pd.DataFrame(
        {
            "sample_id": list("abcde"),
            "split": ["test", "test", "train", "pool", "test"],
            "correct": pd.array([True, False, False, pd.NA, False], dtype="boolean"),
        }
    )
    assert error_inputs(samples)["sample_id"].tolist() == ["b", "e"]
    assert error_inputs(samples, "train")["sample_id"].tolist() == ["c"]
    with pytest.raises(InvalidInputError, match="unlabeled"):
        error_inputs(samples, "pool")
    with pytest.raises(InvalidInputError, match="no 'val'"):
        error_inputs(samples, "val")


def test_pictures_are_written(tmp_path, planted):
    x, _, _ = planted
    res = cluster_layer(pairwise_distances(x), precomputed=True)
    plot_wicd(res, tmp_path / "wicd.png")
    assert Image.open(tmp_path / "wicd.png").size[0] > 300
    images = torch.rand(7, 3, 16, 16)
    rel = np.random.default_rng(0).normal(size=(7, 3, 16, 16))
    contact_sheet(images, tmp_path / "sheet.png", rel, [f"c{i}" for i in range(7)], columns=4)
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.size == (4 * 2 * 64, 2 * (64 + 12))
