"""The orchestrator: stages cached in the run folder.

Stages so far: ``train`` (writes ``model.pt``) and ``evaluate`` (writes ``samples.parquet`` and
``metrics.json``). Each stage has a fingerprint of everything it depends on; when the
fingerprint and the outputs are already in the run folder the stage is skipped, so re-running a
command after Ctrl-C or a crash continues where it stopped (training also resumes mid-way from
its per-epoch checkpoint). The dataset is only loaded when a stage needs it.
"""

from __future__ import annotations

import functools
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dnnsafety.config import RunConfig, dump_config
from dnnsafety.data.builtin import data_fingerprint, load_dataset
from dnnsafety.data.dataset import LABELLED_SPLITS, Dataset
from dnnsafety.exceptions import ConfigError, RunDirError
from dnnsafety.models.loading import make_model, safe_load
from dnnsafety.models.training import predict, train_model
from dnnsafety.runs import CONFIG_FILE, RunDir, atomic_path, fingerprint, write_json, write_text

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoints/last.pt"
METRICS_FILE = "metrics.json"
TRAIN_FILE = "training.json"


@dataclass(frozen=True)
class StageOutcome:
    """What a stage did: ``skipped`` when cached outputs were reused."""

    name: str
    skipped: bool
    seconds: float
    outputs: tuple[str, ...]


class Pipeline:
    """Runs the stages of one run folder under one configuration.

    Parameters
    ----------
    run
        The run folder.
    config
        The resolved configuration; saved as ``config.toml`` in the folder.
    """

    def __init__(self, run: RunDir, config: RunConfig) -> None:
        self.run = run
        self.config = config
        self.outcomes: list[StageOutcome] = []
        write_text(run / CONFIG_FILE, dump_config(config))

    # -- keys ----------------------------------------------------------------------------
    @functools.cached_property
    def data_key(self) -> str:
        cfg = self.config
        return fingerprint(cfg.seed, cfg.section("data"), data_fingerprint(cfg.data))

    @property
    def train_key(self) -> str:
        cfg = self.config
        return fingerprint(self.data_key, cfg.section("model"), cfg.section("train"))

    @property
    def model_key(self) -> str:
        """Identifies the model: how it was trained, or the user's model file."""
        if self.needs_training:
            return self.train_key
        cfg = self.config
        return fingerprint(self.data_key, cfg.section("model"), _file_stamp(cfg.model.weights))

    @property
    def eval_key(self) -> str:
        return fingerprint(self.model_key, "evaluate-v1")

    @property
    def analysis_key(self) -> str:
        return fingerprint(self.eval_key, self.config.section("analysis"), "analyze-v1")

    @property
    def needs_training(self) -> bool:
        """True for a model built here from scratch; False for a user's trained model file."""
        return (
            self.config.model.arch not in ("torchscript", "onnx") and not self.config.model.weights
        )

    # -- data ---------------------------------------------------------------------------
    @functools.cached_property
    def dataset(self) -> Dataset:
        t0 = time.perf_counter()
        ds = load_dataset(self.config.data, self.config.seed)
        log.info("loaded dataset %s in %.1fs", ds.name, time.perf_counter() - t0)
        write_json(self.run / "dataset.json", ds.summary())
        return ds

    def _build(self) -> nn.Module:
        c, h, _ = self.dataset.image_shape
        return make_model(self.config.model, c, self.dataset.num_classes, h)

    # -- stages --------------------------------------------------------------------------
    def train(self) -> StageOutcome:
        """Train the model (or reuse ``model.pt`` when nothing changed)."""
        t0 = time.perf_counter()
        outputs = (MODEL_FILE, TRAIN_FILE)
        if self.run.is_done("train", self.train_key, outputs):
            return self._record("train", True, t0, outputs)
        if not self.needs_training:
            raise ConfigError(
                f"model.arch = {self.config.model.arch!r} is an already-trained model; "
                "use `dnnsafety evaluate` instead of `train`."
            )
        torch.manual_seed(self.config.seed)
        model = self._build()
        train, val = self.dataset["train"], self.dataset.splits.get("val")
        result = train_model(
            model,
            train.images,
            train.labels,
            None if val is None else val.images,
            None if val is None else val.labels,
            self.config.train,
            seed=self.config.seed,
            checkpoint=self.run / CHECKPOINT_FILE,
            key=self.train_key,
        )
        with atomic_path(self.run / MODEL_FILE) as tmp:
            torch.save({"state_dict": model.state_dict(), "key": self.train_key}, tmp)
        write_json(self.run / TRAIN_FILE, result.to_dict())
        self.run.mark_done(
            "train",
            self.train_key,
            outputs,
            best_epoch=result.best_epoch,
            seconds=time.perf_counter() - t0,
        )
        self._model = model
        return self._record("train", False, t0, outputs)

    def model(self) -> nn.Module:
        """The run's trained model (from memory, ``model.pt`` or the configured file)."""
        cached = getattr(self, "_model", None)
        if cached is not None:
            return cached
        if not self.needs_training:
            model = self._build()
        else:
            f = self.run / MODEL_FILE
            if self.run.stage_key("train") != self.train_key or not f.exists():
                raise RunDirError(
                    f"{str(self.run.path)!r} has no model trained with this configuration; "
                    f"run `dnnsafety train --out {self.run.path}` first."
                )
            model = self._build()
            model.load_state_dict(safe_load(f)["state_dict"])
        model.eval()
        self._model = model
        return model

    def evaluate(self) -> StageOutcome:
        """Predict every split; write ``samples.parquet`` and ``metrics.json``."""
        t0 = time.perf_counter()
        outputs = ("samples.parquet", METRICS_FILE)
        key = self.eval_key
        if self.run.is_done("evaluate", key, outputs):
            return self._record("evaluate", True, t0, outputs)
        model = self.model()
        frames = []
        for name, split in self.dataset.splits.items():
            preds = predict(model, split.images, desc=f"predict {name}")
            frames.append(_split_table(split, preds, self.dataset.num_classes))
        samples = pd.concat(frames, ignore_index=True)
        self.run.write_samples(samples)
        write_json(self.run / METRICS_FILE, compute_metrics(samples, self.dataset.class_names))
        self.run.mark_done("evaluate", key, outputs, seconds=time.perf_counter() - t0)
        return self._record("evaluate", False, t0, outputs)

    def analyze(self) -> StageOutcome:
        """Root-cause analysis of the errors; writes ``clusters.json`` and more.

        White-box (HUDD heatmaps) unless ``analysis.features`` names a black-box feature source.
        """
        from dnnsafety.analysis import CLUSTERS_FILE, LAYERS_FILE, run_analysis

        t0 = time.perf_counter()
        cfg = self.config.analysis
        outputs: tuple[str, ...] = (
            (CLUSTERS_FILE,) if cfg.features else (CLUSTERS_FILE, LAYERS_FILE)
        )
        if self.run.is_done("analyze", self.analysis_key, outputs):
            return self._record("analyze", True, t0, outputs)
        self.evaluate()
        model = self.model()
        if cfg.features:
            from dnnsafety.blackbox import run_blackbox

            bb = run_blackbox(
                self.run, model, self.dataset, cfg, self.model_key, seed=self.config.seed
            )
            extra: dict[str, Any] = {"clusters": len(bb.clusters), "noise": bb.n_noise}
        else:
            from dnnsafety.models.onnx import OnnxClassifier

            if isinstance(model, OnnxClassifier):
                raise ConfigError(
                    "The white-box analysis (LRP heatmaps) needs a PyTorch model; an ONNX "
                    "model supports the black-box analysis only: add --features backbone."
                )
            result = run_analysis(
                self.run,
                model,
                self.dataset[cfg.split],
                self.dataset.class_names,
                cfg,
                seed=self.config.seed,
            )
            extra = {"layer": result.selected_layer, "clusters": len(result.clusters)}
        self.run.mark_done(
            "analyze", self.analysis_key, outputs, seconds=time.perf_counter() - t0, **extra
        )
        old = self.run / "comparison.json"
        if old.exists():  # its per-cluster figures refer to the previous clusters
            old.replace(self.run / "comparison.previous.json")
            log.warning("new clusters: moved the old comparison.json to comparison.previous.json")
        return self._record("analyze", False, t0, outputs)

    def _record(
        self, name: str, skipped: bool, t0: float, outputs: tuple[str, ...]
    ) -> StageOutcome:
        out = StageOutcome(name, skipped, time.perf_counter() - t0, outputs)
        if skipped:
            log.info("stage %s reused: nothing it depends on changed since it ran", name)
        else:
            log.info("stage %s done in %.1fs", name, out.seconds)
        self.outcomes.append(out)
        return out


def _file_stamp(path: str) -> list[Any]:
    """Path, size and modification time of a file, so replacing it invalidates a stage."""
    p = Path(path) if path else None
    if p is None or not p.is_file():
        return []
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def _split_table(split: Any, preds: Any, num_classes: int) -> pd.DataFrame:
    n = len(split)
    labelled = not split.hidden
    label = pd.array(split.label_values if labelled else [pd.NA] * n, dtype="Int64")
    correct = pd.array(
        preds.pred == split.label_values if labelled else [pd.NA] * n, dtype="boolean"
    )
    table = pd.DataFrame(
        {
            "sample_id": split.ids.astype(str),
            "split": split.name,
            "label": label,
            "pred": preds.pred,
            "correct": correct,
            "confidence": preds.probs.max(axis=1) if n else np.zeros(0, np.float32),
            "scenario": split.scenarios.astype(str),
        }
    )
    probs = pd.DataFrame(preds.probs, columns=[f"prob.{k}" for k in range(num_classes)])
    parts = [table, probs]
    if split.metadata is not None:
        parts.append(split.metadata.add_prefix("meta."))
    return pd.concat(parts, axis=1)


def compute_metrics(samples: pd.DataFrame, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy overall, per class and per scenario for every labelled split; test confusion."""
    out: dict[str, Any] = {"class_names": list(class_names), "splits": {}}
    for split in LABELLED_SPLITS:
        part = samples[samples["split"] == split]
        if part.empty:
            continue
        correct = part["correct"].astype(bool)
        per_scen = correct.groupby(part["scenario"]).agg(["mean", "size"])
        per_class = correct.groupby(part["label"].astype(int)).mean()
        out["splits"][split] = {
            "n": len(part),
            "accuracy": float(correct.mean()),
            "errors": int((~correct).sum()),
            "per_scenario": {
                str(s): {"accuracy": float(r["mean"]), "n": int(r["size"])}
                for s, r in per_scen.iterrows()
            },
            "per_class": {class_names[int(str(k))]: float(v) for k, v in per_class.items()},
        }
    test = samples[samples["split"] == "test"]
    if not test.empty:
        k = len(class_names)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (test["label"].astype(int).to_numpy(), test["pred"].to_numpy()), 1)
        out["confusion_test"] = cm.tolist()
    out["environment"] = {"python": platform.python_version(), "torch": torch.__version__}
    return out
