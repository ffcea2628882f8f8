from __future__ import annotations

import pytest

from dnnsafety.config import RunConfig, dump_config, from_dict, load_config, merge
from dnnsafety.exceptions import ConfigError


def test_config_round_trips_through_toml(tmp_path):
    cfg = merge(RunConfig(), {"train.epochs": 3, "data.name": "digits", "seed": 7})
    cfg.data.scenarios = {"train": {"dark": 0.02}}
    f = tmp_path / "config.toml"
    f.write_text(dump_config(cfg))
    assert load_config(f) == cfg


def test_unknown_keys_are_rejected_with_the_valid_ones(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[train]\nepochz = 3\n")
    with pytest.raises(ConfigError, match=r"epochz.*Valid keys:.*epochs"):
        load_config(f)


def test_wrong_types_are_rejected():
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        from_dict(RunConfig, {"train": {"epochs": "many"}})
    with pytest.raises(ConfigError, match="seed"):
        from_dict(RunConfig, {"seed": True})


def test_ints_are_accepted_for_floats_and_invalid_toml_is_reported(tmp_path):
    cfg = from_dict(RunConfig, {"train": {"lr": 1}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    f = tmp_path / "bad.toml"
    f.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(f)
