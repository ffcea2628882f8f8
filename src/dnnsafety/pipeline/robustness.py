"""The ``robustness`` stage: corruption, missing-data and fault sweeps of a run's model.

Writes ``robustness.json`` (:class:`~dnnsafety.pipeline.artifacts.Robustness`). Every
finished cell of a sweep (one corruption at one severity, one missing rate, one fault) is
appended to ``robustness/cells.jsonl`` as it ends; a rerun after an interruption reads them
back and computes only the missing cells. The file starts with the fingerprint of the model
and the settings, so cells of another model or other settings are never reused.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnsafety.data.dataset import NOMINAL, UNKNOWN_SCENARIO
from dnnsafety.exceptions import ConfigError
from dnnsafety.pipeline.artifacts import ArtifactError, Robustness, read_artifact, write_artifact
from dnnsafety.pipeline.run import Pipeline
from dnnsafety.robustness.corruptions import CORRUPTIONS, IMAGENET_C, MISSING, SEVERITIES
from dnnsafety.robustness.faults import EXPONENT_BITS, sample_bit_flips
from dnnsafety.robustness.ranger import Ranger
from dnnsafety.robustness.sweep import (
    CellStore,
    corruption_errors,
    corruption_sweep,
    fault_campaign,
    mean_corruption_error,
    missing_sweep,
    predict_labels,
)
from dnnsafety.runs import fingerprint

log = logging.getLogger(__name__)

CELLS_FILE = "robustness/cells.jsonl"
RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
FAULT_KINDS = ("none", "bitflip")
PROFILE_IMAGES = 2000
"""Training images Ranger's bounds are profiled on."""


@dataclass(frozen=True)
class RobustnessSettings:
    """What ``dnnsafety robustness`` sweeps.

    Attributes
    ----------
    corruptions
        Corruption names (may be empty).
    severities
        Severities per corruption.
    missing
        Missing-data kinds (may be empty), each at :data:`RATES`.
    faults
        ``"none"`` or ``"bitflip"``.
    n_faults
        Single bit flips injected (each alone).
    bits
        Bit positions the flips are drawn from.
    ranger
        Also run the flips on the Ranger-hardened model.
    max_images
        Test images used at most (nominal ones first).
    fault_images
        Test images each fault is judged on.
    seed
        The sweeps' seed.
    """

    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = SEVERITIES
    missing: tuple[str, ...] = MISSING
    faults: str = "none"
    n_faults: int = 1000
    bits: tuple[int, ...] = tuple(range(32))
    ranger: bool = False
    max_images: int = 2000
    fault_images: int = 500
    seed: int = 0

    def validate(self) -> None:
        for name in self.corruptions:
            CORRUPTIONS.get(name)
        unknown = sorted(set(self.missing) - set(MISSING))
        if unknown:
            raise ConfigError(f"Unknown missing-data kind(s) {unknown}; use {', '.join(MISSING)}.")
        if self.faults not in FAULT_KINDS:
            raise ConfigError(f"--faults must be one of {', '.join(FAULT_KINDS)}.")
        bad = [s for s in self.severities if s not in SEVERITIES]
        if bad or not self.severities:
            raise ConfigError(f"Severities must be from 1 to 5; got {list(self.severities)}.")
        if not self.corruptions and not self.missing and self.faults == "none":
            raise ConfigError("Nothing to sweep: give --corruptions, --missing or --faults.")


DEMO_SWEEP = RobustnessSettings(
    corruptions=IMAGENET_C,
    severities=(1, 3, 5),
    faults="bitflip",
    n_faults=200,
    max_images=300,
    fault_images=200,
)
"""The short sweep of ``dnnsafety demo``: 15 corruptions at 3 severities, the missing-data
curves and 200 bit flips, on 300 test images."""


class _CellFile:
    """Append-only store of finished cells, tied to one fingerprint."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key
        self.done: dict[str, object] = {}
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            header = _loads(lines[0]) if lines else None
            if isinstance(header, dict) and header.get("key") == key:
                for line in lines[1:]:
                    item = _loads(line)  # a line cut by a crash is skipped
                    if isinstance(item, dict) and "k" in item:
                        self.done[str(item["k"])] = item.get("v")
            else:
                log.info("robustness: earlier cells belong to another model or settings")
                path.unlink()
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"key": key}) + "\n", encoding="utf-8")
        if self.done:
            log.info("robustness: reusing %d finished cells of %s", len(self.done), path.name)

    def store(self, prefix: str) -> CellStore:
        """The cells of one sweep (keys prefixed), saving new ones to the file."""
        done = {k[len(prefix) :]: v for k, v in self.done.items() if k.startswith(prefix)}

        def save(key: str, value: object) -> None:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"k": prefix + key, "v": value}) + "\n")

        return CellStore(done, save)


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def sweep_images(pipe: Pipeline, limit: int) -> tuple[torch.Tensor, np.ndarray, dict[str, Any]]:
    """The test images the sweeps run on: nominal (or scenario-less) ones when the data has
    some, at most ``limit``, in the split's order."""
    test = pipe.dataset["test"]
    plain = np.isin(test.scenarios, [NOMINAL, UNKNOWN_SCENARIO])
    idx = np.flatnonzero(plain) if plain.any() else np.arange(len(test))
    selection = "nominal test images" if plain.any() else "all test images"
    idx = idx[:limit]
    info = {"split": "test", "n": len(idx), "selection": selection}
    return test.images[idx], test.labels[idx], info


def _keys(grid: dict[Any, dict[Any, float]]) -> dict[str, dict[str, float]]:
    return {str(r): {f"{c:g}" if isinstance(c, float) else str(c): v for c, v in cells.items()}
            for r, cells in grid.items()}  # fmt: skip


def _campaign_json(campaign: Any) -> dict[str, Any]:
    return {
        "rate": campaign.rate(),
        "critical": campaign.critical_share(),
        "by_layer": campaign.by("layer"),
        "by_bit": campaign.by("bit"),
    }


def run_robustness(
    pipe: Pipeline, settings: RobustnessSettings, reference: Path | None = None
) -> Robustness:
    """Run the sweeps of ``settings`` on the run's model; write ``robustness.json``.

    Parameters
    ----------
    pipe
        The run (its model must be trained or given).
    settings
        What to sweep.
    reference
        A run folder whose ``robustness.json`` is the reference of the corruption errors
        (e.g. the model before fine-tuning); ``None``: no mCE.

    Raises
    ------
    ConfigError
        Bad settings, or a reference without the swept corruptions.
    """
    settings.validate()
    ref = None
    if reference is not None:
        try:
            ref = read_artifact(Robustness, reference)
        except ArtifactError as exc:
            raise ConfigError(f"--reference: {exc}") from None
    t0 = time.perf_counter()
    model = pipe.model()
    images, labels, info = sweep_images(pipe, settings.max_images)
    key = fingerprint(pipe.model_key, info, repr(settings), "robustness-v1")
    cells = _CellFile(pipe.run / CELLS_FILE, key)
    clean = float(np.mean(predict_labels(model, images) == labels))
    out: dict[str, Any] = {"images": info, "clean_accuracy": clean}
    if settings.corruptions:
        grid = corruption_sweep(
            model, images, labels, settings.corruptions, settings.severities,
            settings.seed, cells.store("c/"),
        )  # fmt: skip
        out["accuracy"] = _keys(grid)
        out["families"] = {n: CORRUPTIONS.get(n).family for n in settings.corruptions}
        if ref is not None and ref.accuracy:
            theirs = {n: {int(s): v for s, v in c.items()} for n, c in ref.accuracy.items()}
            errors = corruption_errors(grid, theirs)
            if not errors:
                raise ConfigError(
                    f"--reference {reference} has none of the swept corruptions; sweep them "
                    "there first."
                )
            out["corruption_errors"] = errors
            out["mce"] = mean_corruption_error(errors)
            out["reference"] = {"run": str(reference), "clean_accuracy": ref.clean_accuracy}
    if settings.missing:
        grid_m = missing_sweep(
            model, images, labels, settings.missing, RATES, settings.seed, cells.store("m/")
        )
        out["missing"] = _keys(grid_m)
    if settings.faults == "bitflip":
        x_f, y_f = images[: settings.fault_images], labels[: settings.fault_images]
        faults = sample_bit_flips(model, settings.n_faults, settings.bits, None, settings.seed)
        campaign = fault_campaign(model, x_f, y_f, faults, cells.store("f/"))
        result: dict[str, Any] = {
            "kind": "bitflip",
            "n": len(faults),
            "bits": list(settings.bits),
            "n_inputs": len(y_f),
            **_campaign_json(campaign),
        }
        if settings.ranger:
            train = pipe.dataset["train"].images[:PROFILE_IMAGES]
            hardened = Ranger.from_training_data(model, train)
            plain_exp = campaign.subset(EXPONENT_BITS)
            ranger_run = fault_campaign(hardened.model, x_f, y_f, faults, cells.store("r/"))
            result["ranger"] = {
                "clean_accuracy": float(np.mean(predict_labels(hardened, images) == labels)),
                "bounds": {k: list(v) for k, v in hardened.bounds().items()},
                "exponent_rate": plain_exp.rate(),
                "exponent_rate_ranger": ranger_run.subset(EXPONENT_BITS).rate(),
                **{f"{k}_ranger": v for k, v in _campaign_json(ranger_run).items()},
            }
        out["faults"] = result
    out["settings"] = {
        "seed": settings.seed,
        "severities": list(settings.severities),
        "rates": list(RATES),
        "seconds": time.perf_counter() - t0,
    }
    artifact = Robustness(**out)
    write_artifact(pipe.run, artifact)
    return artifact


def parse_bits(text: str) -> tuple[int, ...]:
    """``all``, ``exponent``, ``sign``, ``mantissa`` or a comma list of positions / ranges
    (``23-30``)."""
    named = {
        "all": tuple(range(32)),
        "exponent": EXPONENT_BITS,
        "sign": (31,),
        "mantissa": tuple(range(23)),
    }
    if text in named:
        return named[text]
    bits: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            bits += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConfigError(
            f"--bits must be all, exponent, sign, mantissa or positions like 23-30; got {text!r}."
        ) from None
    if not bits or any(not 0 <= b <= 31 for b in bits):
        raise ConfigError(f"--bits must be positions from 0 to 31; got {text!r}.")
    return tuple(sorted(set(bits)))


def parse_names(text: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    """A comma list; ``none`` or empty: nothing."""
    if text.strip() in ("", "none"):
        return ()
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if allowed is not None and "all" in names:
        return tuple(allowed)
    return names
