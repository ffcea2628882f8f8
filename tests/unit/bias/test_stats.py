from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dnnsafety.bias.stats import benjamini_hochberg, binomial_greater, wilson_interval
from dnnsafety.exceptions import ConfigError, InvalidInputError


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (81, 263), (1, 1000)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_wilson_interval_matches_scipy(k, n, level):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    low, high = wilson_interval(k, n, level)
    assert float(low) == pytest.approx(ref.low, abs=1e-12)
    assert float(high) == pytest.approx(ref.high, abs=1e-12)


def test_wilson_interval_known_value_and_empty_groups():
    # 0 errors in 10: the upper bound is z^2 / (n + z^2) = 0.2775 at 95%
    low, high = wilson_interval(np.array([0, 0]), np.array([10, 0]))
    assert low[0] == 0 and high[0] == pytest.approx(0.27753, abs=1e-5)
    assert (low[1], high[1]) == (0.0, 1.0)
    with pytest.raises(InvalidInputError):
        wilson_interval(5, 3)
    with pytest.raises(ConfigError):
        wilson_interval(1, 3, level=1.5)


def test_binomial_greater_matches_scipy():
    for k, n, p in [(0, 5, 0.1), (7, 20, 0.2), (30, 40, 0.5), (3, 3, 0.9)]:
        ref = stats.binomtest(k, n, p, alternative="greater").pvalue
        assert float(binomial_greater(k, n, p)) == pytest.approx(ref, rel=1e-9)
    assert float(binomial_greater(0, 0, 0.3)) == 1.0


def test_benjamini_hochberg_matches_scipy():
    p = np.random.default_rng(0).random(30) ** 3
    assert np.allclose(benjamini_hochberg(p), stats.false_discovery_control(p))
    assert len(benjamini_hochberg([])) == 0
    with pytest.raises(InvalidInputError):
        benjamini_hochberg([0.1, 1.2])
