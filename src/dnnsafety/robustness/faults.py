"""Hardware-fault injection: bit flips, stuck-at neurons, weight noise, activation faults.

Every injector is a context manager that changes the model only while its block runs and
restores it exactly afterwards, also when the block raises (parameters bit for bit, hooks
removed; :func:`dnnsafety.testing.checks.check_model_restored` holds)::

    with flip_bit(model, "features.0.weight", index=17, bit=30):
        faulty = predict(model, images)

Faults follow PyTorchFI (Mahmoud et al., DSN-W 2020), the reference injector, which is not
installed here: single bit flips in float32 weights (IEEE 754: bit 31 sign, bits 30-23
exponent, 22-0 mantissa; a flip of a high exponent bit is the worst), stuck-at values of
neurons (forward hooks), Gaussian weight noise and bit flips in activations.
:func:`sample_bit_flips` draws repeated random injections from a seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dnnsafety._validation import check_float_param, check_int_param, check_random_generator
from dnnsafety.exceptions import ConfigError

__all__ = [
    "EXPONENT_BITS",
    "BitFlip",
    "activation_fault",
    "flip_bit",
    "flip_float32",
    "injectable_parameters",
    "layer_of",
    "sample_bit_flips",
    "stuck_at",
    "weight_noise",
]

EXPONENT_BITS = tuple(range(23, 31))
"""The exponent bits of an IEEE 754 float32 (bit 0 is the lowest mantissa bit)."""


@dataclass(frozen=True)
class BitFlip:
    """One single-bit fault in a float32 weight.

    Attributes
    ----------
    parameter
        Qualified parameter name (``"features.0.weight"``).
    index
        Position in the flattened parameter.
    bit
        Bit position, 0 (lowest mantissa bit) to 31 (sign).
    """

    parameter: str
    index: int
    bit: int

    @property
    def layer(self) -> str:
        """The module holding the parameter (``"features.0"``)."""
        return layer_of(self.parameter)

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"parameter": self.parameter, "index": self.index, "bit": self.bit}


def layer_of(parameter: str) -> str:
    """The module name of a parameter name (``"features.0.weight"`` -> ``"features.0"``)."""
    return parameter.rpartition(".")[0]


def _xor_mask(bit: int) -> torch.Tensor:
    if not 0 <= bit <= 31:
        raise ConfigError(f"bit must be an integer from 0 to 31. Got {bit!r}.")
    return torch.tensor(np.uint32(1 << bit).view(np.int32), dtype=torch.int32)


def flip_float32(values: torch.Tensor, bit: int) -> torch.Tensor:
    """``values`` (float32) with bit ``bit`` of every element flipped (a new tensor).

    Raises
    ------
    ConfigError
        If ``bit`` is not in 0..31 or ``values`` is not float32.
    """
    if values.dtype != torch.float32:
        raise ConfigError(f"bit flips need float32 values; got {values.dtype}.")
    ints = values.detach().contiguous().view(torch.int32)
    return torch.bitwise_xor(ints, _xor_mask(bit)).view(torch.float32)


def injectable_parameters(model: nn.Module) -> list[str]:
    """Names of the float32 weights and biases of ``model`` (the fault sites), in order."""
    return [n for n, p in model.named_parameters() if p.dtype == torch.float32 and p.numel()]


def _parameter(model: nn.Module, name: str) -> nn.Parameter:
    try:
        param = model.get_parameter(name)
    except AttributeError:
        known = ", ".join(injectable_parameters(model)[:8])
        raise ConfigError(f"The model has no parameter {name!r}; some it has: {known}.") from None
    if param.dtype != torch.float32:
        raise ConfigError(f"Parameter {name!r} is {param.dtype}; bit flips need float32.")
    return param


@contextmanager
def flip_bit(model: nn.Module, parameter: str, index: int, bit: int) -> Iterator[float]:
    """Flip bit ``bit`` of element ``index`` of the float32 weight ``parameter`` in the block.

    Yields
    ------
    float
        The faulty value (may be huge, infinite or NaN for exponent bits).

    Raises
    ------
    ConfigError
        Unknown parameter, an index outside it, or a bit outside 0..31.
    """
    param = _parameter(model, parameter)
    n = param.numel()
    if isinstance(index, bool) or not 0 <= int(index) < n:
        raise ConfigError(f"index must be in [0, {n - 1}] for {parameter!r}. Got {index!r}.")
    flat = param.data.view(-1)
    original = flat[int(index)].clone()
    faulty = flip_float32(original, bit)
    with torch.no_grad():
        flat[int(index)] = faulty
    try:
        yield float(faulty)
    finally:
        with torch.no_grad():
            flat[int(index)] = original


def sample_bit_flips(
    model: nn.Module,
    n: int,
    bits: Sequence[int] | None = None,
    parameters: Sequence[str] | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> list[BitFlip]:
    """``n`` random single-bit faults: a weight drawn uniformly over all weight elements (so a
    layer is hit in proportion to its size) and a bit drawn uniformly from ``bits``.

    Parameters
    ----------
    model
        The network.
    n
        Number of faults (each injected alone: repeated random injections).
    bits
        Bit positions to draw from (default all 32).
    parameters
        Parameter names to draw from (default :func:`injectable_parameters`).
    random_state
        Seed or generator; the same seed gives the same faults.
    """
    count = check_int_param("sample_bit_flips", "n", n, 1)
    rng = check_random_generator("sample_bit_flips", random_state)
    names = list(parameters) if parameters is not None else injectable_parameters(model)
    if not names:
        raise ConfigError("The model has no float32 parameters to inject faults into.")
    sizes = np.array([_parameter(model, name).numel() for name in names], dtype=np.int64)
    choices = np.arange(32) if bits is None else np.asarray(list(bits), dtype=np.int64)
    for b in choices:
        _xor_mask(int(b))
    flat = rng.integers(0, int(sizes.sum()), size=count)
    where = np.searchsorted(np.cumsum(sizes), flat, side="right")
    offsets = flat - np.concatenate([[0], np.cumsum(sizes)[:-1]])[where]
    drawn = rng.choice(choices, size=count)
    return [
        BitFlip(names[w], int(o), int(b)) for w, o, b in zip(where, offsets, drawn, strict=True)
    ]


def _module(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        known = ", ".join(n for n, _ in list(model.named_modules())[1:9])
        raise ConfigError(f"The model has no module {layer!r}; some it has: {known}.") from None


@contextmanager
def stuck_at(
    model: nn.Module,
    layer: str,
    neurons: Sequence[int],
    value: float = 0.0,
    at: str = "output",
) -> Iterator[None]:
    """Neurons of ``layer`` stuck at ``value`` (default 0: stuck-at-zero) in the block.

    A neuron is one index along axis 1 of the layer's output (``at="output"``) or of its
    input (``at="input"``, the neurons whose LRP relevance
    :func:`dnnsafety.features.lrp.layer_relevance` reports for ``layer``): a channel of a
    convolution (every position), a unit of a linear layer. Implemented as a forward (pre-)
    hook, removed on exit.

    Raises
    ------
    ConfigError
        Unknown layer or ``at``, or a neuron index outside the layer's output / input.
    """
    if at not in ("output", "input"):
        raise ConfigError(f"at must be 'output' or 'input'. Got {at!r}.")
    module = _module(model, layer)
    idx = torch.as_tensor(np.asarray(list(neurons), dtype=np.int64))

    def stick(t: torch.Tensor) -> torch.Tensor:
        if len(idx) and (int(idx.max()) >= t.shape[1] or int(idx.min()) < 0):
            raise ConfigError(
                f"neuron indices must be in [0, {t.shape[1] - 1}] for {layer!r}; got "
                f"{idx.tolist()[:5]}."
            )
        t = t.clone()
        t[:, idx] = value
        return t

    def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        return stick(out)

    def pre_hook(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (stick(inp[0]), *inp[1:])

    handle = (
        module.register_forward_hook(hook)
        if at == "output"
        else module.register_forward_pre_hook(pre_hook)
    )
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def activation_fault(
    model: nn.Module, layer: str, index: int, bit: int | None = None, value: float | None = None
) -> Iterator[None]:
    """A fault in one activation of ``layer``: element ``index`` of every input's flattened
    output gets bit ``bit`` flipped, or is set to ``value`` (exactly one of the two).

    Raises
    ------
    ConfigError
        Unknown layer, neither or both of ``bit`` / ``value``, or an index outside the output.
    """
    if (bit is None) == (value is None):
        raise ConfigError("activation_fault takes exactly one of bit and value.")
    module = _module(model, layer)
    if bit is not None:
        _xor_mask(bit)

    def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        flat = out.reshape(len(out), -1).clone()
        if not 0 <= index < flat.shape[1]:
            raise ConfigError(f"index must be in [0, {flat.shape[1] - 1}] for {layer!r}.")
        if bit is not None:
            flat[:, index] = flip_float32(flat[:, index].float(), bit).to(flat.dtype)
        else:
            flat[:, index] = float(value)  # type: ignore[arg-type]
        return flat.reshape(out.shape)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def weight_noise(
    model: nn.Module,
    std: float,
    relative: bool = True,
    random_state: int | np.random.Generator | None = 0,
    parameters: Sequence[str] | None = None,
) -> Iterator[None]:
    """Gaussian noise on the weights in the block (analogue hardware, drifting memory).

    Parameters
    ----------
    std
        Standard deviation of the noise; with ``relative``, times each parameter's own
        standard deviation.
    parameters
        Which parameters (default :func:`injectable_parameters`).
    """
    scale = check_float_param("weight_noise", "std", std, 0.0, 1e6)
    rng = check_random_generator("weight_noise", random_state)
    names = list(parameters) if parameters is not None else injectable_parameters(model)
    params = [_parameter(model, n) for n in names]
    saved = [p.data.clone() for p in params]
    try:
        with torch.no_grad():
            for p in params:
                spread = float(p.data.std()) if relative and p.numel() > 1 else 1.0
                draws = torch.as_tensor(rng.standard_normal(tuple(p.shape)), dtype=p.dtype)
                p.data.add_(draws.to(p.device) * scale * spread)
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.data.copy_(s)
