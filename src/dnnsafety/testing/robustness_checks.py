"""Contract checks of the robustness plug-ins: corruptions (and fault injectors, through
:func:`~dnnsafety.testing.checks.check_model_restored`)."""

from __future__ import annotations

import torch

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.robustness.corruptions import CORRUPTIONS, FAMILIES, Corruption

__all__ = ["check_corruption", "planted_images"]


def planted_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` smooth test images: a bright square on a graded background, plus faint noise."""
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.15, 0.45, size)
    x = (ramp[None, :] + ramp[:, None]).expand(n, channels, size, size).clone() / 1.5
    lo, hi = size // 4, 3 * size // 4
    x[:, :, lo:hi, lo + 2 : hi - 2] = 0.85
    x += 0.02 * torch.rand(x.shape, generator=gen)
    return x.clamp_(0, 1)


def _raises(exc: type[BaseException], fn: object) -> bool:
    try:
        fn()  # type: ignore[operator]
    except exc:
        return True
    return False


def check_corruption(entry: Corruption) -> None:
    """The corruption contract (:mod:`dnnsafety.robustness.corruptions.base`).

    On 8 grey 28 x 28 and 8 colour 32 x 32 images, at every severity: the output has the
    input's shape and dtype, stays in [0, 1] and is finite; the input is left unchanged.
    The same seed gives the same output; severity 5 changes the images. Severities outside 1-5
    raise :class:`ConfigError`, malformed images :class:`InvalidInputError`; an empty batch
    gives an empty batch.

    Raises
    ------
    AssertionError
        Naming the first rule the corruption breaks.
    """
    name = entry.name or "corruption"

    def fail(rule: str) -> AssertionError:
        return AssertionError(f"corruption {name!r}: {rule}")

    if not isinstance(entry, Corruption) or entry.family not in FAMILIES:
        raise fail(f"must be a Corruption with a family from {FAMILIES}")
    if name not in CORRUPTIONS or CORRUPTIONS.get(name) is not entry:
        raise fail("must be registered under its name")
    for channels, size in ((1, 28), (3, 32)):
        x = planted_images(8, channels, size)
        before = x.clone()
        for severity in (1, 2, 3, 4, 5):
            out = entry(x, severity, 0)
            if out.shape != x.shape or out.dtype != torch.float32:
                raise fail(f"output must be float32 {tuple(x.shape)}; got {tuple(out.shape)}")
            if not torch.isfinite(out).all() or out.min() < 0 or out.max() > 1:
                raise fail("output must be finite and in [0, 1]")
            if not torch.equal(x, before):
                raise fail("must not change its input")
        if not torch.equal(out, entry(x, 5, 0)):
            raise fail("the same random_state must give the same output")
        if float((out - x).abs().mean()) < 1e-3:
            raise fail(f"severity 5 must change {channels}-channel images")
        if len(entry(x[:0], 3, 0)) != 0:
            raise fail("an empty batch must give an empty batch")
    x = planted_images(2, 1, 28)
    for bad in (0, 6, 2.5):
        if not _raises(ConfigError, lambda b=bad: entry(x, b, 0)):
            raise fail(f"severity {bad!r} must raise ConfigError")
    for images in (x[0], x.double(), x * 2, x.numpy()):
        if not _raises(InvalidInputError, lambda i=images: entry(i, 1, 0)):
            raise fail("malformed images must raise InvalidInputError")
