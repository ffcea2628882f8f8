from __future__ import annotations

import pytest

from dnnsafety.config import (
    RunConfig,
    dump_config,
    from_dict,
    load_config,
    merge,
    parse_overrides,
    parse_value,
)
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


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("3", 3),
        ("-1_000", -1000),
        ("0.01", 0.01),
        ("1e-3", 0.001),
        ("true", True),
        ("false", False),
        ("cosine", "cosine"),
        ("'silhouette'", "silhouette"),
        ('"C:\\x"', "C:\\x"),
        ("C:\\data\\new", "C:\\data\\new"),
        ("007", "007"),
        ('["fox", "dog"]', ["fox", "dog"]),
        ("[1, 2.5, true]", [1, 2.5, True]),
        ("[]", []),
        ("{dark = 0.02, fog = 1}", {"dark": 0.02, "fog": 1}),
        ("  spaced  ", "spaced"),
    ],
)
def test_command_line_values_are_typed_without_toml_escapes(raw, value):
    parsed = parse_value(raw)
    assert parsed == value and type(parsed) is type(value)


def test_overrides_are_a_dict_and_backslashes_reach_config_toml_unchanged(tmp_path):
    overrides = parse_overrides(["data.path=C:\\x\\y", "train.epochs=3", "data.name='folder'"])
    assert overrides == {"data.path": "C:\\x\\y", "train.epochs": 3, "data.name": "folder"}
    f = tmp_path / "config.toml"
    f.write_text(dump_config(merge(RunConfig(), overrides)))
    assert load_config(f).data.path == "C:\\x\\y"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.epochs"])
