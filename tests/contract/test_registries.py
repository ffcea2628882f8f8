"""One contract test over every registry: each registered plug-in passes its shipped check.

The cases come from :func:`dnnsafety.testing.registry_cases` when the tests are collected, so
a plug-in registered by importing its module is checked without touching this file
(``test_toy_plugins.py`` shows it with toys registered at run time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dnnsafety.testing import registry_cases

CASES = list(registry_cases())


@pytest.mark.parametrize(
    ("check", "plugin"), [pytest.param(check, plugin, id=case) for case, check, plugin in CASES]
)
def test_registered_plugin_passes_its_contract(check: Callable[[Any], None], plugin: Any) -> None:
    check(plugin)


def test_every_registry_is_covered() -> None:
    kinds = {case.split(":")[0] for case, _, _ in CASES}
    assert kinds == {
        "clusterer",
        "reducer",
        "selector",
        "feature source",
        "detector",
        "corruption",
        "mitigation",
        "attack",
    }
    names = {case for case, _, _ in CASES}
    assert {
        "clusterer:dbscan",
        "reducer:umap",
        "selector:closest",
        "feature source:backbone",
        "detector:knn",
        "detector:msp",
        "corruption:fog",
        "corruption:dropped_patches",
        "mitigation:augmix",
        "attack:pgd",
        "mitigation:adversarial",
        "detector:fusion",
        "detector:layers",
        "mitigation:jtt",
        "mitigation:generated",
        "mitigation:upsample-groups",
    } <= names
