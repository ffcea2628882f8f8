"""Procedural traffic-sign simulator with ground-truth scenarios.

Renders labelled sign images whose difficulty is controlled by recorded parameters (lighting,
haze, blur, noise, pose, occlusion, clutter) and by named scenarios (``night``, ``fog``,
``occlusion_lower``, ``tilt``, ...) whose frequency per split is set by a
:class:`ScenarioConfig`. :func:`generate_signs` builds a complete :class:`~dnnsafety.data.
dataset.Dataset`.
"""

from __future__ import annotations

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
from dnnsafety.sim.signs import (
    LOOK_ALIKE_PAIRS,
    SIGN_CLASSES,
    generate_signs,
    render_signs,
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
    "Scenario",
    "ScenarioConfig",
    "generate_signs",
    "render_signs",
    "sample_parameters",
    "sign_template_image",
    "sign_templates",
]
