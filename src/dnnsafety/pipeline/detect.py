"""The ``detect`` stage: fit a detector on train, calibrate on val, score every split.

The detector declares what it needs (``requires``, :mod:`dnnsafety.detection.base`) and this
module builds exactly that: the model's logits, features of a feature source (the model's own
penultimate activations for white-box models, the frozen backbone's embedding for black-box
ones, or any ``--features``), the training labels, the classifier's last linear layer, or the
images. Outputs in the run folder:

* ``samples.parquet`` gains ``<detector>_score``, ``<detector>_p`` (conformal p-value) and
  ``is_ood.<detector>`` (``p <= alpha``) for every split, pool included;
* ``detection.json`` (:class:`~dnnsafety.pipeline.artifacts.Detection`);
* ``detection/<detector>.json`` + ``.npz``: the fitted, calibrated detector as arrays and JSON
  (:mod:`dnnsafety.detection.persist`; no pickle), used by :func:`score_folder`.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dnnsafety.data.dataset import NOMINAL, Split
from dnnsafety.detection import DETECTORS, Detector, conformal_p_values, detection_metrics
from dnnsafety.detection.metrics import auroc
from dnnsafety.detection.persist import load_detector, save_detector
from dnnsafety.exceptions import ConfigError, InvalidInputError, RunDirError
from dnnsafety.pipeline.artifacts import Detection, read_artifact, write_artifact
from dnnsafety.progress import progress_bar
from dnnsafety.runs import fingerprint

if TYPE_CHECKING:
    from dnnsafety.features.sources import FeatureSource
    from dnnsafety.pipeline.run import Pipeline

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_DETECTOR", "DETECTION_DIR", "detect", "score_folder"]

DEFAULT_DETECTOR = "knn"
"""Chosen from benchmarks/results/detection.md."""
DETECTION_DIR = "detection"
BATCH = 512


@torch.no_grad()
def model_logits(model: nn.Module, images: torch.Tensor, batch_size: int = BATCH) -> np.ndarray:
    """``(N, C)`` float64 logits in eval mode, in batches; the training flag is restored."""
    was = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            out.append(model(images[start : start + batch_size]).double().numpy())
    finally:
        model.train(was)
    return np.concatenate(out) if out else np.zeros((0, 0))


def default_features(pipe: Pipeline) -> str:
    """``activations`` for white-box models, ``backbone`` otherwise."""
    return "activations" if pipe.support.white_box else "backbone"


def _head(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    from dnnsafety.features.sources import _last_linear

    layer = _last_linear(model)
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
    return layer.weight.detach().double().numpy(), bias.detach().double().numpy()


class _Inputs:
    """What a detector ``requires``, per split (built on demand, features cached)."""

    def __init__(self, pipe: Pipeline, det: Detector, features: str | None) -> None:
        self.pipe, self.requires = pipe, det.requires
        self.features = features if "features" in det.requires else None
        if ("head" in self.requires or self.features == "activations") and not (
            pipe.support.white_box
        ):
            raise ConfigError(
                f"The {det.name!r} detector needs the model's layers "
                f"({sorted(self.requires)}, features {self.features!r}), which the "
                f"{pipe.support.shown} model does not expose; use --features backbone with a "
                "feature detector (knn, mahalanobis) or a logit detector (msp, energy)."
            )
        self._source: FeatureSource | None = None

    def source(self) -> FeatureSource:
        if self._source is None:
            from dnnsafety.features import FeatureContext, make_source

            assert self.features is not None
            src = make_source(self.features)
            train = self.pipe.dataset["train"]
            ctx = FeatureContext(
                model=self.pipe.model() if "model" in src.requires else None,
                unlabeled=train.images if "unlabeled" in src.requires else None,
                work_dir=self.pipe.run / DETECTION_DIR,
                seed=self.pipe.config.seed,
                extra={"image_shape": tuple(train.image_shape)},
            )
            self._source = src.fit(ctx)
        return self._source

    def x_images(self, images: torch.Tensor, ids: list[str] | None = None) -> np.ndarray:
        if "images" in self.requires:
            return images.numpy()
        if "logits" in self.requires:
            return model_logits(self.pipe.model(), images)
        if ids is None:
            return self.source().transform(images).astype(np.float64)
        from dnnsafety.pipeline.analyze.safe import cached_features

        key = fingerprint(self.pipe.model_key, "detect", self.features)
        feats = cached_features(self.pipe.run, self.source(), images, ids, key, "detect features")
        return np.asarray(feats, dtype=np.float64)

    def x(self, split: Split) -> np.ndarray:
        return self.x_images(split.images, split.ids.astype(str).tolist())

    def fit_args(self, train: Split) -> tuple[Any, dict[str, Any]]:
        y = train.labels if "labels" in self.requires else None
        kwargs = {"head": _head(self.pipe.model())} if "head" in self.requires else {}
        return y, kwargs


JSONDict = dict[str, Any]


def _rate(p: np.ndarray, alpha: float) -> JSONDict:
    return {"alpha": alpha, "rate": float(np.mean(p <= alpha)) if p.size else None, "n": p.size}


def detect(
    pipe: Pipeline,
    detector: str = DEFAULT_DETECTOR,
    *,
    params: dict[str, Any] | None = None,
    features: str | None = None,
    alpha: float = 0.05,
) -> Detection:
    """Fit ``detector`` on train, calibrate on val, score every split; write the outputs.

    Raises
    ------
    RunDirError
        Before ``evaluate`` (no ``samples.parquet``).
    InvalidInputError
        If the validation split is missing or empty (set ``data.val_fraction``).
    ConfigError
        Unknown detector (the message lists the names) or one the model cannot serve.
    """
    t0 = time.perf_counter()
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"--alpha must be in (0, 1); got {alpha}.")
    if not (pipe.run / "samples.parquet").is_file():
        raise RunDirError(
            f"{str(pipe.run.path)!r} has no samples.parquet: run `dnnsafety evaluate "
            f"{pipe.run.path}` first (detection adds its columns to that table)."
        )
    det: Detector = DETECTORS.create(detector, params, random_state=pipe.config.seed)
    splits = pipe.dataset.splits
    val = splits.get("val")
    if val is None or len(val) == 0:
        raise InvalidInputError(
            "The validation split is empty, so there is nothing to calibrate the detector on. "
            "Hold out in-distribution inputs: set data.val_fraction (e.g. --set "
            "data.val_fraction=0.1) or add a val/ folder, then evaluate again."
        )
    if "features" in det.requires and features is None:
        features = default_features(pipe)
    inputs = _Inputs(pipe, det, features)
    train = splits["train"]
    y, kwargs = inputs.fit_args(train)
    log.info("detect: fitting %s on %d training inputs", detector, len(train))
    det.fit(inputs.x(train), y, **kwargs)
    scores = {name: det.decision_function(inputs.x(split)) for name, split in splits.items()}
    det.calibrate_scores(scores["val"])
    pvals = {name: conformal_p_values(det.calibration_scores_, s) for name, s in scores.items()}
    save_detector(det, pipe.run / DETECTION_DIR / detector)
    frames = []
    for name, split in splits.items():
        frames.append(
            pd.DataFrame(
                {
                    f"{detector}_score": scores[name],
                    f"{detector}_p": pvals[name],
                    f"is_ood.{detector}": pvals[name] <= alpha,
                },
                index=pd.Index(split.ids.astype(str), name="sample_id"),
            )
        )
    pipe.run.add_columns(pd.concat(frames))
    result = Detection(
        detector=detector,
        params=det.get_params(),
        features=inputs.features,
        alpha=alpha,
        threshold=_finite(det.threshold(alpha)),
        n_fit=len(train),
        n_calibration=len(val),
        false_alarm=_false_alarm(scores, splits, alpha, pipe.config.seed, det.calibration_scores_),
        flagged={name: float(np.mean(p <= alpha)) if p.size else None for name, p in pvals.items()},
        per_scenario=_per_scenario(scores.get("test"), splits.get("test")),
        misclassification=_misclassification(pipe, scores.get("test")),
        seconds=time.perf_counter() - t0,
    )
    write_artifact(pipe.run, result)
    _write_plots(pipe, detector, scores)
    return result


def plot_name(detector: str, kind: str) -> str:
    """Run-folder path of a detection picture: ``detection/<detector>_<kind>.png``."""
    return f"{DETECTION_DIR}/{detector}_{kind}.png"


def _write_plots(pipe: Pipeline, detector: str, scores: dict[str, np.ndarray]) -> None:
    """Score histograms and ROC curves (nominal test vs each scenario; val vs pool when the
    test split has no scenarios) and the most anomalous test inputs."""
    from dnnsafety.detection.plots import gallery_png, histogram_png, roc_png
    from dnnsafety.runs import write_bytes

    test = pipe.dataset.splits.get("test")
    if test is None or not len(test):
        return
    s = scores["test"]
    tags = test.scenarios.astype(str)
    nominal = tags == NOMINAL
    if nominal.any() and (~nominal).any():
        ref = s[nominal]
        groups = {t: s[tags == t] for t in sorted(set(tags.tolist()) - {NOMINAL, "unknown"})}
    else:
        ref, groups = (
            scores["val"],
            {"test": s, **({"pool": scores["pool"]} if "pool" in scores else {})},
        )
    title = f"{detector}: in-distribution vs each group"
    write_bytes(pipe.run / plot_name(detector, "hist"), histogram_png(ref, groups, title))
    write_bytes(pipe.run / plot_name(detector, "roc"), roc_png(ref, groups, title))
    top = np.argsort(-s, kind="stable")[:24]
    captions = [f"{tags[i]} {s[i]:.3g}" for i in top]
    images = test.images[torch.from_numpy(top)]
    write_bytes(pipe.run / plot_name(detector, "gallery"), gallery_png(images, captions))


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _false_alarm(
    scores: dict[str, np.ndarray],
    splits: Mapping[str, Split],
    alpha: float,
    seed: int,
    calibration: np.ndarray,
) -> JSONDict:
    val = scores["val"]
    order = np.random.default_rng(seed).permutation(len(val))
    half = len(val) // 2
    out: JSONDict = {}
    if half >= 1:
        p = conformal_p_values(val[order[:half]], val[order[half:]])
        out["val_half"] = _rate(p, alpha)
    test = splits.get("test")
    if test is not None and "test" in scores:
        nominal = test.scenarios.astype(str) == NOMINAL
        if nominal.any():
            out["nominal_test"] = _rate(
                conformal_p_values(calibration, scores["test"][nominal]), alpha
            )
    return out


def _per_scenario(scores: np.ndarray | None, test: Split | None) -> JSONDict | None:
    if scores is None or test is None:
        return None
    tags = test.scenarios.astype(str)
    nominal = tags == NOMINAL
    if not nominal.any():
        return None
    rare = sorted({t for t in tags.tolist() if t not in (NOMINAL, "unknown")})
    if not rare:
        return None
    return {t: detection_metrics(scores[nominal], scores[tags == t]) for t in rare}


def _misclassification(pipe: Pipeline, scores: np.ndarray | None) -> JSONDict | None:
    if scores is None:
        return None
    samples = pipe.run.read_samples()
    test = samples[samples["split"] == "test"].set_index("sample_id")
    ids = pipe.dataset["test"].ids.astype(str)
    correct = test["correct"].reindex(ids).astype("boolean").fillna(True).to_numpy(dtype=bool)
    if correct.all() or not correct.any():
        return None
    return {
        "auroc": auroc(scores[correct], scores[~correct]),
        "n_errors": int((~correct).sum()),
        "n_correct": int(correct.sum()),
    }


# --------------------------------------------------------------------------- deployment


def _image_files(folder: Path) -> list[Path]:
    from dnnsafety.data.imagefolder import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder of images.")
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise InvalidInputError(
            f"{folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})."
        )
    return files


def _batches(
    files: list[Path], shape: tuple[int, int, int], batch_size: int
) -> Iterator[tuple[list[Path], torch.Tensor]]:
    """Decoded images of ``files``, ``batch_size`` at a time, checked against ``shape``."""
    from dnnsafety.data.imagefolder.decode import _decode

    c, h, w = shape
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        arrays = []
        for path in chunk:
            got = _decode(path, c, None)
            if isinstance(got, str):
                raise InvalidInputError(f"Image {path} {got}; remove or replace it.")
            if got.size != (h, w):
                raise InvalidInputError(
                    f"Image {path} is {got.size[0]}x{got.size[1]} (height x width), but the "
                    f"model was trained on {h}x{w} images. Resize the folder's images to "
                    f"{h}x{w} first."
                )
            px = got.pixels.reshape(h, w, -1).transpose(2, 0, 1)
            arrays.append(px.astype(np.float32) / 255.0)
        yield chunk, torch.from_numpy(np.stack(arrays))


def score_folder(
    pipe: Pipeline, folder: Path, out: Path, *, batch_size: int = 256
) -> tuple[int, int]:
    """Score a folder of new images with the run's saved detector; write a CSV.

    Columns: ``path, prediction, confidence, score, p_value, flag``. Images are decoded,
    predicted and scored ``batch_size`` at a time and rows are written as they come, so
    memory does not grow with the folder.

    Returns
    -------
    (n_images, n_flagged)

    Raises
    ------
    ArtifactError
        Before ``dnnsafety detect RUN_DIR`` (no ``detection.json``).
    InvalidInputError
        An empty folder, an unreadable image or one of another size than the model's input.
    """
    info = read_artifact(Detection, pipe.run)
    det = load_detector(pipe.run / DETECTION_DIR / info.detector)
    inputs = _Inputs(pipe, det, info.features)
    files = _image_files(Path(folder))
    shape = tuple(pipe.dataset.image_shape)
    model = pipe.model()
    names = pipe.dataset.class_names
    flagged = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(out, "w", newline="", encoding="utf-8") as fh,
        progress_bar(total=len(files), desc="score images", unit="img") as bar,
    ):
        writer = csv.writer(fh)
        writer.writerow(["path", "prediction", "confidence", "score", "p_value", "flag"])
        for chunk, images in _batches(files, shape, batch_size):  # type: ignore[arg-type]
            logits = model_logits(model, images)
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            scores = det.decision_function(inputs.x_images(images))
            p = conformal_p_values(det.calibration_scores_, scores)
            flags = p <= info.alpha
            flagged += int(flags.sum())
            for i, path in enumerate(chunk):
                writer.writerow(
                    [
                        str(path),
                        names[int(probs[i].argmax())],
                        f"{probs[i].max():.6f}",
                        f"{scores[i]:.6g}",
                        f"{p[i]:.6f}",
                        int(flags[i]),
                    ]
                )
            bar.update(len(chunk))
    return len(files), flagged
