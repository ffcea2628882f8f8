"""The HTML report: sections follow the run folder's files, data is escaped, nothing external."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dnnsafety.cli.report import command as report_command
from dnnsafety.exceptions import RunDirError
from dnnsafety.report import render_report
from report_runs import HOSTILE, _json, make_run


class _Tags(HTMLParser):
    """Collects the start tags of a page with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def _section_ids(page: str) -> set[str]:
    return {a["id"] or "" for t, a in _tags(page) if t == "section" and "id" in a}


@pytest.fixture(scope="module")
def full_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    run = make_run(tmp_path_factory.mktemp("full") / "run", full=True)
    return render_report(run).read_text(encoding="utf-8")


def test_minimal_run_has_summary_and_performance_only(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", full=False)
    path = render_report(run)
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    assert _section_ids(page) == {"summary", "performance"}
    assert "82.7%" in page and "57.3%" in page  # test accuracy, fog accuracy
    assert "tiny_cnn" in page and "95.25%" in page  # model, best val score
    assert ">44<" in page  # a confusion-matrix count
    assert "4.50 s" in page and "0.75 s" in page  # stage timings
    assert not list(run.glob(".*.tmp"))


def test_full_run_has_every_section_and_its_numbers(full_page: str) -> None:
    assert _section_ids(full_page) == {
        "summary",
        "performance",
        "clusters",
        "layers",
        "map",
        "retraining",
    }
    tags = _tags(full_page)
    cards = [a for t, a in tags if t == "article" and "cluster" in (a.get("class") or "")]
    assert [a["id"] for a in cards] == ["cluster-0", "cluster-1"]
    assert "46.2%" in full_page  # 12 of 26 errors
    assert "3 errors left as noise" in full_page
    assert "fog high" in full_page  # distinctive parameter chip
    # the cluster's metadata rule, and worst-scenario accuracy in the retraining table
    assert "fog &gt; 0.62 and brightness &lt;= 0.4: precision 0.91, recall 0.84" in full_page
    assert "worst scenario" in full_page and "73.5%" in full_page  # 0.8456 - 0.1111
    # two embedded representatives; the one outside the run folder is refused
    reps = [a for t, a in tags if t == "img" and (a.get("alt") or "").startswith(("medoid", "far"))]
    assert len(reps) == 2
    assert all(
        (a.get("src") or "").startswith("data:image/png;base64,")
        for t, a in tags
        if t == "img" and "src" in a
    )
    assert sum(1 for t, _ in tags if t == "circle") == 10
    assert "91.2%" in full_page and "[89.2%–93.2%]" in full_page
    assert "0.91" in full_page and "p=0.004" in full_page
    # best value of a column marked: most accurate, fewest labels
    assert re.search(r'<td class="num best"[^>]*>91\.2%', full_page)
    assert re.search(r'<td class="num best"[^>]*>50<', full_page)
    assert not re.search(r'<td class="num best"[^>]*>86\.1%', full_page)
    assert "selected" in full_page and "0.276" in full_page  # layer table


def test_no_external_resources(full_page: str) -> None:
    assert "http://" not in full_page and "https://" not in full_page
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', full_page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), refs
    assert "@import" not in full_page


def test_hostile_strings_are_escaped(full_page: str) -> None:
    assert "<script>alert(1)" not in full_page
    assert "<img src=x" not in full_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x" in full_page
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in full_page  # map JSON
    tags = _tags(full_page)
    assert [a.get("type") for t, a in tags if t == "script"] == ["application/json", None]
    assert not [a for t, a in tags if t == "img" and a.get("src") == "x"]
    assert not [a for _, a in tags if any(k.startswith("on") for k in a)]


def test_broken_optional_files_do_not_stop_the_report(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", full=True)
    (run / "comparison.json").write_text("{not json", encoding="utf-8")
    _json(run / "analysis/map.json", {"points": "nope"})
    data = json.loads((run / "clusters.json").read_text())
    data["clusters"] = [{"id": "x", "size": "big", "metadata": [], "true_labels": 3}, 7]
    _json(run / "clusters.json", data)
    (run / "analysis/thumbs.png").write_text("not a png")
    page = render_report(run).read_text(encoding="utf-8")
    assert _section_ids(page) == {"summary", "performance", "clusters", "layers"}
    assert 'id="cluster-x"' in page


def test_not_a_run_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"metrics\.json and samples\.parquet missing"):
        render_report(tmp_path)
    with pytest.raises(RunDirError, match="does not exist"):
        render_report(tmp_path / "nope")


def test_cli_prints_the_report_path(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", full=False)
    result = CliRunner().invoke(report_command, [str(run)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(run / "report.html")
    out = tmp_path / "elsewhere.html"
    result = CliRunner().invoke(report_command, [str(run), "--output", str(out)])
    assert result.exit_code == 0 and out.is_file()


def test_cli_is_registered_and_errors_are_one_line(tmp_path: Path, capsys) -> None:
    from dnnsafety.cli.main import main

    run = make_run(tmp_path / "run", full=False)
    assert main(["--quiet", "report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def _one_seed(run: Path) -> None:
    """Keep only the first run of every strategy, as `compare --seeds 1` writes it."""
    path = run / "comparison.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["seeds"] = [0]
    for strategy in data["strategies"].values():
        strategy["runs"] = strategy["runs"][:1]
        for entry in strategy["summary"].values():
            for value in entry.values() if "mean" not in entry else [entry]:
                value["low"] = value["high"] = None
        strategy["versus"] = {
            o: {"a12": 1.0, "p_value": 1.0, "metric": "rare"} for o in strategy["versus"]
        }
    _json(path, data)


def test_one_seed_shows_no_statistics(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", full=True)
    _one_seed(run)
    page = render_report(run).read_text(encoding="utf-8")
    assert "91.2%" in page  # the single run's accuracy is still shown
    assert "Pairwise effect sizes" not in page and "p=1.000" not in page
    assert not re.search(r'class="[^"]*\bbest\b', page)  # no ★ from a single run
    assert "★ marks" not in page
    assert "retrained once" in page
    assert "need at least 2 runs per strategy and are not shown" in page


def test_several_seeds_show_statistics(full_page: str) -> None:
    assert "Pairwise effect sizes" in full_page and "★ marks the best value" in full_page
    assert "need at least" not in full_page


def test_cluster_card_shows_the_most_common_pair(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", full=True)
    path = run / "clusters.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    # true labels mostly stop, predictions mostly yield, but no member is stop -> yield
    data["clusters"][1]["true_labels"] = {"stop": 2, "yield": 1, HOSTILE: 1}
    data["clusters"][1]["predicted_labels"] = {"yield": 2, "stop": 1, HOSTILE: 1}
    data["clusters"][1]["confusions"] = [
        {"true": "stop", "predicted": HOSTILE, "count": 2, "share": 0.5},
        {"true": "yield", "predicted": "stop", "count": 1, "share": 0.25},
        {"true": HOSTILE, "predicted": "yield", "count": 1, "share": 0.25},
    ]
    _json(path, data)
    page = render_report(run).read_text(encoding="utf-8")
    card = page[page.index('id="cluster-1"') :]
    card = card[: card.index("</article>")]
    assert "<dt>most common error</dt><dd><b>stop → &lt;script&gt;" in card
    assert "(2/4, 50%)" in card
    assert "stop → yield" not in card


def test_sections_are_registered_in_page_order() -> None:
    from dnnsafety.report.sections import registered

    names = [s.name for s in registered()]
    assert names == [
        "summary",
        "performance",
        "clusters",
        "agreement",
        "layers",
        "map",
        "detection",
        "bias",
        "adversarial",
        "retraining",
        "retrained",
        "robustness",
    ]


def test_a_registered_section_is_added_without_touching_the_others(tmp_path: Path) -> None:
    from dnnsafety.report import render
    from dnnsafety.report.sections import SECTIONS, register_section

    template = tmp_path / "extra.html.j2"
    template.write_text(
        '{% extends "section.html.j2" %}{% block lead %}Lead: {{ note }}{% endblock %}'
        "{% block body %}<p>{{ note }}</p>{% endblock %}",
        encoding="utf-8",
    )
    env = render.environment()
    loader = env.loader
    import jinja2

    env.loader = jinja2.ChoiceLoader([loader, jinja2.FileSystemLoader(tmp_path)])  # type: ignore[list-item]
    try:
        register_section("extra", "Extra stage", order=35, template="extra.html.j2")(
            lambda run: {"note": HOSTILE}
        )
        with pytest.raises(ValueError, match="registered twice"):
            register_section("extra", "Again", order=1)(lambda run: None)
        page = render_report(make_run(tmp_path / "run", full=True)).read_text(encoding="utf-8")
    finally:
        SECTIONS.pop("extra", None)
        env.loader = loader
    ids = [a["id"] for t, a in _tags(page) if t == "section"]
    assert ids == ["summary", "performance", "clusters", "extra", "layers", "map", "retraining"]
    assert '<a href="#extra">Extra stage</a>' in page
    assert "<p>&lt;script&gt;alert(1)" in page and "Lead: &lt;script&gt;" in page


def test_a_failing_section_is_replaced_by_a_warning(tmp_path: Path) -> None:
    from dnnsafety.report.sections import SECTIONS, register_section

    def broken(run: Any) -> dict[str, Any]:
        raise KeyError(HOSTILE)

    register_section("broken", "Broken stage", order=99, template="error.html.j2")(broken)
    try:
        page = render_report(make_run(tmp_path / "run", full=False)).read_text(encoding="utf-8")
    finally:
        SECTIONS.pop("broken", None)
    assert 'id="broken"' in page
    assert "could not be rendered from the run folder's files (KeyError: " in page
    assert "<script>alert(1)" not in page


def test_templates_and_static_files_ship_as_package_resources() -> None:
    import tomllib
    from importlib import resources

    root = resources.files("dnnsafety.report")
    for name in ("page.html.j2", "section.html.j2", "macros.html.j2", "error.html.j2"):
        assert root.joinpath("templates", name).is_file()
    for name in ("report.css", "report.js"):
        assert root.joinpath("static", name).is_file()
    project = Path(__file__).resolve().parents[3] / "pyproject.toml"
    data = tomllib.loads(project.read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert {"templates/*.j2", "templates/sections/*.j2", "static/*"} <= set(
        data["package-data"]["dnnsafety.report"]
    )


def test_no_ground_truth_scenarios_no_rare_column(tmp_path: Path, full_page: str) -> None:
    run = make_run(tmp_path / "run", full=True)
    path = run / "comparison.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["scenarios"] = ["unknown"]
    data["original"]["per_scenario"] = {"unknown": data["original"]["overall"]}
    data["original"]["rare"] = None
    for strategy in data["strategies"].values():
        summary = strategy["summary"]
        summary["per_scenario"] = {"unknown": summary["overall"]}
        summary["rare"] = {"mean": None, "low": None, "high": None}
    _json(path, data)
    page = render_report(run).read_text(encoding="utf-8")
    header = re.compile(r"<th[^>]*>\s*rare scenarios\s*</th>")
    assert header.search(full_page)  # with ground truth the column is there
    assert not header.search(page)
    assert not re.search(r"<th[^>]*>\s*unknown\s*</th>", page)
    assert re.search(r"<th[^>]*>\s*labels spent\s*</th>", page)  # the table is still there


def test_a_loaded_model_shows_no_training_settings(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", full=False)
    trained = render_report(run).read_text(encoding="utf-8")
    assert "<dt>lr</dt>" in trained  # trained here: its settings
    (run / "training.json").unlink()  # a user's model file: nothing was trained here
    page = render_report(run).read_text(encoding="utf-8")
    assert "<dt>lr</dt>" not in page and "<dt>epochs</dt>" not in page
    assert "outside dnnsafety" in page


def test_retrain_results_have_their_section(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", full=True)
    assert 'id="retrained"' not in render_report(run).read_text(encoding="utf-8")
    folder = run / "retrained" / "closest"
    folder.mkdir(parents=True)
    score = {"overall": 0.9275, "rare": 0.5, "per_scenario": {"nominal": 0.95, "fog": 0.5}}
    _json(
        folder / "result.json",
        {
            "strategy": "closest",
            "labels_file": "labels.csv",
            "labelled": 20,
            "original": {"overall": 0.9175, "rare": 0.4, "per_scenario": {"nominal": 0.9}},
            "runs": [{"seed": 0, **score, "improved": 6, "worsened": 2, "bag_size": 40}],
            "model_files": ["model.pt", "model.ts"],
        },
    )
    page = render_report(run).read_text(encoding="utf-8")
    assert 'id="retrained"' in page
    part = page[page.index('id="retrained"') :]
    part = part[: part.index("</section>")]
    for shown in ("closest", "91.8%", "92.8%", "40.0%", "50.0%", "model.ts"):
        assert shown in part, shown
    assert re.search(r">\s*6\s*<", part) and "6.0" not in part  # one run: whole counts
