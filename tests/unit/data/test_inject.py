from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnsafety.data.inject import CORRUPTIONS, InjectionConfig, gaussian_blur, inject
from dnnsafety.exceptions import ConfigError


@pytest.fixture()
def shapes() -> torch.Tensor:
    """Bright squares on black, like a clothing item on Fashion-MNIST's background."""
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 10:18] = 0.9
    return x


def test_each_corruption_changes_the_image_as_intended(shapes, rng):
    out = {name: fn(shapes.clone(), rng)[0] for name, fn in CORRUPTIONS.items()}
    assert out["dark"].mean() < 0.35 * shapes.mean()
    # rotation by ~90 deg turns the tall bar into a wide one
    col_mass = out["rotation"].sum(dim=2).gt(0.3).sum(dim=2).float().mean()
    assert col_mass > 14
    # occlusion paints a grey patch
    assert ((out["occlusion"] - 0.5).abs() < 1e-6).float().mean() > 0.15
    # blur removes high frequencies: smaller gradients
    grad = lambda t: (t[..., 1:] - t[..., :-1]).pow(2).mean()  # noqa: E731
    assert grad(out["blur"]) < 0.6 * grad(shapes)
    # noise raises the spread on the flat background
    assert out["noise"][..., :4, :4].std() > 0.1


def test_scenario_frequencies_follow_the_config(rng):
    cfg = InjectionConfig()
    x = torch.rand(4000, 1, 8, 8)
    _, tags_train, _ = inject(x, "train", cfg, rng)
    _, tags_test, meta = inject(x, "test", cfg, rng)
    assert abs(np.mean(tags_train == "nominal") - 0.95) < 0.02
    assert abs(np.mean(tags_test == "nominal") - 0.5) < 0.03
    for name in CORRUPTIONS:
        assert abs(np.mean(tags_test == name) - 0.1) < 0.02
    dark = tags_test == "dark"
    assert (meta["brightness"][dark] < 0.13).all() and (meta["brightness"][~dark] == 1).all()


def test_injection_is_deterministic():
    x = torch.rand(200, 1, 8, 8)
    a = inject(x, "test", InjectionConfig(), np.random.default_rng(3))
    b = inject(x, "test", InjectionConfig(), np.random.default_rng(3))
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all()


def test_bad_injection_config_is_refused():
    with pytest.raises(ConfigError, match="unknown scenario"):
        InjectionConfig.from_dict({"train": {"snow": 0.1}})
    with pytest.raises(ConfigError, match="sum to"):
        InjectionConfig.from_dict({"test": {"dark": 0.6, "blur": 0.6}})
    with pytest.raises(ConfigError, match="unknown split"):
        InjectionConfig.from_dict({"holdout": {"dark": 0.1}})


def test_gaussian_blur_preserves_mean_and_matches_a_reference():
    x = torch.rand(2, 3, 16, 16)
    out = gaussian_blur(x, np.array([0.8, 2.0]))
    assert torch.allclose(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.03)
    # interior pixel equals the explicit separable sum
    sigma, r = 0.8, 3
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    patch = x[0, 0, 8 - r : 8 + r + 1, 8 - r : 8 + r + 1].double().numpy()
    assert abs(float(k @ patch @ k) - float(out[0, 0, 8, 8])) < 1e-5
