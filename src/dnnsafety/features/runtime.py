"""Fast inference of a frozen backbone: its penultimate embedding in onnxruntime or torch.

The black-box analysis spends its time in one place, the frozen ImageNet backbone's forward
pass over every image it embeds (errors, the correct reference, the pool, the training set).
This module holds the two runtimes :class:`~dnnsafety.features.sources.BackboneFeatures`
chooses from:

``onnxruntime``
    The backbone, with its last linear layer replaced by the identity (so its output is the
    pooled embedding the ``torch`` path reads with a hook), is exported once to ONNX in memory
    (``torch.onnx.export``, dynamic batch and image size) and run by an onnxruntime CPU session
    with all graph optimisations (convolution + batch-norm + activation fusion). Measured in
    ``benchmarks/results/backbone.md``: same features to ~1e-5 relative, several times the
    images per second of the eager model on 2 CPU cores.
``torch``
    The eager model in inference mode, in the channels-last memory format (faster
    convolutions on CPU, same values up to float rounding).

``auto`` picks onnxruntime when it imports and the export works, torch otherwise (said once
in the log).

With ``blocks`` (:class:`PooledBlocks`), the output is the pooled embedding with the global
average of named intermediate blocks ahead of it, each block scaled to the same norm (as
:func:`~dnnsafety.features.sources.combine_blocks` does): mid-level features (parts, edges,
orientation) beside the last block's more invariant ones.
"""

from __future__ import annotations

import copy
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety.exceptions import ConfigError

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnxruntime", "torch")
_EXPORTS: dict[str, bytes] = {}
"""ONNX exports made in this process, by backbone identity (a fit exports once)."""


def penultimate_module(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose output is the input of its last ``nn.Linear`` layer.

    Valid for networks whose last linear layer is their last operation (torchvision's
    classifiers: MobileNet, ResNet, EfficientNet, ...): that layer becomes ``nn.Identity``.

    Raises
    ------
    ConfigError
        If ``net`` has no ``nn.Linear`` layer.
    """
    names = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ConfigError(f"{type(net).__name__} has no nn.Linear layer to cut the network at.")
    out = copy.deepcopy(net).eval()
    parent_name, _, child = names[-1].rpartition(".")
    parent = out.get_submodule(parent_name) if parent_name else out
    setattr(parent, child, nn.Identity())
    return out


class PooledBlocks(nn.Module):
    """A penultimate-embedding network whose output also holds named blocks' pooled outputs.

    The output of every block in ``blocks`` (module names of ``net``, in the order they run)
    is averaged over its spatial positions (a 4-D ``N x C x H x W`` output; any other is
    flattened); these vectors and the network's own output are each scaled to norm
    ``1 / sqrt(len(blocks) + 1)`` per input (a zero vector stays zero) and concatenated:
    ``N x (C_1 + ... + D)``, unit norm per row.

    Raises
    ------
    ConfigError
        A name in ``blocks`` is not a module of ``net``.
    """

    def __init__(self, net: nn.Module, blocks: tuple[str, ...]) -> None:
        super().__init__()
        self.net = net
        self.blocks = tuple(blocks)
        known = dict(net.named_modules())
        missing = [b for b in self.blocks if b not in known or not b]
        if missing:
            raise ConfigError(
                f"Backbone blocks {missing} are not modules of {type(net).__name__}; pick "
                "module names such as 'features.13' (torchvision's MobileNetV2)."
            )
        self._modules_seen = [known[b] for b in self.blocks]

    def forward(self, x: Tensor) -> Tensor:
        seen: list[Tensor] = []

        def grab(_m: nn.Module, _i: object, out: Tensor) -> None:
            seen.append(out.mean(dim=(2, 3)) if out.dim() == 4 else out.flatten(1))

        handles = [m.register_forward_hook(grab) for m in self._modules_seen]
        try:
            last = self.net(x).flatten(1)
        finally:
            for h in handles:
                h.remove()
        parts = [*seen, last]
        scale = len(parts) ** -0.5
        return torch.cat(
            [p / p.norm(dim=1, keepdim=True).clamp_min(1e-12) * scale for p in parts], dim=1
        )


def export_onnx(net: nn.Module, channels: int = 3, side: int = 64) -> bytes:
    """``net`` (eval mode) as ONNX bytes, with a dynamic batch axis and image size."""
    sample = torch.zeros(1, channels, side, side)
    buf = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (sample,),
            buf,  # type: ignore[arg-type]  # the legacy exporter takes a file object
            input_names=["images"],
            output_names=["features"],
            dynamic_axes={"images": {0: "n", 2: "h", 3: "w"}, "features": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    return buf.getvalue()


def onnx_session(model: bytes, threads: int) -> Any:
    """An onnxruntime CPU session over ``model`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(int(threads), 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


class BackboneRunner:
    """Runs a frozen network's penultimate embedding on normalised image batches.

    Parameters
    ----------
    net
        The backbone (eval mode; left unchanged: a copy is cut and exported).
    runtime
        ``"auto"``, ``"onnxruntime"`` or ``"torch"`` (see the module docstring).
    threads
        Intra-op threads of the onnxruntime session (0: torch's current number).
    channels_last
        Run the torch path in the channels-last memory format.
    identity
        What identifies the backbone (architecture, weights file, its size and time): the
        ONNX export is kept under it in this process and, with ``cache_dir``, on disk.
    cache_dir
        A folder for the exported ``.onnx`` file (a run's ``analysis/features``).
    blocks
        Module names whose pooled outputs join the embedding (:class:`PooledBlocks`); empty:
        the penultimate embedding alone.

    Attributes
    ----------
    runtime
        The runtime actually used (``"onnxruntime"`` or ``"torch"``).
    """

    def __init__(
        self,
        net: nn.Module,
        runtime: str = "auto",
        threads: int = 0,
        channels_last: bool = True,
        identity: str = "",
        cache_dir: Path | None = None,
        blocks: tuple[str, ...] = (),
    ) -> None:
        if runtime not in RUNTIMES:
            raise ConfigError(
                f"The backbone runtime must be one of {', '.join(RUNTIMES)}. Got {runtime!r}."
            )
        self.threads = int(threads) or torch.get_num_threads()
        self.channels_last = bool(channels_last)
        self.net = penultimate_module(net)
        if blocks:
            self.net = PooledBlocks(self.net, tuple(blocks)).eval()
            identity = f"{identity}|blocks={','.join(blocks)}" if identity else ""
        self.model_bytes: bytes | None = None
        self._session: Any = None
        self.runtime = "torch"
        if runtime in ("auto", "onnxruntime"):
            try:
                import onnxruntime  # noqa: F401

                self.model_bytes = _cached_export(self.net, identity, cache_dir)
                self.runtime = "onnxruntime"
            except Exception as exc:  # export or import failures of any type
                if runtime == "onnxruntime":
                    raise ConfigError(
                        f"The backbone could not run in onnxruntime ({exc}); use "
                        "analysis.features.params.runtime = 'torch'."
                    ) from None
                log.info("backbone runs in torch: the ONNX export failed (%s)", exc)
        if self.runtime == "torch" and self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None  # an onnxruntime session does not pickle; rebuilt on use
        return state

    def __call__(self, batch: Tensor) -> np.ndarray:
        """``N x D`` float32 embedding of a normalised ``N x 3 x H x W`` batch."""
        if self.runtime == "onnxruntime":
            if self._session is None:
                self._session = onnx_session(self.model_bytes or b"", self.threads)
            x = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
            out = self._session.run(None, {"images": x})[0]
            return np.asarray(out, dtype=np.float32).reshape(len(x), -1)
        with torch.inference_mode():
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return self.net(batch).reshape(len(batch), -1).float().numpy()


def _cached_export(net: nn.Module, identity: str, cache_dir: Path | None) -> bytes:
    """The ONNX export of ``net``: from this process's cache, the disk cache, or made now."""
    from dnnsafety.runs import atomic_path, fingerprint

    if not identity:
        return export_onnx(net)
    key = fingerprint(identity, torch.__version__, "onnx-v1")
    if key in _EXPORTS:
        return _EXPORTS[key]
    path = None if cache_dir is None else Path(cache_dir) / f"backbone_{key}.onnx"
    if path is not None and path.is_file():
        data = path.read_bytes()
    else:
        data = export_onnx(net)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                Path(tmp).write_bytes(data)
    _EXPORTS[key] = data
    return data
