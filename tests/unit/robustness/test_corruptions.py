from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from dnnsafety.data import inject
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.robustness.corruptions import (
    CORRUPTIONS,
    IMAGENET_C,
    MISSING,
    _library,
    drop,
    imagenet_c,
    names_of,
)
from dnnsafety.testing.robustness_checks import planted_images


def _lib():
    return _library.library()


def test_the_package_loads_without_pkg_resources_and_leaves_no_stand_in():
    module = _lib()
    assert hasattr(module, "gaussian_noise")
    stand_in = sys.modules.get("pkg_resources")
    assert stand_in is None or hasattr(stand_in, "working_set")  # a real one, never ours
    assert _library._resource_filename("imagecorruptions", "frost/frost1.png").endswith(
        "imagecorruptions/frost/frost1.png"
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_library_corruption_equals_the_reference_function_under_the_same_seed(channels):
    x = planted_images(3, channels, 28)
    out = CORRUPTIONS.get("gaussian_noise")(x, 4, np.random.default_rng(7))
    np.random.seed(int(np.random.default_rng(7).integers(2**32)))
    img = (
        x[0, 0].double().numpy() * 255
        if channels == 1
        else x[0].permute(1, 2, 0).double().numpy() * 255
    )
    ref = np.clip(_lib().gaussian_noise(img, 4) / 255, 0, 1)
    got = out[0, 0].numpy() if channels == 1 else out[0].permute(1, 2, 0).numpy()
    assert np.allclose(got, ref, atol=1e-6)


def test_own_motion_blur_and_defocus_kernel_match_the_package():
    img = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    out, params = imagenet_c.motion_blur(
        torch.from_numpy(img)[None, None], 4, np.random.default_rng(1)
    )
    ref = _lib()._motion_blur(img, radius=10, sigma=2.5, angle=params["angle"][0])
    assert np.abs(out[0, 0].numpy() - ref).max() < 1e-5
    for radius, alias in imagenet_c.DEFOCUS:
        assert np.allclose(
            imagenet_c.disk_kernel(radius, alias), _lib().disk(radius, alias), atol=1e-7
        )


@pytest.mark.parametrize(
    "name",
    [
        "defocus_blur",
        "motion_blur",
        "zoom_blur",
        "gaussian_noise",
        "impulse_noise",
        "contrast",
        "fog",
        "brightness",
        "jpeg_compression",
        "shot_noise",
    ],
)
def test_damage_grows_with_severity_on_planted_images(name):
    x = planted_images(16, 3, 32)
    damage = [float((CORRUPTIONS.get(name)(x, s, 0) - x).abs().mean()) for s in (1, 3, 5)]
    assert damage[0] < damage[1] < damage[2], damage


def test_blurs_remove_high_frequencies():
    x = planted_images(8, 1, 28)
    grad = lambda t: (t[..., 1:] - t[..., :-1]).pow(2).mean()  # noqa: E731
    for name in ("defocus_blur", "motion_blur", "zoom_blur"):
        assert grad(CORRUPTIONS.get(name)(x, 5, 0)) < 0.8 * grad(x), name
    # glass blur shuffles pixels locally: the image changes, its mean barely
    glass = CORRUPTIONS.get("glass_blur")(x, 5, 0)
    assert (glass - x).abs().mean() > 0.01
    assert abs(float(glass.mean() - x.mean())) < 0.01


def test_frost_on_grey_images_is_the_luma_of_the_colour_texture():
    tex = imagenet_c.frost_textures()
    assert len(tex) == 6 and all(t.shape[0] >= 32 and t.shape[1] >= 32 for t in tex)
    grey = torch.zeros(4, 1, 28, 28)
    out = CORRUPTIONS.get("frost")(grey, 1, 3)
    assert 0.02 < float(out.mean()) < 0.2  # b = 0.2 times a frost texture in [0, 1]


def test_names_of_families_and_all():
    assert names_of("all") == list(IMAGENET_C) and len(IMAGENET_C) == 15
    assert names_of("noise") == ["gaussian_noise", "shot_noise", "impulse_noise"]
    assert names_of("weather,fog") == ["snow", "frost", "fog", "brightness"]
    assert names_of("missing") == sorted(MISSING)
    assert set(names_of("scenario")) == set(inject.SCENARIOS)
    with pytest.raises(ConfigError, match="Unknown corruption"):
        names_of("rain")


@pytest.mark.parametrize("kind", MISSING)
@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_missing_rate_is_the_share_of_missing_values(kind, rate):
    x = torch.full((400, 3, 32, 32), 0.5)
    out = drop(x, kind, rate, 0)
    share = float((out == 0).float().mean())
    assert share == pytest.approx(rate, abs=0.03)


def test_missing_kinds_have_their_shape():
    x = torch.full((50, 3, 28, 28), 0.5)
    rows_cols = drop(x, "dropped_lines", 0.5, 1) == 0
    full_rows = rows_cols.all(dim=3).any() and not rows_cols.all()
    assert full_rows
    channel = drop(x, "dropped_channel", 0.5, 1) == 0
    per_channel = channel.flatten(2)
    assert ((per_channel.all(2)) | (~per_channel.any(2))).all()  # a channel goes whole
    patches = drop(x, "dropped_patches", 0.5, 1) == 0
    assert patches[:, :, :7, :7].flatten(1).float().std(dim=1).max() == 0  # one 7 x 7 cell
    with pytest.raises(ConfigError):
        drop(x, "dropped_pixels", 1.5)
    with pytest.raises(InvalidInputError):
        drop(x.double(), "dropped_pixels", 0.1)


def test_injected_scenarios_are_the_registry_at_their_scenario_severity():
    x = planted_images(20, 1, 28)
    for name in inject.SCENARIOS:
        entry = CORRUPTIONS.get(name)
        assert entry.family == "scenario" and entry.scenario_severity == 5
        a, pa = inject.CORRUPTIONS[name](x.clone(), np.random.default_rng(4))
        b, pb = entry.sample(x.clone(), 5, np.random.default_rng(4))
        assert torch.equal(a, b) and pa.keys() == pb.keys()
    mild = CORRUPTIONS.get("dark")(x, 1, 0).mean()
    assert mild > CORRUPTIONS.get("dark")(x, 5, 0).mean()


def test_the_input_is_never_changed_and_the_global_numpy_state_is_restored():
    x = planted_images(4, 3, 32)
    before = x.clone()
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    CORRUPTIONS.get("snow")(x, 3, 0)
    assert np.random.random() == expected
    assert torch.equal(x, before)
