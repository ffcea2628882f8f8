"""A second analysis of a run's errors, kept beside the main one, and their agreement.

``dnnsafety analyze RUN --features hudd --as hudd`` runs an analysis of
:data:`~dnnsafety.pipeline.analyze.ANALYSES` into ``analysis/alt/<name>/`` instead of the run
folder itself. That folder is laid out like a run folder's analysis part: its own
``clusters.json``, ``analysis/`` (contact sheets, representatives, error map; HUDD's layer
table, WICD plots and heatmaps), ``config.toml`` (the run's configuration with the second
analysis's settings) and ``stages.json`` (its cached ``analyze`` stage). Its ``cluster``
column is kept in its own ``samples.parquet`` (``sample_id`` + ``cluster`` only): the run's
``samples.parquet``, ``clusters.json`` and ``config.toml`` are left as they are, so the stages
that use *the* analysis (select, retrain, report's cluster gallery) still use the main one.

Beside it, ``agreement.json`` (:class:`~dnnsafety.pipeline.artifacts.AnalysisAgreement`) and
``agreement.png`` put the two partitions of the same errors side by side: adjusted Rand index,
contingency table, best Jaccard match per main cluster and, with ground-truth scenarios, each
analysis's purity and per-cause F1 (:mod:`dnnsafety.evaluation.agreement`,
:func:`dnnsafety.evaluation.score_clusters`). A fresh main analysis rewrites it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from torch import nn

from dnnsafety.config import AnalysisConfig, RunConfig, dump_config
from dnnsafety.data.dataset import NOMINAL, UNKNOWN_SCENARIO
from dnnsafety.evaluation import score_clusters
from dnnsafety.evaluation.agreement import compare_partitions
from dnnsafety.exceptions import ConfigError
from dnnsafety.explain.agreement import plot_contingency
from dnnsafety.failures import error_inputs
from dnnsafety.pipeline.analyze.base import (
    ANALYSIS_DIR,
    RunContext,
    analysis_for,
    analysis_key,
    stale_outputs,
)
from dnnsafety.pipeline.artifacts import (
    AnalysisAgreement,
    ArtifactError,
    Clusters,
    JSONObject,
    read_artifact,
    write_artifact,
)
from dnnsafety.runs import CONFIG_FILE, SAMPLES_FILE, RunDir, write_parquet, write_text

if TYPE_CHECKING:
    from dnnsafety.data.dataset import Dataset
    from dnnsafety.models.support import ModelSupport

log = logging.getLogger(__name__)

ALT_DIR = f"{ANALYSIS_DIR}/alt"
"""Where second analyses live: ``analysis/alt/<name>/``."""
MAIN = "main"
"""The name of the run's own analysis in :class:`AnalysisAgreement`."""
HEATMAP_FILE = "agreement.png"


def check_name(name: str) -> str:
    """``name`` if it can name a second analysis (letters, digits, ``-``, ``_``; not ``main``).

    Raises
    ------
    ConfigError
        When it cannot.
    """
    ok = bool(name) and all(ch.isalnum() or ch in "-_" for ch in name) and name != MAIN
    if not ok:
        raise ConfigError(
            f"--as {name!r}: name the second analysis with letters, digits, '-' and '_' "
            f"(not {MAIN!r}, the run's own analysis), e.g. --as hudd."
        )
    return name


class AlternativeRun(RunDir):
    """The folder ``analysis/alt/<name>/`` of a run, seen by an analysis as its run folder.

    It reads the run's per-sample table, with its own columns (the second analysis's
    ``cluster``) in place of the run's, and writes those columns to its own
    ``samples.parquet``; every other file it writes lands in its own folder.

    Parameters
    ----------
    parent
        The run folder.
    name
        The second analysis's name (:func:`check_name`).
    create
        Create the folder when missing.
    """

    def __init__(self, parent: RunDir, name: str, create: bool = True) -> None:
        super().__init__(parent / ALT_DIR / check_name(name), create=create)
        self.parent = parent
        self.name = name

    def _own_columns(self) -> pd.DataFrame | None:
        f = self.path / SAMPLES_FILE
        return pd.read_parquet(f).set_index("sample_id") if f.exists() else None

    def read_samples(self) -> pd.DataFrame:
        """The run's ``samples.parquet`` with this analysis's columns in place of its own."""
        table = self.parent.read_samples()
        own = self._own_columns()
        if own is None:
            return table
        table = table.set_index("sample_id")
        for col in own.columns:
            table[col] = own[col].reindex(table.index)
        return table.reset_index()

    def write_samples(self, frame: pd.DataFrame) -> None:
        """Refused: the run's per-sample table belongs to the run."""
        raise RuntimeError("a second analysis does not rewrite the run's samples.parquet")

    def add_columns(self, columns: pd.DataFrame) -> None:
        """Add or replace this analysis's own columns (indexed by sample id)."""
        own = self._own_columns()
        if own is None:
            own = pd.DataFrame(index=columns.index.rename("sample_id"))
        own = own.reindex(own.index.union(columns.index))
        for col in columns.columns:
            own[col] = columns[col].reindex(own.index)
        write_parquet(self.path / SAMPLES_FILE, own.rename_axis("sample_id").reset_index())


class Pipeline(RunContext, Protocol):
    """What a second analysis needs of the orchestrator (a
    :class:`~dnnsafety.pipeline.Pipeline`): the run context, its main analysis and keys."""

    @property
    def eval_key(self) -> str: ...

    @property
    def support(self) -> ModelSupport: ...

    def analyze(self, white_box: bool | None = None) -> Any: ...


@dataclass
class AlternativeContext:
    """What the second analysis reads (:class:`~dnnsafety.pipeline.analyze.RunContext`): the
    run's data and model, its own folder and configuration."""

    run: RunDir
    config: RunConfig
    pipeline: Pipeline

    @property
    def dataset(self) -> Dataset:
        return self.pipeline.dataset

    @property
    def model_key(self) -> str:
        return self.pipeline.model_key

    def model(self) -> nn.Module:
        return self.pipeline.model()


@dataclass(frozen=True)
class AlternativeOutcome:
    """What :func:`analyze_alternative` did: ``skipped`` when the cached analysis was reused."""

    name: str
    method: str
    skipped: bool
    seconds: float
    agreement: AnalysisAgreement


def analyze_alternative(
    pipe: Pipeline, name: str, analysis: AnalysisConfig, white_box: bool = False
) -> AlternativeOutcome:
    """Run the analysis ``analysis`` asks for as the second analysis ``name`` of the run.

    The main analysis runs first when it has not (cached otherwise); then the second one
    (cached in its folder by the model and its settings), then the agreement is written.

    Parameters
    ----------
    pipe
        The run's orchestrator, with the run's own configuration.
    name
        Folder name under ``analysis/alt/`` (:func:`check_name`).
    analysis
        The second analysis's settings (e.g. ``features = ""`` for HUDD).
    white_box
        The white-box analysis was asked for by name: a model without white-box access is
        refused in one line (there is no black-box fallback for a second analysis).

    Raises
    ------
    ConfigError
        For a bad name, or a white-box analysis of a model that gives no white-box access.
    """
    from dnnsafety.models.support import check_command, command_needs

    t0 = time.perf_counter()
    alt = AlternativeRun(pipe.run, name)
    config = replace(pipe.config, analysis=analysis)
    chosen = analysis_for(analysis)
    needs = command_needs("analyze", features=str(analysis.features))
    if chosen.white_box or white_box:
        needs = (*needs, "white_box")
    check_command(pipe.support, "analyze", needs)
    pipe.analyze()
    t1 = time.perf_counter()
    key = analysis_key(pipe.eval_key, config)
    skipped = alt.is_done("analyze", key, chosen.outputs)
    if not skipped:
        log.info("second analysis %r (%s) into %s", name, chosen.name, alt.path)
        extra = chosen.run(AlternativeContext(alt, config, pipe))
        for stale in stale_outputs(chosen):
            if (alt / stale).exists():
                (alt / stale).unlink()
        write_text(alt / CONFIG_FILE, dump_config(config))
        alt.mark_done("analyze", key, chosen.outputs, seconds=time.perf_counter() - t1, **extra)
    agreement = write_agreement(pipe.run, name)
    return AlternativeOutcome(name, chosen.name, skipped, time.perf_counter() - t0, agreement)


def alternatives(run: RunDir) -> list[str]:
    """Names of the run's second analyses (folders under ``analysis/alt/`` with clusters)."""
    root = run / ALT_DIR
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{Clusters.FILE}"))


def refresh_agreements(run: RunDir) -> None:
    """Rewrite the agreement of every second analysis (after a fresh main analysis)."""
    for name in alternatives(run):
        try:
            write_agreement(run, name)
        except ArtifactError as exc:  # a damaged second analysis must not fail the main one
            log.warning("could not compare the second analysis %r: %s", name, exc)
            continue
        log.info("new main clusters: rewrote the agreement with the second analysis %r", name)


def _analysed(clusters: Clusters, samples: pd.DataFrame) -> dict[str, int]:
    """Cluster id per analysed error (``-1``: noise)."""
    ids = error_inputs(samples, clusters.split)["sample_id"].astype(str).tolist()
    of = clusters.labels()
    return {sid: int(of.get(sid, -1)) for sid in ids}


def _summary(clusters: Clusters, labels: dict[str, int], scenarios: pd.Series | None) -> JSONObject:
    """One analysis's figures: method, sizes, noise and, with ground truth, its scores (the
    causes: every scenario among the errors but ``nominal``, or every one when that is all)."""
    values = np.array(list(labels.values()), dtype=np.int64)
    out: JSONObject = {
        "method": clusters.method or "hudd",
        "n_errors": len(values),
        "n_clusters": len(set(values.tolist()) - {-1}),
        "n_noise": int((values < 0).sum()),
        "sizes": sorted(clusters.sizes(), reverse=True),
    }
    if scenarios is not None and len(values):
        truth = scenarios.reindex(list(labels)).astype(str).tolist()
        causes = sorted(set(truth) - {NOMINAL, UNKNOWN_SCENARIO}) or None
        scores = score_clusters(values, truth, scenarios_to_cover=causes)
        out["scores"] = {
            "purity": scores.purity,
            "purity_trivial": scores.purity_trivial,
            "coverage": scores.coverage,
            "mean_f1": scores.mean_f1,
            "min_f1": scores.min_f1,
            "uncovered": list(scores.uncovered),
            "causes": {
                cause: {
                    "cluster": s.cluster,
                    "recall": s.recall,
                    "precision": s.precision,
                    "f1": s.f1,
                    "n_errors": s.n_errors,
                }
                for cause, s in scores.causes.items()
            },
        }
    return out


def _ground_truth(samples: pd.DataFrame) -> pd.Series | None:
    """Scenario per sample id when the data has ground truth (some known scenario)."""
    if "scenario" not in samples.columns:
        return None
    scen = samples.set_index(samples["sample_id"].astype(str))["scenario"].astype(str)
    return scen if (scen != UNKNOWN_SCENARIO).any() else None


def agreement_of(
    main: Clusters,
    other: Clusters,
    samples: pd.DataFrame,
    name: str,
    heatmap: str = "",
) -> tuple[AnalysisAgreement, np.ndarray]:
    """The agreement of two ``clusters.json`` of one run (and the contingency for the plot)."""
    first, second = _analysed(main, samples), _analysed(other, samples)
    cmp = compare_partitions(first, second)
    truth = _ground_truth(samples)
    agreement = AnalysisAgreement(
        first=MAIN,
        second=name,
        split=main.split,
        n_common=cmp.n_common,
        n_shared=cmp.n_shared,
        ari=None if np.isnan(cmp.ari) else cmp.ari,
        first_ids=cmp.first_ids,
        second_ids=cmp.second_ids,
        contingency=cmp.contingency.tolist(),
        matches=[asdict(m) for m in cmp.matches],
        analyses={MAIN: _summary(main, first, truth), name: _summary(other, second, truth)},
        heatmap=heatmap,
    )
    return agreement, cmp.contingency


def write_agreement(run: RunDir, name: str) -> AnalysisAgreement:
    """Compare the second analysis ``name`` with the run's main analysis; write
    ``agreement.json`` and ``agreement.png`` into its folder.

    Raises
    ------
    ArtifactError
        When either analysis's ``clusters.json`` is missing or unreadable.
    """
    alt = AlternativeRun(run, name, create=False)
    main = read_artifact(Clusters, run)
    other = read_artifact(Clusters, alt)
    if other.split != main.split:
        log.warning(
            "the second analysis %r analysed the %s split, the main one %s: only their "
            "common errors are compared",
            name,
            other.split,
            main.split,
        )
    heatmap = f"{ALT_DIR}/{name}/{HEATMAP_FILE}"
    agreement, table = agreement_of(main, other, run.read_samples(), name, heatmap)
    plot_contingency(
        np.asarray(table),
        agreement.first_ids,
        agreement.second_ids,
        (f"{MAIN} ({main.method or 'hudd'})", f"{name} ({other.method or 'hudd'})"),
        alt / HEATMAP_FILE,
    )
    write_artifact(alt, agreement)
    return agreement
