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


# -- checkpoint formats ---------------------------------------------------------------------------


def _small() -> torch.nn.Module:
    return build_model("small_cnn", 1, 3, 8).eval()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # nn.DataParallel / DDP
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {}, "epoch": 7},
        lambda sd: {"model": sd},
        lambda sd: {"net": sd},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {
            "state_dict": {f"model.{k}": v for k, v in sd.items()},
            "epoch": 1,
        },  # Lightning
        lambda sd: {"state_dict": {f"net.{k}": v for k, v in sd.items()}},
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},  # torch.compile
        lambda sd: {f"module.model.{k}": v for k, v in sd.items()},
    ],
    ids=[
        "dataparallel",
        "state_dict",
        "model_state_dict",
        "model",
        "net",
        "model+module",
        "lightning",
        "lightning-net",
        "compile",
        "module.model",
    ],
)
def test_checkpoint_formats_load(tmp_path, wrap):
    trained = _small()
    f = tmp_path / "ckpt.pt"
    torch.save(wrap(trained.state_dict()), f)
    loaded = make_model(ModelConfig(arch="small_cnn", weights=str(f)), 1, 3, 8).eval()
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(trained(x), loaded(x))


def test_lightning_checkpoint_with_loss_buffers_loads_and_warns(tmp_path, caplog):
    trained = _small()
    state = {f"model.{k}": v for k, v in trained.state_dict().items()}
    state["criterion.weight"] = torch.ones(3)
    f = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": state, "global_step": 10}, f)
    loaded = make_model(ModelConfig(arch="small_cnn", weights=str(f)), 1, 3, 8).eval()
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(trained(x), loaded(x))
    assert "criterion.weight" in caplog.text


def test_unknown_prefix_error_names_it(tmp_path):
    state = {f"backbone.{k}": v for k, v in _small().state_dict().items()}
    state["head.weight"] = torch.zeros(1)
    f = tmp_path / "w.pt"
    torch.save({"model_state_dict": {f"encoder.{k}": v for k, v in state.items()}}, f)
    with pytest.raises(ModelLoadError, match=r"all start with 'encoder\.'"):
        make_model(ModelConfig(arch="small_cnn", weights=str(f)), 1, 3, 8)
    f2 = tmp_path / "none.pt"
    torch.save({"epoch": 3, "lr": torch.tensor(0.1)}, f2)
    with pytest.raises(ModelLoadError, match=r"holds no state dict.*epoch, lr"):
        make_model(ModelConfig(arch="small_cnn", weights=str(f2)), 1, 3, 8)


def test_torchscript_or_export_file_given_as_weights_names_the_arch(tmp_path):
    f = tmp_path / "m.ts"
    torch.jit.script(_small()).save(str(f))
    with pytest.raises(ModelLoadError, match=r"TorchScript file.*--arch torchscript"):
        make_model(ModelConfig(arch="small_cnn", weights=str(f)), 1, 3, 8)


# -- --model-factory ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["os:system", "builtins:breakpoint", "subprocess:run", "pdb:set_trace"]
)
def test_standard_library_factories_are_refused(spec):
    with pytest.raises(ConfigError, match="standard library"):
        make_model(ModelConfig(arch="import", factory=spec), 1, 3, 4)


FACTORY_MODULE = """
import pdb
from torch import nn

def debugger():
    breakpoint()
    return nn.Linear(2, 2)

def pdb_trace():
    pdb.set_trace()
    return nn.Linear(2, 2)

def fails():
    raise ValueError("no weights for resnet-9000\\nsecond line")

def exits():
    raise SystemExit(3)

def not_a_module():
    return {"weights": 1}

class NeedsArgs(nn.Module):
    def __init__(self, classes):
        super().__init__()
"""


@pytest.fixture()
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "badfactories.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("badfactories", None)
    yield "badfactories"
    sys.modules.pop("badfactories", None)


def test_factory_never_opens_a_debugger(factory_module, monkeypatch):
    opened = []
    monkeypatch.setattr(sys, "breakpointhook", lambda *a, **k: opened.append(1))
    hook = sys.breakpointhook
    for name in ("debugger", "pdb_trace"):
        with pytest.raises(ModelLoadError, match=r"breakpoint\(\)"):
            make_model(ModelConfig(arch="import", factory=f"{factory_module}:{name}"), 1, 3, 4)
    assert opened == []
    assert sys.breakpointhook is hook  # restored


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fails", r"failed .*ValueError: no weights for resnet-9000$"),
        ("exits", r"failed .*SystemExit: 3$"),
        ("not_a_module", "returned dict, not an nn.Module"),
        ("NeedsArgs", r"called with no arguments.*TypeError"),
    ],
)
def test_factory_errors_are_one_line(factory_module, name, message):
    with pytest.raises(ModelLoadError, match=message) as info:
        make_model(ModelConfig(arch="import", factory=f"{factory_module}:{name}"), 1, 3, 4)
    assert "\n" not in str(info.value)


# -- TorchScript and torch.export -----------------------------------------------------------------


def test_torchscript_load_shows_no_deprecation_warning(tmp_path):
    f = tmp_path / "m.ts"
    torch.jit.script(_small()).save(str(f))
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_torchscript(f)
    assert [str(w.message) for w in caught] == []


def _export(model: torch.nn.Module, path, batch: int | None = None) -> None:
    example = (torch.rand(batch or 2, 1, 8, 8),)
    dynamic = None if batch else ({0: torch.export.Dim("n")},)
    program = torch.export.export(model.eval(), example, dynamic_shapes=dynamic)
    torch.export.save(program, str(path))


@pytest.mark.parametrize("batch", [None, 1, 4])
def test_torch_export_archives_load(tmp_path, batch):
    model = _small()
    f = tmp_path / "m.pt2"
    _export(model, f, batch)
    x = torch.rand(10, 1, 8, 8)
    for arch in ("export", "torchscript"):  # a .pt2 given as torchscript is recognised
        loaded = make_model(ModelConfig(arch=arch, weights=str(f)), 1, 3, 8)
        loaded.eval()  # allowed, although the program's mode is fixed
        torch.testing.assert_close(loaded(x), model(x))


def test_torch_export_archive_with_pickled_entries_is_refused(tmp_path):
    import json
    import zipfile

    from dnnsafety.models.exported import load_exported

    good = tmp_path / "m.pt2"
    _export(_small(), good)
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("_weights_config.json"):
                config = json.loads(data)
                next(iter(config["config"].values()))["use_pickle"] = True
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(UnsafeModelError, match="pickled"):
        load_exported(bad)


# -- ONNX signatures ------------------------------------------------------------------------------


class _ChannelsLast(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 3, 1, 2))


def _onnx(model: torch.nn.Module, path, example: torch.Tensor, dynamic: bool) -> None:
    torch.onnx.export(
        model.eval(),
        (example,),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}} if dynamic else None,
        dynamo=False,
    )


@pytest.mark.parametrize("kind", ["batch1", "float16", "nhwc", "nhwc-batch1"])
def test_onnx_signatures_are_followed(tmp_path, kind):
    model = _small()
    x = torch.rand(7, 1, 8, 8)
    f = tmp_path / "m.onnx"
    if kind == "batch1":
        _onnx(model, f, torch.zeros(1, 1, 8, 8), dynamic=False)
    elif kind == "float16":
        half = build_model("small_cnn", 1, 3, 8).eval()
        half.load_state_dict(model.state_dict())
        _onnx(half.half(), f, torch.zeros(1, 1, 8, 8).half(), dynamic=True)
    else:
        example = torch.zeros(1, 8, 8, 1)
        _onnx(_ChannelsLast(model), f, example, dynamic=kind == "nhwc")
    loaded = make_model(ModelConfig(arch="onnx", weights=str(f)), 1, 3, 8)
    atol = 2e-2 if kind == "float16" else 1e-4
    torch.testing.assert_close(loaded(x), model(x).detach(), atol=atol, rtol=atol)


def test_onnx_output_width_is_checked_against_the_classes(tmp_path):
    f = tmp_path / "m.onnx"
    _onnx(build_model("small_cnn", 1, 5, 8), f, torch.zeros(1, 1, 8, 8), dynamic=True)
    with pytest.raises(ModelLoadError, match="5 scores per image, but the data has 2 classes"):
        make_model(ModelConfig(arch="onnx", weights=str(f)), 1, 2, 8)


def test_onnx_input_that_does_not_fit_the_images_is_a_clear_error(tmp_path):
    f = tmp_path / "m.onnx"
    _onnx(build_model("small_cnn", 3, 3, 16), f, torch.zeros(1, 3, 16, 16), dynamic=True)
    loaded = make_model(ModelConfig(arch="onnx", weights=str(f)), 1, 3, 8)
    with pytest.raises(ModelLoadError, match=r"shaped \['n', 3, 16, 16\].*1 x 8 x 8"):
        loaded(torch.rand(2, 1, 8, 8))


def test_a_model_file_of_another_format_names_its_arch_and_errors_are_not_cut_mid_word(tmp_path):
    from dnnsafety.models.loading import _clip, load_torchscript, safe_load

    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07\x12\x07pytorch" + b"\x00" * 64)  # not a zip archive
    with pytest.raises(ModelLoadError, match=r"A \.onnx file is loaded with --arch onnx"):
        load_torchscript(onnx_file)
    with pytest.raises(ModelLoadError, match=r"A \.onnx file is loaded with --arch onnx"):
        safe_load(onnx_file)
    ts_file = tmp_path / "model.ts"
    ts_file.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError) as info:
        load_torchscript(ts_file)
    assert "--arch torchscript" not in str(info.value)  # no hint to use what failed
    long = "word " * 100
    clipped = _clip(long.strip())
    assert clipped.endswith(" ...") and len(clipped) <= 304
    assert all(w == "word" for w in clipped[:-4].split())  # whole words only
