from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dnnsafety.bias.slices import find_slices, slice_members
from dnnsafety.exceptions import ConfigError, InvalidInputError


def _planted(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame(
        {
            "brightness": rng.uniform(0, 1, n),
            "fog": rng.uniform(0, 1, n),
            "rotation": rng.normal(0, 10, n),
            "occlusion": np.where(rng.random(n) < 0.8, 0.0, rng.uniform(0.2, 0.6, n)),
            "side": rng.choice(["none", "left"], n),
        }
    )
    planted = (meta["brightness"] < 0.25) & (meta["fog"] > 0.75)
    errors = np.where(planted, rng.random(n) < 0.8, rng.random(n) < 0.05)
    return meta, errors, planted.to_numpy()


def test_the_planted_slice_is_found_first_as_a_readable_rule():
    meta, errors, planted = _planted()
    found = find_slices(meta, errors, k=3, n_bins=4)
    top = found[0]
    assert {p.column for p in top.predicates} == {"brightness", "fog"}
    assert "brightness in [" in top.rule and " and fog in [" in top.rule
    members = slice_members(meta, top)
    assert members.sum() == top.support
    # the slice is (almost) the planted region
    assert (members & planted).sum() / members.sum() > 0.9
    assert (members & planted).sum() / planted.sum() > 0.8
    assert top.error_rate == pytest.approx(errors[members].mean())
    assert top.ci_low < top.error_rate < top.ci_high
    assert top.describe().endswith(f"support {top.support}")
    # sequential covering: later slices do not repeat the first one
    for other in found[1:]:
        assert (slice_members(meta, other) & members).sum() < 0.5 * other.support


def test_point_mass_is_its_own_bin_and_nothing_to_find_gives_nothing():
    meta, _, _ = _planted()
    errors = (meta["occlusion"] == 0).to_numpy()
    found = find_slices(meta, errors, k=1, max_l=1, max_share=1.0)
    assert found and found[0].rule == "occlusion = 0" and found[0].error_rate == 1.0
    # 80% of the inputs is no group: by default such a slice is not returned
    assert all(s.support <= len(meta) / 2 for s in find_slices(meta, errors, max_l=1))
    # the other occlusion values form one bin that excludes the point mass
    found = find_slices(meta, ~errors, k=1, max_l=1, n_bins=4)
    assert found[0].rule.startswith("occlusion in [0.2") and found[0].error_rate == 1.0
    assert slice_members(meta, found[0]).sum() == found[0].support == (~errors).sum()
    assert find_slices(meta, np.zeros(len(meta), bool)) == []
    assert find_slices(pd.DataFrame({"c": np.ones(50)}), np.ones(50, bool)) == []


def test_bad_arguments():
    meta, errors, _ = _planted(100)
    with pytest.raises(InvalidInputError):
        find_slices(meta, errors[:5])
    with pytest.raises(ConfigError):
        find_slices(meta, errors, k=0)
    with pytest.raises(ConfigError):
        find_slices(meta, errors, alpha=0)
