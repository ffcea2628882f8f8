"""LRP heatmaps: rules against slow references, zennit vs fast path, model hygiene, the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat

from dnnsafety.exceptions import ConfigError, InvalidInputError, RunDirError
from dnnsafety.features import (
    RULESETS,
    HeatmapStore,
    compute_heatmaps,
    find_layers,
    layer_relevance,
)
from dnnsafety.features import store as store_module
from dnnsafety.features.lrp import MergeBatchNorm
from dnnsafety.models.zoo import build_model

BACKENDS = ("zennit", "fast")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids OpenMP contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- slow float64 reference of the HUDD tool's rules ---------------------------------------------
def _ref_conv_epsilon(x: np.ndarray, w: np.ndarray, b: np.ndarray, r: np.ndarray, eps: float):
    """z-rule, paper form R_j = sum_k a_j w_jk / (z_k + eps sign z_k) R_k; stride 1, pad 1."""
    h, wd = x.shape[2:]
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    r_in = np.zeros_like(xp)
    for i in range(h):
        for j in range(wd):
            patch = xp[:, :, i : i + k, j : j + k]
            contrib = np.einsum("ncij,ocij->nocij", patch, w)
            z = contrib.sum(axis=(2, 3, 4)) + b
            s = z + eps * np.where(z >= 0, 1.0, -1.0)
            r_in[:, :, i : i + k, j : j + k] += np.einsum(
                "nocij,no->ncij", contrib, r[:, :, i, j] / s
            )
    return r_in[:, :, 1:-1, 1:-1]


def _ref_maxpool(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Winner-take-all through a 2x2 max pool."""
    r_in = np.zeros_like(x)
    n, c, h, w = r.shape
    for a in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    window = x[a, ch, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                    di, dj = np.unravel_index(np.argmax(window), window.shape)
                    r_in[a, ch, 2 * i + di, 2 * j + dj] += r[a, ch, i, j]
    return r_in


def _ref_linear_zplus(x: np.ndarray, w: np.ndarray, r: np.ndarray, eps: float) -> np.ndarray:
    """z+: positive weights, no bias, denominator + eps."""
    contrib = x[:, None, :] * np.clip(w, 0, None)[None]
    z = contrib.sum(axis=2) + eps
    return (contrib * (r / z)[:, :, None]).sum(axis=1)


def _tiny_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 12),
        nn.ReLU(),
        nn.Linear(12, 3),
    ).double()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.bias.normal_(0, 0.02)
    return net


def _hudd_reference(net: nn.Sequential, x: torch.Tensor) -> dict[str, np.ndarray]:
    acts = [x.numpy()]
    with torch.no_grad():
        for m in net:
            acts.append(m(torch.from_numpy(acts[-1])).numpy())
    logits = acts[-1]
    r = np.zeros_like(logits)
    rows = np.arange(len(logits))
    r[rows, logits.argmax(1)] = logits[rows, logits.argmax(1)]
    p = {
        i: (m.weight.detach().numpy(), m.bias.detach().numpy())
        for i, m in enumerate(net)
        if isinstance(m, nn.Conv2d | nn.Linear)
    }
    maps: dict[str, np.ndarray] = {}
    r = _ref_linear_zplus(acts[8], p[8][0], r, 1e-9)  # input of module 8 (after ReLU 7: pass)
    maps["8"] = r
    r = _ref_linear_zplus(acts[6], p[6][0], r, 1e-9)
    maps["6"] = r
    r = r.reshape(acts[5].shape)  # Flatten, then ReLU 4 passes
    r = _ref_conv_epsilon(acts[3], *p[3], r, 1e-9)
    maps["3"] = r
    r = _ref_maxpool(acts[2], r)  # ReLU 1 passes
    maps["2"] = r
    maps["input"] = _ref_conv_epsilon(acts[0], *p[0], r, 1e-9)
    return maps


@pytest.mark.parametrize("backend", BACKENDS)
def test_hudd_rules_match_slow_reference_on_every_layer(backend: str) -> None:
    net = _tiny_net()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    ref = _hudd_reference(net, x)
    got = layer_relevance(net, x, ruleset="hudd", backend=backend)
    assert got.backend == backend
    assert [info.name for info in got.layers] == ["input", "2", "3", "6", "8"]
    for name, expected in ref.items():
        assert np.count_nonzero(expected) > expected.size // 10, name
        np.testing.assert_allclose(got.maps[name].numpy(), expected, rtol=1e-9, atol=1e-12)


def test_default_ruleset_is_zennit_epsilon_plus_flat() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 5),
    ).double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        logits = net(x)
    start = torch.zeros_like(logits)
    t = logits.argmax(1)
    start[torch.arange(2), t] = logits[torch.arange(2), t]
    with Gradient(net, EpsilonPlusFlat()) as attributor:
        _, expected = attributor(x, start)
    for backend in BACKENDS:
        got = layer_relevance(net, x, ruleset="default", backend=backend)
        torch.testing.assert_close(got.maps["input"], expected, rtol=1e-10, atol=1e-14)


def _exotic_net() -> nn.Module:
    """Negative activations (Tanh), reflect padding, transposed conv, avg pool, in-place ReLU."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(4, 3, 2, stride=2),
        nn.Tanh(),
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 4),
    ).double()


@pytest.mark.parametrize("ruleset", ["default", "hudd"])
@pytest.mark.parametrize("arch", ["small_cnn", "alexnet", "resnet", "exotic", "mlp"])
def test_fast_path_equals_zennit(arch: str, ruleset: str) -> None:
    torch.manual_seed(3)
    if arch == "mlp":
        net = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).double()
        x = torch.rand(4, 12, dtype=torch.float64)
    elif arch == "exotic":
        net = _exotic_net()
        x = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    else:
        net = build_model(arch, 3, 5, 16).double()
        x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
        _randomise_batchnorm(net)
    ref = layer_relevance(net, x, ruleset=ruleset, backend="zennit")
    fast = layer_relevance(net, x, ruleset=ruleset, backend="fast")
    assert fast.backend == "fast"
    assert torch.equal(ref.targets, fast.targets)
    for name, expected in ref.maps.items():
        scale = float(expected.abs().max())
        assert scale > 0, name
        torch.testing.assert_close(fast.maps[name], expected, rtol=1e-9, atol=1e-12 * scale)


def _randomise_batchnorm(net: nn.Module) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


# -- theory: conservation and sign ---------------------------------------------------------------
def _sums(maps: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.reshape(len(v), -1).sum(1).numpy() for k, v in maps.items()}


def test_zplus_conserves_and_is_nonnegative_on_bias_free_linear_stack() -> None:
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Linear(8, 7, bias=False),
        nn.ReLU(),
        nn.Linear(7, 6, bias=False),
        nn.ReLU(),
        nn.Linear(6, 3, bias=False),
    ).double()
    with torch.no_grad():
        net[4].weight.abs_()  # positive logits: the start relevance is positive
    x = torch.rand(5, 8, dtype=torch.float64) + 0.1
    res = layer_relevance(net, x, ruleset="hudd", backend="fast")
    assert bool((res.scores > 0).all())
    for name, total in _sums(res.maps).items():
        np.testing.assert_allclose(total, res.scores.numpy(), rtol=1e-7, err_msg=name)
        assert float(res.maps[name].min()) >= 0, name


def test_epsilon_with_zero_biases_is_nearly_conservative() -> None:
    torch.manual_seed(5)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(96, 4, bias=False),
    ).double()
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    res = layer_relevance(net, x, ruleset="hudd")
    for name, total in _sums(res.maps).items():
        np.testing.assert_allclose(total, res.scores.numpy(), rtol=1e-6, err_msg=name)


def test_residual_sum_canonizer_conserves_relevance() -> None:
    """Fresh BatchNorm + zero linear bias: every default rule conserves, if the skip does."""
    torch.manual_seed(6)
    net = build_model("resnet", 3, 4, 16).double()
    with torch.no_grad():
        net.classifier[1].bias.zero_()
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    res = layer_relevance(net, x, ruleset="default")
    for name, total in _sums(res.maps).items():
        if name.endswith("conv1") or name in ("input", "features.7", "classifier.1"):
            np.testing.assert_allclose(total, res.scores.numpy(), rtol=1e-3, err_msg=name)
    # the plain gradient of `out + shortcut(x)` copies relevance into both branches instead
    with Gradient(net, EpsilonPlusFlat(canonizers=[MergeBatchNorm()])) as attributor:
        out = net(x)
        start = torch.zeros_like(out).scatter(1, res.targets[:, None], res.scores[:, None])
        _, naive = attributor(x, start)
    ratio = naive.reshape(3, -1).sum(1) / res.scores
    assert float(ratio.abs().min()) > 1.5


# -- layers -------------------------------------------------------------------------------------
def test_default_layers_skip_repeated_tensors_and_explicit_names_work() -> None:
    net = build_model("resnet", 3, 4, 16)
    names = [i.name for i in find_layers(net, torch.rand(1, 3, 16, 16))]
    assert names[0] == "input" and "features.0" not in names  # its input is the image
    assert "features.4.conv1" in names and "features.4.shortcut.0" not in names  # same tensor
    x = torch.rand(2, 3, 16, 16)
    res = layer_relevance(
        net, x, layers=["features.4.shortcut.0", "features.4.conv1", "features.0"]
    )
    assert torch.equal(res.maps["features.4.shortcut.0"], res.maps["features.4.conv1"])
    infos = {i.name: i for i in res.layers}
    assert infos["features.0"].is_input and torch.equal(res.maps["features.0"], res.maps["input"])


def test_unknown_layer_name_lists_candidates() -> None:
    net = build_model("small_cnn", 3, 4, 16)
    with pytest.raises(ConfigError, match=r"'nope'.*features\.3"):
        layer_relevance(net, torch.rand(1, 3, 16, 16), layers=["features.3", "nope"])


def test_module_called_twice_gets_one_layer_per_call() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 3, padding=1)
            self.c2 = nn.Conv2d(4, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(torch.relu(self.c1(x)))
            x = self.pool(torch.relu(self.c2(x)))
            return self.fc(x.flatten(1))

    torch.manual_seed(7)
    net = Twice().double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    res = layer_relevance(net, x, ruleset="hudd", backend="fast")
    assert [i.name for i in res.layers] == ["input", "pool", "c2", "pool#2", "fc"]
    assert res.maps["pool"].shape == (2, 4, 8, 8) and res.maps["pool#2"].shape == (2, 4, 4, 4)
    ref = layer_relevance(net, x, ruleset="hudd", backend="zennit")
    for name in ref.maps:
        torch.testing.assert_close(res.maps[name], ref.maps[name], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("arch", ["small_cnn", "alexnet", "resnet"])
def test_zoo_models_give_finite_maps_of_the_right_shapes(arch: str) -> None:
    torch.manual_seed(8)
    net = build_model(arch, 3, 6, 32)
    x = torch.rand(2, 3, 32, 32)
    res = layer_relevance(net, x)
    assert len(res.layers) >= 7
    for info in res.layers:
        m = res.maps[info.name]
        assert m.shape == (2, *info.shape) and m.dtype == torch.float32
        assert bool(torch.isfinite(m).all()) and float(m.abs().sum()) > 0, info.name
    assert sum(i.is_input for i in res.layers) == 1


# -- the user's model is left alone --------------------------------------------------------------
def _snapshot(net: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in net.state_dict().items()},
        "modules": [(n, type(m), m.training) for n, m in net.named_modules()],
        "params": [(n, p, p.requires_grad, p.grad) for n, p in net.named_parameters()],
        "forward": [n for n, m in net.named_modules() if "forward" in m.__dict__],
    }


def _assert_untouched(
    net: nn.Module, before: dict[str, object], x: torch.Tensor, out_before: torch.Tensor
) -> None:
    after = _snapshot(net)
    assert before["modules"] == after["modules"]
    assert before["forward"] == after["forward"] == []
    state_b, state_a = before["state"], after["state"]
    assert isinstance(state_b, dict) and isinstance(state_a, dict)
    assert list(state_b) == list(state_a)
    assert all(torch.equal(state_b[k], state_a[k]) for k in state_b)
    for (n, p, rg, g), (n2, p2, rg2, g2) in zip(before["params"], after["params"], strict=True):  # type: ignore[call-overload]
        assert n == n2 and p is p2 and rg == rg2 and g is None and g2 is None
    for m in net.modules():
        for hooks in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            assert len(getattr(m, hooks)) == 0, (m, hooks)
    flags = [(m, m.training) for m in net.modules()]
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), out_before)
    for m, flag in flags:
        m.training = flag


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ruleset", ["default", "hudd"])
def test_model_unchanged_after_success_and_after_errors(backend: str, ruleset: str) -> None:
    torch.manual_seed(9)
    net = build_model("resnet", 3, 4, 16)
    _randomise_batchnorm(net)
    net.features[0].weight.requires_grad_(False)
    net.train()
    net.features[3].eval()  # mixed training flags must come back as they were
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        net.eval()
        out_before = net(x)
        net.train()
        net.features[3].eval()
    before = _snapshot(net)
    plan = find_layers(net, x)

    layer_relevance(net, x, plan, ruleset, backend)
    _assert_untouched(net, before, x, out_before)

    with pytest.raises(RuntimeError):  # wrong input shape, inside the pass
        layer_relevance(net, torch.rand(2, 1, 16, 16), plan, ruleset, backend)
    _assert_untouched(net, before, x, out_before)

    with pytest.raises(InvalidInputError):  # raised after the forward, before the backward
        layer_relevance(net, x, plan, ruleset, backend, targets=[0, 99])
    _assert_untouched(net, before, x, out_before)

    def boom(module: nn.Module, args: object, output: object) -> None:
        raise RuntimeError("boom")

    handle = net.features[5].conv2.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        layer_relevance(net, x, plan, ruleset, backend)
    handle.remove()
    _assert_untouched(net, before, x, out_before)


def test_hudd_refuses_batchnorm_it_cannot_merge() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)
    )
    net.eval()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ConfigError, match=r"BatchNorm.*\b2\b.*default"):
        layer_relevance(net, x, ruleset="hudd")
    assert torch.isfinite(layer_relevance(net, x, ruleset="default").maps["input"]).all()
    assert RULESETS.names() == ["default", "hudd"]
    with pytest.raises(ConfigError, match="Unknown LRP rule set"):
        layer_relevance(net, x, ruleset="lrp-magic")


def test_auto_backend_falls_back_to_zennit_on_in_place_changes() -> None:
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.conv(x)
            z += 1.0  # changes a tensor the fast rule saved
            return self.fc(torch.relu(z).flatten(1))

    net = InPlace()
    x = torch.rand(2, 3, 8, 8)
    assert layer_relevance(net, x, backend="auto").backend == "zennit"
    with pytest.raises(InvalidInputError, match="backend='zennit'"):
        layer_relevance(net, x, backend="fast")


# -- the on-disk store ---------------------------------------------------------------------------
@pytest.fixture()
def small_setup() -> tuple[nn.Module, torch.Tensor, list[str]]:
    torch.manual_seed(10)
    return (
        build_model("small_cnn", 3, 4, 16),
        torch.rand(10, 3, 16, 16),
        [f"s{i}" for i in range(10)],
    )


def test_store_round_trip(
    tmp_path: Path, small_setup: tuple[nn.Module, torch.Tensor, list[str]]
) -> None:
    net, x, ids = small_setup
    store = compute_heatmaps(
        net, x, ids, tmp_path / "hm", ruleset="hudd", batch_size=4, progress=False
    )
    ref = layer_relevance(net, x, ruleset="hudd")
    assert store.complete and len(store) == 10 and list(store.ids) == ids
    assert store.layers == [i.name for i in ref.layers]
    assert store.selectable_layers == store.layers[1:] and store.is_input("input")
    np.testing.assert_array_equal(store.targets, ref.targets.numpy())
    for name in store.layers:
        arr = store.array(name)
        assert isinstance(arr, np.memmap) and arr.dtype == np.float32
        np.testing.assert_allclose(arr, ref.maps[name].numpy(), rtol=1e-4, atol=1e-6)
        assert isinstance(store.flat(name), np.memmap) and store.flat(name).shape == (
            10,
            arr[0].size,
        )
    reopened = HeatmapStore.open(tmp_path / "hm")
    np.testing.assert_array_equal(reopened.array("features.3"), store.array("features.3"))
    with pytest.raises(ConfigError, match=r"features\.3"):
        store.array("features.99")
    index = json.loads((tmp_path / "hm" / "index.json").read_text())
    assert index["complete"] is True and index["rows_written"] == 10 and index["ruleset"] == "hudd"


def test_store_resumes_after_interruption(
    tmp_path: Path,
    small_setup: tuple[nn.Module, torch.Tensor, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, x, ids = small_setup
    out = tmp_path / "hm"
    real = store_module.layer_relevance
    calls: list[int] = []

    class Interrupted(Exception):
        pass

    def failing(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2 and not hasattr(failing, "done"):
            failing.done = True  # type: ignore[attr-defined]
            raise Interrupted
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "layer_relevance", failing)
    with pytest.raises(Interrupted):
        compute_heatmaps(net, x, ids, out, batch_size=4, progress=False)
    with pytest.raises(RunDirError, match="4 of 10 rows"):
        HeatmapStore.open(out)
    partial = HeatmapStore.open(out, allow_incomplete=True)
    assert not partial.complete and partial.rows_written == 4

    calls.clear()
    store = compute_heatmaps(net, x, ids, out, batch_size=4, progress=False)
    assert len(calls) == 2  # rows 4-7 and 8-9 only (the failing call counted as second)
    full = layer_relevance(net, x)
    for name in store.layers:
        np.testing.assert_allclose(store.array(name), full.maps[name].numpy(), rtol=1e-4, atol=1e-6)

    calls.clear()
    compute_heatmaps(net, x, ids, out, batch_size=4, progress=False)
    assert calls == []  # complete: nothing recomputed
    with pytest.raises(RunDirError, match="overwrite=True"):
        compute_heatmaps(net, x, ids, out, ruleset="hudd", progress=False)
    redone = compute_heatmaps(net, x, ids, out, ruleset="hudd", progress=False, overwrite=True)
    assert redone.ruleset == "hudd" and redone.complete


def test_store_rejects_bad_arguments(
    tmp_path: Path, small_setup: tuple[nn.Module, torch.Tensor, list[str]]
) -> None:
    net, x, ids = small_setup
    with pytest.raises(InvalidInputError, match="unique"):
        compute_heatmaps(net, x, ["a"] * 10, tmp_path / "a", progress=False)
    with pytest.raises(InvalidInputError, match="9 sample ids"):
        compute_heatmaps(net, x, ids[:9], tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        compute_heatmaps(net, x, ids, tmp_path / "a", batch_size=0, progress=False)
    with pytest.raises(ConfigError, match="Unknown layer"):
        compute_heatmaps(net, x, ids, tmp_path / "a", layers=["bad"], progress=False)
    with pytest.raises(RunDirError, match="no heatmaps"):
        HeatmapStore.open(tmp_path / "nothing")
