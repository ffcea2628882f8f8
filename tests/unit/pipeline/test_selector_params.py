"""``[retrain.params.<selector>]`` reaches the selector, checked against its constructor."""

from __future__ import annotations

import pytest

from dnnsafety.exceptions import ConfigError
from dnnsafety.pipeline.strategies import selector_params


def test_a_selectors_parameters_pass_through_unchanged():
    params = {"hybrid": {"quota": "floor", "floor": 10}, "jtt": {"lambda_up": 20}}
    assert selector_params("hybrid", params) == {"quota": "floor", "floor": 10}
    assert selector_params("entropy", params) == {}


def test_a_parameter_the_selector_does_not_take_is_named_with_the_ones_it_takes():
    with pytest.raises(ConfigError, match=r"retrain.params.hybrid sets flor.*takes: .*floor"):
        selector_params("hybrid", {"hybrid": {"flor": 10}})


def test_a_contrastive_distance_set_as_a_parameter_makes_compare_build_the_correct_inputs():
    """``--set 'retrain.params.hybrid={distance = "contrastive"}'`` (and the same for
    ``closest``) needs the correctly classified inputs' features: the pipeline must build
    them, not leave the selector to fail after the pool features were computed."""
    from dnnsafety.pipeline.strategies import requirements

    assert "correct" not in requirements("hybrid")
    assert "correct" not in requirements("hybrid", {"distance": "nearest"})
    assert "correct" in requirements("hybrid", {"distance": "contrastive"})
    assert "correct" in requirements("closest", {"distance": "contrastive"})
    assert requirements("closest-contrast") >= {"space", "correct"}
