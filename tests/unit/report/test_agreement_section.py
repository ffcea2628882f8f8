"""The report's side-by-side section: present with a second analysis, absent without."""

from __future__ import annotations

import json
import re

import pandas as pd
from PIL import Image

from dnnsafety.pipeline.analyze.alternative import AlternativeRun, write_agreement
from dnnsafety.pipeline.artifacts import Clusters, write_artifact
from dnnsafety.report.load import load_run
from dnnsafety.report.render import render_html
from dnnsafety.runs import RunDir

ERRORS = [f"test/{i}" for i in range(8)]


def _clusters(folder, groups, method, colour):
    records = []
    for cid, members in enumerate(groups):
        path = f"analysis/reps/{cid}.png"
        (folder / "analysis/reps").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), colour).save(folder / path)
        rep = {"role": "medoid", "id": members[0], "path": path}
        records.append({"id": cid, "size": len(members), "members": members,
                        "representative_images": [rep]})  # fmt: skip
    extra = {"features": "backbone", "reduce": "umap", "cluster": "guarded", "n_noise": 0}
    return Clusters(split="test", layer="", n_errors=len(ERRORS), clusters=records,
                    method=method, **(extra if method == "safe" else {}))  # fmt: skip


def _run(tmp_path):
    run = RunDir(tmp_path / "run")
    (run / "metrics.json").write_text(json.dumps({"class_names": ["a", "b"], "splits": {}}))
    run.write_samples(
        pd.DataFrame(
            {
                "sample_id": ERRORS,
                "split": "test",
                "label": 0,
                "pred": 1,
                "correct": False,
                "scenario": ["fog"] * 4 + ["night"] * 4,
            }
        )
    )
    write_artifact(run, _clusters(run.path, [ERRORS[:4], ERRORS[4:]], "safe", (200, 0, 0)))
    return run


def _section(html):
    found = re.search(r'<section class="part" id="agreement">.*?</section>', html, re.S)
    return found.group(0) if found else None


def test_one_analysis_no_section(tmp_path):
    run = _run(tmp_path)
    assert _section(render_html(load_run(run.path))) is None


def test_the_section_shows_both_analyses_their_agreement_and_matched_pairs(tmp_path):
    run = _run(tmp_path)
    alt = AlternativeRun(run, "hudd")
    groups = [ERRORS[4:], ERRORS[:2], ERRORS[2:4]]  # night whole, fog split in two
    write_artifact(alt, _clusters(alt.path, groups, "hudd", (0, 0, 200)))
    agreement = write_agreement(run, "hudd")
    section = _section(render_html(load_run(run.path)))
    assert section is not None and "Two analyses side by side" in section
    assert f"<b>{agreement.ari:.3g}</b>" in section
    text = re.sub(r"<[^>]+>", " ", section)
    # the run's own analysis first, then the second
    assert re.search(r"main\s+safe\s+2\s+8\s+0.*hudd\s+hudd\s+3\s+8\s+0", text, re.S)
    # per cause F1: night found whole by both (1), fog split by hudd (2/3)
    assert re.search(r"night\s+4\s+1\s+1\s+0\s+1", text)
    assert re.search(r"fog\s+4\s+0\s+1\s+1\s+0\.667", text)
    # two matched pairs, each with the images of both clusters; the heatmap
    assert section.count("data:image/png") == 2 * 2 + 1
    assert "#0" in text and "Jaccard" in text
