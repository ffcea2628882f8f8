"""The environment the tests run in is the one constraints.txt records.

A fresh clone must install what CI tested: scripts/setup.sh installs with ``-c constraints.txt``.
If this test fails, the venv was built another way (or constraints.txt was edited without
re-running setup): run ``make test`` again, or ``make lock`` to refresh the file on purpose.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)")


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def test_constraints_pin_the_packages_results_depend_on():
    pins = {k.lower().replace("_", "-") for k in _pins()}
    for name in ("numpy", "scipy", "scikit-learn", "pandas", "pillow", "torch", "umap-learn"):
        assert name in pins, f"constraints.txt does not pin {name}"


@pytest.mark.parametrize("name", ["numpy", "scipy", "scikit-learn", "pandas", "pillow", "torch"])
def test_installed_versions_match_constraints(name):
    pins = {k.lower().replace("_", "-"): v for k, v in _pins().items()}
    installed = metadata.version(name)
    # local version labels (+cpu, +cu130) name the build, not the release
    assert installed.split("+")[0] == pins[name].split("+")[0], (
        f"{name} {installed} is installed but constraints.txt pins {pins[name]}; "
        "re-run `make test` (setup installs the pinned versions) or `make lock`."
    )
