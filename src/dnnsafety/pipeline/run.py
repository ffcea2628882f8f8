"""The orchestrator: stages cached in the run folder.

Stages so far: ``train`` (writes ``model.pt``) and ``evaluate`` (writes ``samples.parquet`` and
``metrics.json``). Each stage has a fingerprint of everything it depends on; when the
fingerprint and the outputs are already in the run folder the stage is skipped, so re-running a
command after Ctrl-C or a crash continues where it stopped (training also resumes mid-way from
its per-epoch checkpoint). The dataset is only loaded when a stage needs it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from dnnsafety.compute import tune_allocator
from dnnsafety.config import RunConfig, dump_config
from dnnsafety.data.builtin import data_fingerprint, load_dataset
from dnnsafety.data.dataset import Dataset
from dnnsafety.evaluation.metrics import compute_metrics
from dnnsafety.exceptions import ConfigError, RunDirError
from dnnsafety.failures.table import sample_table
from dnnsafety.models.adapter import adapt_outputs
from dnnsafety.models.classes import (
    ClassOrder,
    apply_class_order,
    resolve_class_order,
    warn_if_permuted,
)
from dnnsafety.models.loading import FILE_ARCHS, check_model_file, make_model, safe_load
from dnnsafety.models.support import ModelSupport
from dnnsafety.models.training import predict, train_model
from dnnsafety.runs import CONFIG_FILE, RunDir, atomic_path, fingerprint, write_json, write_text

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoints/last.pt"
METRICS_FILE = "metrics.json"
TRAIN_FILE = "training.json"
PROBE_INPUTS = 64
"""Inputs on which a TorchScript model rebuilt as an eager module must match the original."""


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
        tune_allocator(config.compute.tune_allocator)

    # -- keys ----------------------------------------------------------------------------
    @functools.cached_property
    def data_key(self) -> str:
        cfg = self.config
        order = [] if self.class_order is None else list(self.class_order.names)
        return fingerprint(cfg.seed, cfg.section("data"), data_fingerprint(cfg.data), *order)

    @functools.cached_property
    def class_order(self) -> ClassOrder | None:
        """The order of the model's outputs, when stated (model.classes, classes.txt)."""
        return resolve_class_order(self.config.model, self.config.data)

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
        from dnnsafety.pipeline.analyze import analysis_key

        return analysis_key(self.eval_key, self.config)

    @property
    def needs_training(self) -> bool:
        """True for a model built here from scratch; False for a user's trained model file."""
        return self.config.model.arch not in FILE_ARCHS and not self.config.model.weights

    # -- data ---------------------------------------------------------------------------
    @functools.cached_property
    def dataset(self) -> Dataset:
        t0 = time.perf_counter()
        ds = apply_class_order(load_dataset(self.config.data, self.config.seed), self.class_order)
        log.info("loaded dataset %s in %.1fs", ds.name, time.perf_counter() - t0)
        write_json(self.run / "dataset.json", ds.summary())
        return ds

    def _build(self, fresh: bool = False) -> nn.Module:
        """The run's model, returning logits (:func:`~dnnsafety.models.adapter.adapt_outputs`);
        ``fresh``: freshly initialised, the weights file not loaded."""
        cfg = dataclasses.replace(self.config.model, weights="") if fresh else self.config.model
        check_model_file(cfg)  # before the (possibly long) data loading
        ds = self.dataset
        c, h, _ = ds.image_shape
        model = make_model(cfg, c, ds.num_classes, h)
        if cfg.arch == "torchscript":
            from dnnsafety.models.script import is_script_module

            if is_script_module(model):  # not a torch.export archive given as torchscript
                model = self._rebuild_script(model)
        probe = ds["test"].images[:8] if len(ds["test"]) else ds["train"].images[:8]
        return adapt_outputs(model, ds.class_names, probe, cfg.output)

    def fresh_model(self) -> nn.Module:
        """A freshly initialised model of the run's architecture (zoo or model factory; the
        weights file is not loaded), for ``retrain.from_scratch``."""
        return self._build(fresh=True)

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

    def _rebuild_script(self, scripted: nn.Module) -> nn.Module:
        """The TorchScript model as an eager module when it can be rebuilt (see
        :mod:`dnnsafety.models.script`), checked on real inputs; else itself."""
        from dnnsafety.models.script import rebuild_eager

        splits = self.dataset.splits
        split = splits["test"] if "test" in splits else next(iter(splits.values()))
        probe = split.images[:PROBE_INPUTS]
        rebuilt = rebuild_eager(scripted, probe)
        self._script_reason = rebuilt.reason
        if rebuilt.eager:
            log.info(
                "TorchScript model rebuilt as an eager module (same outputs on %d %s inputs): "
                "white-box analysis available",
                len(probe),
                split.name,
            )
        else:
            log.info("TorchScript model kept as TorchScript: %s", rebuilt.reason)
        return rebuilt.model

    @property
    def support(self) -> ModelSupport:
        """What the run's model supports (:mod:`dnnsafety.models.support`); loads a
        TorchScript model to find out whether it can be rebuilt."""
        return self._support(inspect=False)

    def _support(self, inspect: bool) -> ModelSupport:
        """With ``inspect``, the model is loaded (when it exists) and checked too."""
        from dnnsafety.models.support import model_kind, model_support

        exists = not self.needs_training or self.run.stage_key("train") == self.train_key
        load = model_kind(self.config.model) == "torchscript" or (inspect and exists)
        model = self.model() if load else None
        return model_support(self.config.model, model, getattr(self, "_script_reason", ""))

    def check_supported(
        self, command: str, strategies: Sequence[str] = (), quick: bool = False
    ) -> None:
        """Refuse, in one line naming the alternative, a command the model cannot serve
        (before any long step; :func:`dnnsafety.models.support.check_command`).

        ``quick`` decides from the model's kind alone, without loading the data or the model
        (a TorchScript model, whose support depends on its graph, is then not checked).
        """
        from dnnsafety.models.support import check_command, command_needs, model_support

        needs = command_needs(
            command,
            strategies,
            str(self.config.analysis.features),
            self.config.retrain.from_scratch,
        )
        if not needs:
            return
        if quick:
            support = model_support(self.config.model)
            if support.kind != "torchscript":
                check_command(support, command, needs)
            return
        check_command(self._support(inspect="fine_tune" in needs), command, needs)

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
            frames.append(sample_table(split, preds, self.dataset.num_classes))
        samples = pd.concat(frames, ignore_index=True)
        self.run.write_samples(samples)
        metrics = compute_metrics(samples, self.dataset.class_names)
        if not self.needs_training and "confusion_test" in metrics:
            found = warn_if_permuted(metrics["confusion_test"], self.dataset.class_names)
            if found is not None:
                metrics["suggested_classes"] = list(found.classes)
        write_json(self.run / METRICS_FILE, metrics)
        self.run.mark_done("evaluate", key, outputs, seconds=time.perf_counter() - t0)
        return self._record("evaluate", False, t0, outputs)

    def analyze(self, white_box: bool | None = None) -> StageOutcome:
        """Root-cause analysis of the errors; writes ``clusters.json`` and more.

        The analysis is the entry of :data:`~dnnsafety.pipeline.analyze.ANALYSES` that the
        configuration asks for: white-box (HUDD heatmaps) unless ``analysis.features`` names a
        black-box feature source (SAFE).

        Parameters
        ----------
        white_box
            ``None``: white-box when the model's layers can be hooked, else the black-box
            analysis with ``analysis.features = "backbone"`` (said in the log and saved in
            ``config.toml``). ``True``: the white-box analysis was asked for explicitly
            (``--features hudd``, ``--layers``, ``--mode``; or ``analysis.layers``,
            ``analysis.ruleset`` or ``analysis.mode = "hudd-compat"`` in the configuration),
            and a model without white-box access is refused in one line.
        """
        from dnnsafety.pipeline.analyze import analysis_for, stale_outputs

        t0 = time.perf_counter()
        analysis = analysis_for(self.config.analysis)
        if self.run.is_done("analyze", self.analysis_key, analysis.outputs):
            return self._record("analyze", True, t0, analysis.outputs)
        if self._black_box_instead(white_box, analysis.white_box, analysis.black_box_fallback):
            analysis = analysis_for(self.config.analysis)
            if self.run.is_done("analyze", self.analysis_key, analysis.outputs):
                return self._record("analyze", True, t0, analysis.outputs)
        self.evaluate()
        extra = analysis.run(self)
        for name in stale_outputs(analysis):  # they would describe other clusters
            stale = self.run / name
            if stale.exists():
                stale.unlink()
        outputs = analysis.outputs
        self.run.mark_done(
            "analyze", self.analysis_key, outputs, seconds=time.perf_counter() - t0, **extra
        )
        from dnnsafety.pipeline.analyze.alternative import refresh_agreements

        refresh_agreements(self.run)  # second analyses are now compared with new clusters
        old = self.run / "comparison.json"
        if old.exists():  # its per-cluster figures refer to the previous clusters
            old.replace(self.run / "comparison.previous.json")
            log.warning("new clusters: moved the old comparison.json to comparison.previous.json")
        return self._record("analyze", False, t0, outputs)

    def _black_box_instead(
        self, white_box: bool | None, reads_layers: bool, fallback: dict[str, Any]
    ) -> bool:
        """Check the analysis against the model; True when it switched to black-box.

        ``reads_layers``: the configured analysis is white-box; ``fallback``: the analysis
        settings of its black-box counterpart.
        """
        from dnnsafety.models.support import check_command

        cfg = self.config.analysis
        if not reads_layers:
            self.check_supported("analyze")  # heatmaps / activations read the layers
            return False
        support = self.support
        if support.white_box:
            return False
        if white_box or cfg.layers or cfg.ruleset or cfg.mode != "default":
            check_command(support, "analyze", ("white_box",))
        log.info(
            "the %s model gives no white-box access (%s): analysing with the black-box "
            "features instead (%s)",
            support.shown,
            support.reason,
            ", ".join(f"--{k} {v}" for k, v in fallback.items()),
        )
        for key, value in fallback.items():
            setattr(cfg, key, value)
        write_text(self.run / CONFIG_FILE, dump_config(self.config))
        return True

    def _record(
        self, name: str, skipped: bool, t0: float, outputs: tuple[str, ...]
    ) -> StageOutcome:
        out = StageOutcome(name, skipped, time.perf_counter() - t0, outputs)
        if skipped and any(o.name == name for o in self.outcomes):
            # asked for again by a later step of this command: already logged
            log.debug("stage %s reused within this command", name)
        elif skipped:
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
