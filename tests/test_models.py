from __future__ import annotations

import os
import pickle
import sys
import textwrap

import pytest
import torch

from dnnsafety.config import ModelConfig
from dnnsafety.exceptions import ConfigError, ModelLoadError, UnsafeModelError
from dnnsafety.models.loading import load_torchscript, make_model, safe_load
from dnnsafety.models.zoo import MODELS, build_model


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 28), (1, 8)])
def test_zoo_models_map_images_to_logits(arch, channels, size):
    model = build_model(arch, channels, 10, size).eval()
    out = model(torch.rand(2, channels, size, size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_resnet_has_batchnorm_and_skip_connections():
    model = build_model("resnet", 3, 10, 32)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"BatchNorm2d", "BasicBlock", "Conv2d", "Linear"} <= kinds


class _Exploit:
    """Unpickling this would create a marker file: the attack a weights file can carry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Exploit(str(marker))}, evil)
    with pytest.raises(UnsafeModelError, match="Refusing to load"):
        safe_load(evil)
    assert not marker.exists()
    # a raw (non-zip) pickle too
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises((UnsafeModelError, ModelLoadError)):
        safe_load(raw)
    assert not marker.exists()
    # and through the model config path
    cfg = ModelConfig(arch="small_cnn", weights=str(evil))
    with pytest.raises(UnsafeModelError):
        make_model(cfg, 3, 10, 32)
    assert not marker.exists()


def test_state_dict_round_trip_and_mismatch_message(tmp_path):
    model = build_model("small_cnn", 3, 10, 32)
    f = tmp_path / "w.pt"
    torch.save(model.state_dict(), f)
    loaded = make_model(ModelConfig(arch="small_cnn", weights=str(f)), 3, 10, 32)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), loaded.eval()(x))
    with pytest.raises(ModelLoadError, match="do not fit"):
        make_model(ModelConfig(arch="small_cnn", weights=str(f)), 3, 5, 32)
    with pytest.raises(ModelLoadError, match="does not exist"):
        make_model(ModelConfig(arch="small_cnn", weights=str(tmp_path / "none.pt")), 3, 10, 32)


def test_torchscript_model_loads(tmp_path):
    model = build_model("small_cnn", 1, 10, 28).eval()
    f = tmp_path / "m.ts"
    torch.jit.script(model).save(str(f))
    loaded = make_model(ModelConfig(arch="torchscript", weights=str(f)), 1, 10, 28)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(model(x), loaded(x))
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"not an archive")
    with pytest.raises(ModelLoadError, match="TorchScript"):
        load_torchscript(bad)


def test_import_factory_with_state_dict(tmp_path, monkeypatch):
    (tmp_path / "usermodel.py").write_text(
        textwrap.dedent(
            """
            from torch import nn
            def build():
                return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("usermodel", None)
    cfg = ModelConfig(arch="import", factory="usermodel:build")
    model = make_model(cfg, 1, 3, 4)
    f = tmp_path / "w.pt"
    torch.save(model.state_dict(), f)
    again = make_model(
        ModelConfig(arch="import", factory="usermodel:build", weights=str(f)), 1, 3, 4
    )
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(model(x), again(x))
    with pytest.raises(ConfigError, match=r"module:callable|package\.module:function"):
        make_model(ModelConfig(arch="import", factory="nocolon"), 1, 3, 4)
    with pytest.raises(ModelLoadError, match="Cannot import"):
        make_model(ModelConfig(arch="import", factory="no_such_mod:build"), 1, 3, 4)


def test_unknown_arch_lists_choices():
    with pytest.raises(ConfigError, match="small_cnn"):
        make_model(ModelConfig(arch="vgg99"), 3, 10, 32)
