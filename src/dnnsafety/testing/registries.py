"""Every plug-in registry with the contract check its entries must pass.

:func:`registry_cases` is what ``tests/contract/test_registries.py`` runs; a registry added to the
package adds one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from dnnsafety.testing.attacks import check_attack
from dnnsafety.testing.checks import (
    check_clusterer,
    check_feature_source,
    check_reducer,
    check_selector,
)
from dnnsafety.testing.detectors import check_detector
from dnnsafety.testing.retraining import check_mitigation
from dnnsafety.testing.robustness_checks import check_corruption

__all__ = ["registry_cases"]


def registry_cases() -> Iterator[tuple[str, Callable[[Any], None], Any]]:
    """``("<kind>:<name>", check, plug-in)`` for every entry of every plug-in registry.

    Read when called, so plug-ins registered at run time are included.
    """
    from dnnsafety.adversarial import ATTACKS
    from dnnsafety.clustering import CLUSTERERS, REDUCERS
    from dnnsafety.detection import DETECTORS
    from dnnsafety.features import FEATURE_SOURCES
    from dnnsafety.retraining.mitigations import MITIGATIONS
    from dnnsafety.robustness.corruptions import CORRUPTIONS
    from dnnsafety.selection import SELECTORS

    checks: list[tuple[Any, Callable[[Any], None]]] = [
        (CLUSTERERS, check_clusterer),
        (REDUCERS, check_reducer),
        (SELECTORS, check_selector),
        (FEATURE_SOURCES, check_feature_source),
        (MITIGATIONS, check_mitigation),
        (DETECTORS, check_detector),
        (CORRUPTIONS, check_corruption),
        (ATTACKS, check_attack),
    ]
    for registry, check in checks:
        for name in registry.names():
            yield f"{registry.kind}:{name}", check, registry.get(name)
