"""The import structure: which packages may import which, and no import cycles.

Imports are read from the source with ``ast`` (nothing is executed), including imports inside
functions: a deferred import still couples two modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "src" / "dnnsafety"

STAGE_PACKAGES = (
    "data",
    "sim",
    "models",
    "features",
    "clustering",
    "explain",
    "selection",
    "retraining",
    "evaluation",
    "failures",
    "robustness",
    "bias",
    "detection",
    "adversarial",
)
"""Packages of the pipeline's stages: they know nothing of run folders or the orchestrator."""

RUN_DIR_USERS = ("dnnsafety.pipeline", "dnnsafety.cli", "dnnsafety.report")
"""The only packages that handle run folders (``dnnsafety.runs.RunDir``)."""


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("dnnsafety"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if mod.startswith("dnnsafety"):
                out.add(mod)
    return out


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imp in _imports(path, top_level_only):
            # `from dnnsafety.x import y` may name a submodule y or an attribute of x
            while imp and imp not in modules:
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                targets.add(imp)
        graph[name] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # a package's __init__ re-exporting its own submodules is not a cycle
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_modules():
    cycle = _cycle(_graph(top_level_only=False))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # the simulator returns images and parameters; data/ builds Datasets from them
        ("dnnsafety.sim", "dnnsafety.data"),
        ("dnnsafety.sim", "dnnsafety.models"),
    ],
)
def test_package_does_not_import(package, forbidden):
    bad = _forbidden_imports(_graph(top_level_only=False), package, forbidden)
    assert not bad, "\n".join(bad)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _forbidden_imports(graph: dict[str, set[str]], package: str, forbidden: str) -> list[str]:
    """Every ``module -> dependency`` edge from ``package`` into ``forbidden``."""
    return sorted(
        f"{mod} -> {dep}"
        for mod, deps in graph.items()
        if _within(mod, package)
        for dep in deps
        if _within(dep, forbidden)
    )


@pytest.mark.parametrize("stage", STAGE_PACKAGES)
def test_stage_packages_never_import_the_orchestrator(stage):
    bad = _forbidden_imports(
        _graph(top_level_only=False), f"dnnsafety.{stage}", "dnnsafety.pipeline"
    )
    assert not bad, "stage code imports the orchestrator:\n" + "\n".join(bad)


def _uses_run_dir(source: str) -> bool:
    """Whether the code imports or names ``RunDir`` (``from dnnsafety.runs import RunDir``,
    ``runs.RunDir``, ``dnnsafety.RunDir``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and any(a.name == "RunDir" for a in node.names):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "RunDir":
            return True
        if isinstance(node, ast.Name) and node.id == "RunDir":
            return True
    return False


def _run_dir_outsiders(sources: dict[str, str]) -> list[str]:
    """Modules outside :data:`RUN_DIR_USERS` that use ``RunDir``; the package root (which
    re-exports it) and ``dnnsafety.runs`` (which defines it) are allowed."""
    allowed = ("dnnsafety", "dnnsafety.runs")
    return sorted(
        name
        for name, source in sources.items()
        if name not in allowed
        and not any(_within(name, pkg) for pkg in RUN_DIR_USERS)
        and _uses_run_dir(source)
    )


def test_only_the_orchestrator_cli_and_report_use_run_folders():
    sources = {_module_name(p): p.read_text() for p in ROOT.rglob("*.py")}
    assert "dnnsafety.pipeline.run" in sources
    bad = _run_dir_outsiders(sources)
    assert not bad, "RunDir used outside pipeline/, cli/ and report/: " + ", ".join(bad)


def test_the_checker_sees_a_planted_cycle_and_a_planted_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    imports = _imports(ROOT / "data" / "signs.py", top_level_only=True)
    assert "dnnsafety.sim" in imports


def test_selection_uses_the_shared_distance_engine_not_clustering():
    # selection and clustering share the chunked engine in dnnsafety.distances; one stage
    # package does not import another
    test_package_does_not_import("dnnsafety.selection", "dnnsafety.clustering")


MAX_MODULE_LINES = 500

# Modules still over MAX_MODULE_LINES, each waiting for its split along its own seams. This list
# may only shrink: the test fails when a listed module is gone or back under the limit.
OVERSIZED_MODULES: frozenset[str] = frozenset()  # exceptions may only be removed


def _module_lines() -> dict[str, int]:
    return {_module_name(p): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}


def test_no_module_is_over_the_line_limit():
    lines = _module_lines()
    too_long = sorted(
        f"{name}: {n} lines"
        for name, n in lines.items()
        if n > MAX_MODULE_LINES and name not in OVERSIZED_MODULES
    )
    assert not too_long, (
        f"modules over {MAX_MODULE_LINES} lines; split them along their own seams:\n"
        + "\n".join(too_long)
    )
    stale = sorted(name for name in OVERSIZED_MODULES if lines.get(name, 0) <= MAX_MODULE_LINES)
    assert not stale, "remove from OVERSIZED_MODULES (gone or short now): " + ", ".join(stale)


def test_the_checker_sees_a_planted_pipeline_import_and_a_planted_run_dir():
    graph = _graph(top_level_only=False)
    planted = {**graph, "dnnsafety.selection.planted": {"dnnsafety.pipeline.spaces"}}
    assert _forbidden_imports(planted, "dnnsafety.selection", "dnnsafety.pipeline") == [
        "dnnsafety.selection.planted -> dnnsafety.pipeline.spaces"
    ]
    # `dnnsafety.pipelines` is another package, not inside dnnsafety.pipeline
    assert not _forbidden_imports(
        {"dnnsafety.selection.x": {"dnnsafety.pipelines"}},
        "dnnsafety.selection",
        "dnnsafety.pipeline",
    )
    sources = {
        "dnnsafety.features.planted": "from dnnsafety.runs import RunDir\n",
        "dnnsafety.explain.planted": "import dnnsafety.runs as r\n\ndef f(x: r.RunDir): ...\n",
        "dnnsafety.features.store": "from dnnsafety.exceptions import RunDirError\n",
        "dnnsafety.pipeline.x": "from dnnsafety.runs import RunDir\n",
        "dnnsafety.report.load": "from dnnsafety.runs import RunDir\n",
        "dnnsafety": "from dnnsafety.runs import RunDir\n",
    }
    assert _run_dir_outsiders(sources) == [
        "dnnsafety.explain.planted",
        "dnnsafety.features.planted",
    ]
