"""``generated``: simulator images inside each root cause's rules, added to fine-tuning (SEDE).

SEDE (Fahmy, Pastore, Briand, Stifter, TOSEM 2023, METHOD.md §10) characterises each
root-cause cluster by ranges of simulator parameters and renders new, simulator-labelled
training images inside them; it reports up to +18 points of accuracy on the failing
scenarios. No label is spent (``cost = 0``).

1. **Allocation.** ``n_images`` are shared among the clusters in proportion to their rules'
   coverage (cluster members covered by the rules used), largest remainder; inside a cluster,
   among its rules in proportion to each rule's support.
2. **Sampling inside a rule.** The parameters the rule leaves free are those of cluster
   members the rule covers (drawn with replacement; the simulator's default distribution
   when the members' metadata is unknown), then every parameter the rule constrains is drawn
   uniformly inside the rule's interval (clipped to the simulator's bounds). A rule only
   separates a cluster from the *other errors*: ``cast_b <= 0.74`` singles out the night
   errors on signs, but renders with that cast under daylight are not night images; the
   members' other parameters (low brightness, noise) make them so.
3. **Weak rules: search.** When a cluster's best rule is weak (F1 below ``weak_f1``, or no
   rule of precision ``>= min_precision``) and the analysis feature space is available, the
   parameters are searched with NSGA-II (pymoo) on two objectives: membership = distance of
   the render's features to the cluster medoid over the cluster radius (``<= 1`` inside), and
   the original model's softmax probability of the true class (low = a failure). The box
   spanned by the final population's members inside the cluster (or its best quarter by
   membership when none is) takes the place of a rule.
4. The renders (with their simulator labels) are appended to the training split.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.explain.rules import Condition, Rule
from dnnsafety.retraining.mitigation import (
    MITIGATIONS,
    Mitigation,
    MitigationContext,
    TrainingPlan,
)
from dnnsafety.retraining.rootcauses import RootCause, RootCauses
from dnnsafety.sim.simulator import Simulator

__all__ = ["GeneratedMitigation", "allocate", "sample_in_rule", "search_box"]

SEARCH_MODES = ("auto", "never", "always")


def allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to non-negative ``weights``, largest remainder (ties:
    lower position); all zeros when every weight is 0."""
    w = np.asarray(weights, dtype=np.float64)
    if total <= 0 or w.sum() <= 0:
        return np.zeros(len(w), dtype=np.int64)
    share = total * w / w.sum()
    out = np.floor(share).astype(np.int64)
    rest = share - out
    for i in np.argsort(-rest, kind="stable")[: total - int(out.sum())]:
        out[i] += 1
    return out


def sample_in_rule(
    simulator: Simulator,
    rule: Rule,
    n: int,
    rng: np.random.Generator,
    members: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``n`` parameter rows inside ``rule``.

    Parameters the rule leaves free come from the rows of ``members`` the rule covers (drawn
    with replacement), or from the simulator's default distribution without ``members`` (or
    when the rule covers none of them); every parameter the rule constrains is drawn
    uniformly inside its interval, clipped to the simulator's bounds (conditions on
    parameters the simulator does not have are ignored). Labels are the simulator's.

    Raises
    ------
    InvalidInputError
        If a condition's interval lies outside the parameter's bounds.
    """
    rows = simulator.sample(n, rng)
    if members is not None and len(members) and n:
        known = tuple(c for c in rule.conditions if c.parameter in members.columns)
        covered = members[Rule(known, 0.0, 0.0, 0, 0).holds(members)]
        if len(covered):
            picked = covered.iloc[rng.integers(0, len(covered), size=n)]
            for col in rows.columns:
                if col not in ("label", "scenario") and col in picked.columns:
                    rows[col] = picked[col].to_numpy()
    space = simulator.parameter_space
    for cond in rule.conditions:
        if cond.parameter not in space:
            continue
        low, high = space[cond.parameter]
        lo = low if cond.low is None else max(low, cond.low)
        hi = high if cond.high is None else min(high, cond.high)
        if lo > hi:
            raise InvalidInputError(
                f"The rule {rule.text()!r} asks for {cond} outside the simulator's bounds "
                f"[{low:g}, {high:g}] of {cond.parameter}."
            )
        rows[cond.parameter] = rng.uniform(lo, hi, size=n)
    return rows


def search_box(
    simulator: Simulator,
    cause: RootCause,
    features: Any,
    model: torch.nn.Module,
    *,
    population: int,
    generations: int,
    seed: int,
) -> tuple[Rule, dict[str, Any]]:
    """NSGA-II search of simulator parameters whose renders fall inside ``cause`` (module
    docstring, step 3); returns the box as a :class:`Rule` (``method = "nsga2"``, precision =
    share of the final population inside the cluster) and search figures.

    Raises
    ------
    InvalidInputError
        If the cluster has no medoid and radius.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    if cause.medoid is None or not cause.radius:
        raise InvalidInputError(f"Searching cluster {cause.id} needs its medoid and radius.")
    names = list(simulator.parameter_space)
    bounds = np.array([simulator.parameter_space[n] for n in names], dtype=np.float64)
    base_rng = np.random.default_rng(seed)
    renders = [0]

    def render(x: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        rows = simulator.sample(len(x), np.random.default_rng(base_rng.integers(2**32)))
        for j, name in enumerate(names):
            rows[name] = x[:, j]
        renders[0] += len(x)
        return simulator.render(rows, seed=seed)

    class _Membership(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=len(names), n_obj=2, xl=bounds[:, 0], xu=bounds[:, 1])

        def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            images, labels = render(x)
            inside = cause.membership(features(images))
            with torch.no_grad():
                was = model.training
                model.eval()
                probs = torch.softmax(model(images), dim=1).numpy()
                model.train(was)
            out["F"] = np.c_[inside, probs[np.arange(len(labels)), labels]]

    result = minimize(
        _Membership(),
        NSGA2(pop_size=population),
        ("n_gen", generations),
        seed=seed,
        verbose=False,
    )
    x = np.atleast_2d(result.pop.get("X"))
    f = np.atleast_2d(result.pop.get("F"))
    inside = f[:, 0] <= 1.0
    keep = inside if inside.any() else f[:, 0] <= np.quantile(f[:, 0], 0.25)
    box = x[keep]
    conds = tuple(
        Condition(name, float(box[:, j].min()), float(box[:, j].max()))
        for j, name in enumerate(names)
        if box[:, j].max() > box[:, j].min()
    )
    rule = Rule(conds, float(inside.mean()), 0.0, 0, len(box), "nsga2")
    return rule, {"renders": renders[0], "inside": int(inside.sum()), "population": len(x)}


@MITIGATIONS.register(
    "generated", help="simulator images inside each root cause's metadata rules (SEDE); no labels"
)
class GeneratedMitigation(Mitigation):
    """Fine-tune on the training split plus simulator renders inside each root cause's rules.

    Parameters
    ----------
    n_images
        Images generated per run (``>= 1``).
    min_precision
        Rules below this precision are not used.
    weak_f1
        A cluster whose best rule has a lower F1 is searched (``search="auto"``).
    search
        ``"auto"`` (search the clusters with weak rules when the feature space is known),
        ``"never"`` or ``"always"``.
    population, generations
        NSGA-II population size and number of generations per searched cluster.

    Notes
    -----
    Needs the ``clusters`` context field with a simulator; ``plan.info`` reports
    ``generated`` (the number of images), ``per_cluster`` and the rule used for each.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"clusters"})
    needs_simulator: ClassVar[bool] = True
    _test_params: ClassVar[dict[str, object]] = {"n_images": 12, "population": 6, "generations": 2}

    def __init__(
        self,
        *,
        n_images: int = 1000,
        min_precision: float = 0.5,
        weak_f1: float = 0.5,
        search: str = "auto",
        population: int = 24,
        generations: int = 8,
    ) -> None:
        self.n_images = n_images
        self.min_precision = min_precision
        self.weak_f1 = weak_f1
        self.search = search
        self.population = population
        self.generations = generations

    def _check(self) -> None:
        for name in ("n_images", "population", "generations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"The {name!r} parameter of generated must be an int >= 1. Got {value!r}."
                )
        if self.search not in SEARCH_MODES:
            raise ConfigError(
                f"The 'search' parameter of generated must be one of {', '.join(SEARCH_MODES)}. "
                f"Got {self.search!r}."
            )

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        self._check()
        causes: RootCauses | None = context.clusters
        if causes is None or causes.simulator is None:
            raise InvalidInputError(
                "The generated strategy renders new images and needs a simulator for this "
                "dataset: the built-in signs dataset has one; register yours in "
                "dnnsafety.sim.SIMULATORS under your dataset's name."
            )
        sim = causes.simulator
        rng = np.random.default_rng(random_state)
        chosen: list[tuple[RootCause, list[Rule]]] = []
        searched: dict[str, Any] = {}
        for cause in causes.clusters:
            usable = [r for r in cause.rules if r.precision >= self.min_precision and r.support]
            weak = not usable or usable[0].f1 < self.weak_f1
            can_search = causes.features is not None and cause.medoid is not None
            if can_search and (self.search == "always" or (self.search == "auto" and weak)):
                box, figures = search_box(
                    sim,
                    cause,
                    causes.features,
                    context.model,
                    population=self.population,
                    generations=self.generations,
                    seed=random_state + cause.id,
                )
                searched[str(cause.id)] = {**figures, "box": box.text()}
                usable = [Rule(box.conditions, box.precision, 1.0, cause.size, cause.size, "nsga2")]
            if usable:
                chosen.append((cause, usable))
        if not chosen:
            raise InvalidInputError(
                "No root-cause cluster has a usable rule (precision >= "
                f"{self.min_precision}) and none could be searched; lower min_precision or run "
                "the analysis on data with metadata."
            )
        coverage = np.array([sum(r.support for r in rules) for _, rules in chosen], dtype=float)
        counts = allocate(self.n_images, coverage)
        frames, per_cluster, used = [], {}, {}
        for (cause, rules), k in zip(chosen, counts, strict=True):
            split = allocate(int(k), np.array([r.support for r in rules], dtype=float))
            for rule, m in zip(rules, split, strict=True):
                if m:
                    frames.append(sample_in_rule(sim, rule, int(m), rng, cause.members))
            per_cluster[str(cause.id)] = int(k)
            used[str(cause.id)] = [r.text() for r in rules]
        params = pd.concat(frames, ignore_index=True)
        images, labels = sim.render(params, seed=random_state)
        train = context.train
        if tuple(images.shape[1:]) != tuple(train.images.shape[1:]):
            raise InvalidInputError(
                f"The simulator renders images of shape {tuple(images.shape[1:])}, but the "
                f"model trains on {tuple(train.images.shape[1:])}; set its image size."
            )
        info: dict[str, Any] = {
            "generated": len(labels),
            "per_cluster": per_cluster,
            "rules": used,
        }
        if searched:
            info["searched"] = searched
        return TrainingPlan(
            torch.cat([train.images, images.to(train.images.dtype)]),
            np.concatenate([np.asarray(train.labels, dtype=np.int64), labels]),
            info=info,
        )
