"""Tests of the procedural traffic-sign simulator (dnnsafety.sim)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from dnnsafety.data.dataset import NOMINAL, SPLITS
from dnnsafety.data.signs import generate_signs
from dnnsafety.exceptions import ConfigError, HiddenLabelsError, InvalidInputError
from dnnsafety.sim import (
    LOOK_ALIKE_PAIRS,
    PARAMETER_COLUMNS,
    RARE_SCENARIOS,
    SCENARIO_NAMES,
    SCENARIOS,
    SIGN_CLASSES,
    SIGN_RADIUS,
    Scenario,
    ScenarioConfig,
    render_signs,
    sample_parameters,
    sign_template_image,
    sign_templates,
)

SIZE = 32
NEUTRAL: dict[str, Any] = {
    "brightness": 1.0,
    "contrast": 1.0,
    "cast_r": 1.0,
    "cast_g": 1.0,
    "cast_b": 1.0,
    "fog": 0.0,
    "blur": 0.0,
    "noise": 0.0,
    "rotation": 0.0,
    "scale": 0.7,
    "shift_x": 0.0,
    "shift_y": 0.0,
    "occlusion": 0.0,
    "occlusion_side": "none",
    "clutter": 0.3,
}


def params(n: int = 16, label: int | list[int] = 0, **overrides: Any) -> pd.DataFrame:
    """A parameter table with neutral rendering settings, overridden per column."""
    labels = np.resize(np.asarray(label, dtype=np.int64), n)
    frame = pd.DataFrame({"label": labels, "scenario": [NOMINAL] * n})
    for col in PARAMETER_COLUMNS:
        frame[col] = overrides.get(col, NEUTRAL[col])
    return frame


def render(n: int = 16, label: int | list[int] = 0, seed: int = 0, **kw: Any) -> torch.Tensor:
    return render_signs(params(n, label, **kw), size=SIZE, seed=seed)


def high_freq(img: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels (high-frequency energy)."""
    dx = (img[..., :, 1:] - img[..., :, :-1]).abs().mean()
    dy = (img[..., 1:, :] - img[..., :-1, :]).abs().mean()
    return float(dx + dy)


def corners(img: torch.Tensor, k: int = 4) -> torch.Tensor:
    """The four k x k corner patches (outside the centred sign), stacked: 4 x N x C x k x k."""
    return torch.stack([img[..., :k, :k], img[..., :k, -k:], img[..., -k:, :k], img[..., -k:, -k:]])


def red_mask(img: torch.Tensor) -> torch.Tensor:
    """Clearly red pixels (sign red; the plain background palette has none)."""
    r, g, b = img[:, 0], img[:, 1], img[:, 2]
    return ((r > 0.45) & (g < 0.3) & (b < 0.3)).float()


# ------------------------------------------------------------------------------------------
# Templates and classes
# ------------------------------------------------------------------------------------------


def test_classes_and_templates() -> None:
    assert len(SIGN_CLASSES) >= 8
    assert len(set(SIGN_CLASSES)) == len(SIGN_CLASSES)
    t = sign_templates(48)
    assert t.shape == (len(SIGN_CLASSES), 4, 48, 48)
    assert t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    # Premultiplied colour never exceeds coverage.
    assert bool((t[:, :3] <= t[:, 3:4] + 1e-6).all())
    # Every pair of classes differs clearly.
    flat = t.flatten(1)
    dist = torch.cdist(flat, flat, p=1) / flat.shape[1]
    off_diag = dist + torch.eye(len(SIGN_CLASSES)) * 1e9
    assert float(off_diag.min()) > 0.01
    # The public tensor is a copy: editing it does not change later renders.
    t.zero_()
    assert float(sign_templates(48).abs().sum()) > 0


def test_template_image_and_unknown_class() -> None:
    img = sign_template_image("stop", 40)
    assert img.mode == "RGBA" and img.size == (40, 40)
    with pytest.raises(InvalidInputError, match="Unknown sign class"):
        sign_template_image("banana")
    with pytest.raises(InvalidInputError, match="resolution"):
        sign_templates(2)


@pytest.mark.parametrize(("a", "b"), [("speed_30", "speed_80"), ("turn_left", "turn_right")])
def test_look_alike_pairs_differ_only_in_symbol(a: str, b: str) -> None:
    res = 64
    t = sign_templates(res)
    ta, tb = t[SIGN_CLASSES.index(a)], t[SIGN_CLASSES.index(b)]
    # Same outline ...
    assert torch.equal(ta[3], tb[3])
    # ... and the pixels that differ all lie in the inner symbol area.
    diff = (ta[:3] - tb[:3]).abs().amax(0) > 1e-3
    assert diff.any()
    ys, xs = torch.nonzero(diff, as_tuple=True)
    r = torch.hypot((xs + 0.5) / (res / 2) - 1, (ys + 0.5) / (res / 2) - 1)
    assert float(r.max()) < 0.9 * SIGN_RADIUS  # inside the rim, which is identical
    assert {a, b} in [set(p) for p in LOOK_ALIKE_PAIRS]


def test_turn_left_is_mirrored_turn_right() -> None:
    t = sign_templates(64)
    left, right = t[SIGN_CLASSES.index("turn_left")], t[SIGN_CLASSES.index("turn_right")]
    assert torch.allclose(left, right.flip(-1), atol=1e-6)


# ------------------------------------------------------------------------------------------
# Rendering: determinism and validation
# ------------------------------------------------------------------------------------------


def test_render_shape_range_and_determinism() -> None:
    cfg = ScenarioConfig(test={"night": 0.2, "fog": 0.2, "tilt": 0.2, "blur": 0.2})
    p = sample_parameters(300, "test", cfg, np.random.default_rng(3), len(SIGN_CLASSES))
    a = render_signs(p, size=SIZE, seed=7)
    assert a.shape == (300, 3, SIZE, SIZE) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, render_signs(p, size=SIZE, seed=7))
    # Independent of chunking, and a prefix renders like the start of the whole table.
    assert torch.equal(a, render_signs(p, size=SIZE, seed=7, chunk_size=37))
    assert torch.equal(a[:100], render_signs(p.iloc[:100], size=SIZE, seed=7, chunk_size=64))
    # Another seed changes the unrecorded randomness (background, noise pattern).
    b = render_signs(p, size=SIZE, seed=8)
    assert not torch.equal(a, b)
    assert float((a - b).abs().mean()) > 0.01


def test_sample_parameters_deterministic() -> None:
    cfg = ScenarioConfig()
    a = sample_parameters(500, "pool", cfg, np.random.default_rng(1), 10)
    b = sample_parameters(500, "pool", cfg, np.random.default_rng(1), 10)
    c = sample_parameters(500, "pool", cfg, np.random.default_rng(2), 10)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_render_restores_thread_setting() -> None:
    before = torch.get_num_threads()
    render_signs(params(4), num_threads=1)
    assert torch.get_num_threads() == before


def test_render_other_sizes() -> None:
    for size in (16, 48):
        out = render_signs(params(3), size=size)
        assert out.shape == (3, 3, size, size)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "fog"}, "lacks column"),
        ({"fog": 1.5}, "'fog'"),
        ({"blur": float("nan")}, "'blur'"),
        ({"label": 99}, "label"),
        ({"occlusion_side": "middle"}, "occlusion_side"),
        ({"brightness": "bright"}, "numeric"),
    ],
)
def test_render_rejects_bad_parameters(change: dict[str, Any], message: str) -> None:
    p = params(4)
    for key, value in change.items():
        if key == "drop":
            p = p.drop(columns=[value])
        else:
            p[key] = value
    with pytest.raises(InvalidInputError, match=message):
        render_signs(p)


def test_render_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="size"):
        render_signs(params(2), size=4)
    with pytest.raises(InvalidInputError, match="seed"):
        render_signs(params(2), seed=-1)
    with pytest.raises(InvalidInputError, match="DataFrame"):
        render_signs({"label": [0]})


def test_render_empty_table() -> None:
    assert render_signs(params(0)).shape == (0, 3, SIZE, SIZE)


# ------------------------------------------------------------------------------------------
# Rendering: every parameter has its intended, measurable effect
# ------------------------------------------------------------------------------------------


def test_brightness_scales_intensity() -> None:
    bright = render(brightness=1.0)
    dark = render(brightness=0.3)
    ratio = float(dark.mean() / bright.mean())
    assert 0.25 < ratio < 0.35


def test_contrast_scales_deviation_from_mean() -> None:
    low, high = render(contrast=0.6), render(contrast=1.3)
    assert float(high.std(dim=(1, 2, 3)).mean()) > 1.5 * float(low.std(dim=(1, 2, 3)).mean())


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_colour_cast_shifts_one_channel(channel: int) -> None:
    name = ("cast_r", "cast_g", "cast_b")[channel]
    base = render(label=list(range(len(SIGN_CLASSES))))
    cast = render_signs(params(16, list(range(len(SIGN_CLASSES))), **{name: 1.25}), size=SIZE)
    means_base = base.mean(dim=(0, 2, 3))
    means_cast = cast.mean(dim=(0, 2, 3))
    others = [c for c in range(3) if c != channel]
    assert float(means_cast[channel]) > float(means_base[channel]) * 1.15
    assert torch.allclose(means_cast[others], means_base[others], atol=1e-6)


def test_fog_lowers_contrast_and_pulls_towards_haze() -> None:
    clear, foggy = render(fog=0.0), render(fog=0.8)
    assert float(foggy.std(dim=(1, 2, 3)).mean()) < 0.35 * float(clear.std(dim=(1, 2, 3)).mean())
    haze = torch.tensor([0.78, 0.8, 0.83]).view(1, 3, 1, 1)
    assert float((foggy - haze).abs().mean()) < 0.3 * float((clear - haze).abs().mean())


def test_blur_removes_high_frequencies() -> None:
    sharp, soft, softer = render(blur=0.0), render(blur=1.0), render(blur=2.0)
    assert high_freq(soft) < 0.7 * high_freq(sharp)
    assert high_freq(softer) < 0.8 * high_freq(soft)
    # Blur keeps the mean intensity (normalised kernels).
    assert abs(float(soft.mean() - sharp.mean())) < 0.01


def test_noise_adds_pixel_variance_on_flat_regions() -> None:
    clean = corners(render(clutter=0.0, noise=0.0))
    noisy = corners(render(clutter=0.0, noise=0.1))
    residual = (noisy - clean).std()
    assert 0.08 < float(residual) < 0.11
    assert float(noisy.std(dim=(-2, -1)).mean()) > 2 * float(clean.std(dim=(-2, -1)).mean())


def red_centroid(img: torch.Tensor) -> tuple[float, float]:
    """Mean (x, y) in [-1, 1] of clearly red pixels over a batch."""
    mask = red_mask(img)
    assert float(mask.sum()) > 50
    coords = (torch.arange(SIZE) + 0.5) / (SIZE / 2) - 1
    x = float((mask * coords.view(1, 1, -1)).sum() / mask.sum())
    y = float((mask * coords.view(1, -1, 1)).sum() / mask.sum())
    return x, y


def test_rotation_moves_mass() -> None:
    yield_label = SIGN_CLASSES.index("yield")  # wide red edge at the top
    x0, y0 = red_centroid(render(label=yield_label, clutter=0.0, rotation=0.0))
    x180, y180 = red_centroid(render(label=yield_label, clutter=0.0, rotation=180.0))
    x90, y90 = red_centroid(render(label=yield_label, clutter=0.0, rotation=90.0))
    assert y0 < -0.05 and y180 > 0.05  # upside down
    assert abs(x0) < 0.03 and abs(x180) < 0.03
    # Positive angles turn counter-clockwise: the heavy top edge moves to the left.
    assert x90 < -0.05 and abs(y90) < 0.03


def test_scale_and_shift_move_the_sign() -> None:
    label = SIGN_CLASSES.index("no_entry")
    small = red_centroid(render(label=label, clutter=0.0, scale=0.4))
    right = red_centroid(render(label=label, clutter=0.0, shift_x=0.15))
    down = red_centroid(render(label=label, clutter=0.0, shift_y=0.15))
    assert right[0] > 0.2 and abs(right[1]) < 0.05
    assert down[1] > 0.2 and abs(down[0]) < 0.05
    red_small = red_mask(render(label=label, clutter=0.0, scale=0.4)).sum()
    red_big = red_mask(render(label=label, clutter=0.0, scale=0.8)).sum()
    assert float(red_big) > 2.5 * float(red_small)
    assert abs(small[0]) < 0.05


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right"])
def test_occlusion_covers_the_requested_side(side: str) -> None:
    scale = 0.7
    plain = render(scale=scale)
    covered = render(scale=scale, occlusion=0.5, occlusion_side=side)
    diff = (covered - plain).abs().amax(dim=(0, 1))  # H x W
    centre, radius = SIZE / 2, SIGN_RADIUS * scale * SIZE / 2
    lo, hi = int(centre - radius) + 1, int(centre + radius) - 1
    near, far = slice(int(centre) + 2, hi), slice(lo, int(centre) - 2)
    inside = slice(lo, hi)
    if side == "bottom":
        hit, miss = diff[near, inside], diff[far, inside]
    elif side == "top":
        hit, miss = diff[far, inside], diff[near, inside]
    elif side == "right":
        hit, miss = diff[inside, near], diff[inside, far]
    else:
        hit, miss = diff[inside, far], diff[inside, near]
    assert float((hit > 0.02).float().mean()) > 0.9
    assert float(miss.max()) < 1e-5


def test_occlusion_amount_is_fraction_of_sign() -> None:
    scale = 0.8
    plain = render(scale=scale)
    radius = SIGN_RADIUS * scale * SIZE / 2
    coords = torch.arange(SIZE) + 0.5 - SIZE / 2
    disc = torch.hypot(coords.view(-1, 1), coords.view(1, -1)) < radius - 1
    for f in (0.25, 0.5, 0.75):
        covered = render(scale=scale, occlusion=f, occlusion_side="bottom")
        changed = (covered - plain).abs().amax(dim=1) > 1e-4  # N x H x W
        observed = float(changed[:, disc].float().mean())
        # Area of a circular segment of height 2 f (radius 1), as a share of the disc.
        c = 1 - 2 * f
        expected = (math.acos(c) - c * math.sqrt(1 - c * c)) / math.pi
        assert abs(observed - expected) < 0.08, (f, observed, expected)


def test_clutter_increases_background_variance() -> None:
    calm = corners(render(64, clutter=0.0), k=6)
    busy = corners(render(64, clutter=0.9), k=6)
    assert float(busy.std(dim=(-2, -1)).mean()) > 1.5 * float(calm.std(dim=(-2, -1)).mean())
    assert high_freq(busy) > 1.5 * high_freq(calm)
    # Even without clutter the background is not one flat colour.
    assert float(calm.std(dim=(-2, -1)).mean()) > 0.005


# ------------------------------------------------------------------------------------------
# Scenarios
# ------------------------------------------------------------------------------------------


def test_default_config_under_represents_rare_scenarios() -> None:
    cfg = ScenarioConfig()
    assert set(RARE_SCENARIOS) >= {"night", "fog", "occlusion_lower", "tilt"}
    for split in ("train", "val"):
        probs = cfg.probabilities(split)
        assert all(0.004 <= probs[s] <= 0.01 for s in RARE_SCENARIOS)
    for split in ("test", "pool"):
        probs = cfg.probabilities(split)
        assert all(0.09 <= probs[s] <= 0.13 for s in RARE_SCENARIOS)
    for split in ("train", "val", "test", "pool"):
        assert math.isclose(sum(cfg.probabilities(split).values()), 1.0)


def test_config_dict_round_trip() -> None:
    cfg = ScenarioConfig(test={"fog": 0.3, "blur": 0.1})
    data = cfg.to_dict()
    assert data["test"] == {"fog": 0.3, "blur": 0.1}
    assert ScenarioConfig.from_dict(data) == cfg
    # Missing splits keep their defaults.
    partial = ScenarioConfig.from_dict({"pool": {"night": 0.5}})
    assert partial.for_split("pool") == {"night": 0.5}
    assert partial.for_split("train") == ScenarioConfig().for_split("train")
    hash(cfg)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tran": {}}, "unknown split"),
        ({"test": {"snow": 0.1}}, "unknown scenario"),
        ({"test": {"nominal": 0.5}}, "remainder"),
        ({"test": {"fog": -0.1}}, r"\[0, 1\]"),
        ({"test": {"fog": 1.2}}, r"\[0, 1\]"),
        ({"test": {"fog": 0.6, "night": 0.6}}, "sum"),
        ({"test": {"fog": "high"}}, "number"),
        ({"test": {"fog": True}}, "number"),
        ({"test": [0.1]}, "mapping"),
        ([("test", {})], "mapping"),
    ],
)
def test_config_rejects_invalid(data: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ScenarioConfig.from_dict(data)


def test_scenario_definition_is_validated() -> None:
    with pytest.raises(ConfigError, match="sharpness"):
        Scenario("x", "bad", {"sharpness": (0.0, 1.0)})
    with pytest.raises(ConfigError, match="occlusion_side"):
        Scenario("x", "bad", {"occlusion": (0.1, 0.2)}, occlusion_side="middle")
    with pytest.raises(TypeError):
        SCENARIOS["night"].overrides["brightness"] = (0.0, 1.0)


def test_config_constructor_validates() -> None:
    with pytest.raises(ConfigError, match="sum"):
        ScenarioConfig(train={"night": 0.7, "tilt": 0.7})
    with pytest.raises(ConfigError, match="Unknown split"):
        ScenarioConfig().for_split("holdout")


@pytest.mark.parametrize("split", ["train", "test"])
def test_sampled_frequencies_match_config(split: str) -> None:
    cfg = ScenarioConfig(
        train={"night": 0.01, "fog": 0.01, "occlusion_lower": 0.01, "tilt": 0.01},
        test={"night": 0.1, "fog": 0.12, "occlusion_lower": 0.1, "tilt": 0.1, "noise": 0.05},
    )
    n = 40_000
    frame = sample_parameters(n, split, cfg, np.random.default_rng(0), len(SIGN_CLASSES))
    observed = frame["scenario"].value_counts(normalize=True)
    for tag, p in cfg.probabilities(split).items():
        tolerance = 5 * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-9
        assert abs(observed.get(tag, 0.0) - p) <= tolerance, tag
    labels = frame["label"].value_counts(normalize=True)
    assert len(labels) == len(SIGN_CLASSES)
    assert float(labels.min()) > 0.08


def test_scenarios_override_their_parameters() -> None:
    probs = dict.fromkeys(SCENARIO_NAMES, 0.8 / len(SCENARIO_NAMES))
    frame = sample_parameters(
        6000, "test", ScenarioConfig(test=probs), np.random.default_rng(5), len(SIGN_CLASSES)
    )
    assert list(frame.columns) == ["label", "scenario", *PARAMETER_COLUMNS]
    for name, scen in SCENARIOS.items():
        rows = frame[frame["scenario"] == name]
        assert len(rows) > 500
        for param, (low, high) in scen.overrides.items():
            values = rows[param].abs() if param in scen.random_sign else rows[param]
            assert values.between(low, high).all(), (name, param)
    tilt = frame.loc[frame["scenario"] == "tilt", "rotation"]
    assert (tilt > 0).any() and (tilt < 0).any()
    occ = frame[frame["scenario"] == "occlusion_lower"]
    assert (occ["occlusion_side"] == "bottom").all()
    nominal = frame[frame["scenario"] == NOMINAL]
    assert len(nominal) > 0 and nominal["rotation"].abs().max() <= 10
    night = frame[frame["scenario"] == "night"]
    assert night["brightness"].max() < 0.3 and night["noise"].mean() > nominal["noise"].mean()
    assert ((frame["occlusion"] > 0) == (frame["occlusion_side"] != "none")).all()


def test_sample_parameters_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidInputError, match="non-negative"):
        sample_parameters(-1, "train", ScenarioConfig(), rng, 10)
    with pytest.raises(InvalidInputError, match="num_classes"):
        sample_parameters(5, "train", ScenarioConfig(), rng, 0)
    with pytest.raises(ConfigError, match="Unknown split"):
        sample_parameters(5, "holdout", ScenarioConfig(), rng, 10)
    with pytest.raises(ConfigError, match="ScenarioConfig"):
        sample_parameters(5, "train", {"train": {}}, rng, 10)
    assert len(sample_parameters(0, "train", ScenarioConfig(), rng, 10)) == 0


# ------------------------------------------------------------------------------------------
# generate_signs
# ------------------------------------------------------------------------------------------


def test_generate_signs_dataset() -> None:
    sizes = {"train": 60, "val": 12, "test": 40, "pool": 30}
    seen: list[int] = []
    ds = generate_signs(sizes, seed=3, progress=seen.append)
    assert ds.name == "signs"
    assert ds.class_names == SIGN_CLASSES
    assert sum(seen) == sum(sizes.values())
    for name, n in sizes.items():
        split = ds[name]
        assert len(split) == n
        assert split.images.shape == (n, 3, SIZE, SIZE)
        assert split.images.dtype == torch.float32
        assert float(split.images.min()) >= 0 and float(split.images.max()) <= 1
        assert all(re.fullmatch(rf"signs-{name}-\d{{6}}", i) for i in split.ids)
        assert split.ids[5] == f"signs-{name}-000005"
        assert split.metadata is not None
        assert list(split.metadata.columns) == list(PARAMETER_COLUMNS)
        assert set(split.scenarios) <= {NOMINAL, *SCENARIO_NAMES}
    with pytest.raises(HiddenLabelsError):
        _ = ds["pool"].labels
    assert ds["train"].labels.min() >= 0 and ds["train"].labels.max() < len(SIGN_CLASSES)


def test_generate_signs_seeding() -> None:
    a = generate_signs({"train": 20, "test": 10}, seed=1)
    b = generate_signs({"train": 20, "test": 10, "pool": 5}, seed=1)
    c = generate_signs({"train": 20, "test": 10}, seed=2)
    # Adding a split leaves the others unchanged; another seed changes them.
    assert torch.equal(a["train"].images, b["train"].images)
    assert torch.equal(a["test"].images, b["test"].images)
    assert not torch.equal(a["train"].images, c["train"].images)
    # Splits are seeded independently from each other.
    assert not torch.equal(a["train"].images[:10], a["test"].images)


def test_generate_signs_scenario_mix() -> None:
    cfg = ScenarioConfig(test={"night": 1.0}, train={})
    ds = generate_signs({"train": 30, "test": 20}, config=cfg, size=24)
    assert set(ds["test"].scenarios) == {"night"}
    assert set(ds["train"].scenarios) == {NOMINAL}
    assert ds.image_shape == (3, 24, 24)
    assert float(ds["test"].images.mean()) < 0.5 * float(ds["train"].images.mean())


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"train": 5, "holdout": 5, "test": 5}, "Unknown split"),
        ({"train": 5}, "'test'"),
        ({"train": 5, "test": -1}, "non-negative"),
        ({"train": 5, "test": 2.5}, "non-negative"),
    ],
)
def test_generate_signs_rejects_bad_sizes(sizes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_signs(sizes)


def test_generate_signs_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match="ScenarioConfig"):
        generate_signs({"train": 2, "test": 2}, config={"test": {}})


def test_simulator_vocabulary_matches_the_dataset_layer():
    """sim/ does not import data/, so it names splits and the nominal tag itself: keep equal."""
    from dnnsafety.sim import scenarios

    assert scenarios.SPLITS == SPLITS
    assert scenarios.NOMINAL == NOMINAL
