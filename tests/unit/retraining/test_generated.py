"""The ``generated`` mitigation (SEDE): simulator images inside each root cause's rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.explain.rules import Condition, Rule
from dnnsafety.retraining.mitigation import MitigationContext
from dnnsafety.retraining.mitigations import MITIGATIONS
from dnnsafety.retraining.mitigations.generated import allocate, sample_in_rule, search_box
from dnnsafety.retraining.rootcauses import RootCause, RootCauses
from dnnsafety.sim import SignsSimulator, Simulator, signs_parameter_space
from dnnsafety.testing.retraining import ToySimulator, toy_root_causes, toy_training_data


def test_allocation_follows_rule_coverage():
    assert allocate(10, np.array([8.0, 4.0, 0.0])).tolist() == [7, 3, 0]
    assert allocate(1000, np.array([1.0, 1.0, 1.0])).sum() == 1000
    assert allocate(5, np.zeros(2)).tolist() == [0, 0]


def test_plan_adds_labelled_renders_inside_the_rules_in_proportion_to_coverage():
    train, model = toy_training_data()
    causes = toy_root_causes()  # supports 8 (dark) and 4 (hazy)
    plan = MITIGATIONS.create("generated", {"n_images": 30}).plan(
        MitigationContext(model=model, train=train, clusters=causes), random_state=3
    )
    assert len(plan.labels) == len(train.labels) + 30
    assert plan.info["generated"] == 30
    assert plan.info["per_cluster"] == {"0": 20, "1": 10}
    assert plan.info["rules"] == {"0": ["brightness <= 0.3"], "1": ["haze > 0.2"]}
    new = plan.images[len(train.labels) :]
    # the hazy third is brighter everywhere: its darkest pixel is above the haze floor
    floor = new.flatten(1).min(dim=1).values
    assert (floor[20:] > 0.2).all() and (floor[:20] < 0.2).all()
    assert torch.equal(plan.images[: len(train.labels)], train.images)


def test_rule_sampling_stays_inside_the_interval_and_the_simulator_bounds():
    sim = SignsSimulator()
    assert isinstance(sim, Simulator)
    rule = Rule((Condition("fog", 0.62, None), Condition("brightness", None, 0.4)), 1, 1, 1, 1)
    rows = sample_in_rule(sim, rule, 200, np.random.default_rng(0))
    assert rows["fog"].between(0.62, signs_parameter_space()["fog"][1]).all()
    assert rows["brightness"].between(0.08, 0.4).all()
    assert rows["rotation"].abs().max() <= 8  # unconstrained: nominal
    with pytest.raises(InvalidInputError):
        sample_in_rule(
            sim, Rule((Condition("fog", 2.0, None),), 1, 1, 1, 1), 3, np.random.default_rng(0)
        )


def test_generated_refuses_without_a_simulator_or_a_usable_rule():
    train, model = toy_training_data()
    gen = MITIGATIONS.create("generated", {"n_images": 4})
    with pytest.raises(InvalidInputError, match="simulator"):
        gen.plan(MitigationContext(model=model, train=train, clusters=RootCauses(())))
    weak = RootCauses(
        (RootCause(0, 3, (Rule((Condition("haze", 0.2, None),), 0.1, 0.9, 1, 9),)),),
        simulator=ToySimulator(),
    )
    with pytest.raises(InvalidInputError, match="usable rule"):
        gen.plan(MitigationContext(model=model, train=train, clusters=weak))
    with pytest.raises(ConfigError):
        MITIGATIONS.create("generated", {"search": "sometimes"}).plan(
            MitigationContext(model=model, train=train, clusters=toy_root_causes())
        )


def test_nsga2_search_finds_the_parameters_whose_renders_fall_inside_a_cluster():
    """A planted cluster in a known feature space (mean brightness of the image): its medoid
    is the feature of hazy renders, so the search must find haze."""
    sim = ToySimulator()
    train, model = toy_training_data()

    def features(images: torch.Tensor) -> np.ndarray:
        return images.flatten(1).mean(dim=1, keepdim=True).numpy().astype(np.float64)

    rows = sim.sample(20, np.random.default_rng(0))
    rows["haze"] = 0.45
    medoid = features(sim.render(rows)[0]).mean(axis=0)
    cause = RootCause(0, 20, (), medoid=medoid, radius=0.05)
    box, figures = search_box(sim, cause, features, model, population=12, generations=6, seed=0)
    haze = next(c for c in box.conditions if c.parameter == "haze")
    assert haze.low is not None and haze.low > 0.25
    assert figures["inside"] > 0 and box.method == "nsga2"
    # the mitigation searches that cluster when it has no rule
    causes = RootCauses((cause,), simulator=sim, features=features)
    plan = MITIGATIONS.create(
        "generated", {"n_images": 10, "population": 12, "generations": 6}
    ).plan(MitigationContext(model=model, train=train, clusters=causes))
    assert plan.info["generated"] == 10 and "0" in plan.info["searched"]
    new = plan.images[len(train.labels) :]
    assert (cause.membership(features(new)) <= 2.0).mean() > 0.5


def test_parameters_a_rule_leaves_free_come_from_the_members_it_covers():
    sim = SignsSimulator()
    rng = np.random.default_rng(0)
    members = sim.sample(40, rng)
    members["cast_b"] = np.r_[np.full(20, 0.5), np.full(20, 1.0)]
    members["brightness"] = np.r_[np.full(20, 0.1), np.full(20, 1.0)]  # night: dark and blue-less
    rule = Rule((Condition("cast_b", None, 0.74),), 1.0, 1.0, 20, 20)
    rows = sample_in_rule(sim, rule, 100, rng, members.drop(columns=["label", "scenario"]))
    assert rows["brightness"].eq(0.1).all()  # from the covered members, not daylight
    assert rows["cast_b"].between(0.35, 0.74).all()
    nominal = sample_in_rule(sim, rule, 100, rng)
    assert nominal["brightness"].min() >= 0.7
