"""Procedural traffic-sign simulator with ground-truth scenarios.

Renders labelled sign images whose difficulty is controlled by recorded parameters (lighting,
haze, blur, noise, pose, occlusion, clutter) and by named scenarios (``night``, ``fog``,
``occlusion_lower``, ``tilt``, ...) whose frequency per split is set by a
:class:`ScenarioConfig`. It returns images and parameter tables and knows nothing of datasets:
:func:`dnnsafety.data.signs.generate_signs` builds the built-in ``signs`` Dataset from them.
"""

from __future__ import annotations

from dnnsafety.sim.render import render_signs
from dnnsafety.sim.scenarios import (
    NOMINAL_RANGES,
    OCCLUSION_SIDES,
    PARAMETER_COLUMNS,
    RARE_SCENARIOS,
    SCENARIO_NAMES,
    SCENARIOS,
    Scenario,
    ScenarioConfig,
    sample_parameters,
)
from dnnsafety.sim.simulator import (
    SIMULATORS,
    SignsSimulator,
    Simulator,
    signs_parameter_space,
)
from dnnsafety.sim.templates import (
    LOOK_ALIKE_PAIRS,
    SIGN_CLASSES,
    SIGN_RADIUS,
    sign_template_image,
    sign_templates,
)

__all__ = [
    "LOOK_ALIKE_PAIRS",
    "NOMINAL_RANGES",
    "OCCLUSION_SIDES",
    "PARAMETER_COLUMNS",
    "RARE_SCENARIOS",
    "SCENARIOS",
    "SCENARIO_NAMES",
    "SIGN_CLASSES",
    "SIGN_RADIUS",
    "SIMULATORS",
    "Scenario",
    "ScenarioConfig",
    "SignsSimulator",
    "Simulator",
    "render_signs",
    "sample_parameters",
    "sign_template_image",
    "sign_templates",
    "signs_parameter_space",
]
