"""The task studies (studies/epic.toml, charades.toml, kinetics_sounds.toml, table3.toml): their
files, their data check, and the tiny studies end to end through the runner and the report
(the same path as `nox -s study_epic -- --scale tiny --seeds 1`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsf.model.variants import ROWS
from avsf.study import run_study
from avsf.study.spec import StudyError, load_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def test_task_study_files():
    epic, ch = load_study(STUDIES / "epic.toml"), load_study(STUDIES / "charades.toml")
    ks, t3 = load_study(STUDIES / "kinetics_sounds.toml"), load_study(STUDIES / "table3.toml")
    assert epic.variant_names == ch.variant_names == ["slowfast", "avslowfast"]
    assert epic.paper_table == "2" and ch.paper_table == "4" and ks.paper_table == t3.paper_table == "3"
    assert (epic.metric, ch.metric) == ("top1", "mAP")
    assert epic.variant("avslowfast").paper == ROWS["table2/avslowfast-r101"].paper
    assert epic.variant("avslowfast").paper["top1_noun"] == 31.7
    assert ch.variant("slowfast").paper == {"mAP": 42.5, "gflops": 234.0}
    assert [ks.variant(v).paper["top1"] for v in ks.variant_names] == [80.5, 83.7, 82.7, 85.0]
    assert t3.paper_views == ch.paper_views == 30 and not epic.paper_views
    assert {c.metric for c in epic.claims} >= {"top1_noun_audio"} and {c.metric for c in ch.claims} >= {"mAP_audio"}
    for spec in (epic, ch, ks, t3):
        assert spec.hypothesis and spec.mechanism and spec.claims and spec.data_prepare
    for spec, synthetic in ((epic, "synth-epic"), (ch, "synth-charades")):
        for scale in ("tiny", "small"):
            cfgs = [spec.config_for(v, scale=scale) for v in spec.variants]
            assert {c.data.dataset for c in cfgs} == {synthetic}
            assert [c.model.pathways for c in cfgs] == ["slowfast", "avslowfast"]
        paper = spec.config_for("avslowfast", scale="paper")
        assert paper.model.depth == 101 and paper.data.dataset.startswith("data/")
    assert ch.config_for("slowfast", scale="tiny").eval.video_pool == "max"
    assert epic.config_for("slowfast", scale="paper").train.frozen_bn  # A.5: BN frozen when fine-tuning
    r101 = t3.config_for("avslowfast-r101", scale="paper")  # the rows' own configs at the paper scale
    assert (r101.model.depth, r101.model.num_frames, r101.model.tau) == (101, 8, 8)
    assert (ks.default_scale, t3.default_scale) == ("paper", "paper")
    assert ks.config_for("slowfast-r50").model.num_classes == 32


def test_a_study_on_unprepared_data_stops_before_anything_naming_what_to_prepare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data/kinetics-sounds does not exist here
    spec = load_study(STUDIES / "kinetics_sounds.toml")
    calls = []
    with pytest.raises(StudyError, match=r"kinetics_sounds.toml: data.dataset: 'data/kinetics-sounds' is neither a "
                                         r"built-in set .* prepare it first: avsf data prepare .*--kinetics-sounds"):
        run_study(spec, tmp_path / "runs" / "ks", train_fn=lambda *a, **k: calls.append(a), log=lambda m: None)
    assert calls == [] and not (tmp_path / "runs").exists()


def _run_and_report(tmp_path, monkeypatch, name: str):
    from avsf.report import write_report

    monkeypatch.setenv("AVSF_CACHE", str(tmp_path / "cache"))
    spec = load_study(STUDIES / f"{name}.toml")
    out = tmp_path / "runs" / name
    outcome = run_study(spec, out, scale="tiny", seeds=1, progress=False, log=lambda m: None)
    assert outcome.ok and len(outcome.done) == 2
    results = {v: json.loads((out / v / "seed0" / "result.json").read_text()) for v in spec.variant_names}
    write_report(out, tmp_path / "reports" / name)
    report = tmp_path / "reports" / name
    return results, (report / f"{name}.tex").read_text(), (report / "summary.md").read_text()


@pytest.mark.slow
def test_epic_tiny_study_end_to_end(tmp_path, monkeypatch):
    results, tex, md = _run_and_report(tmp_path, monkeypatch, "epic")
    for r in results.values():
        for key in ("top1", "top5", "top1_verb", "top5_verb", "top1_noun", "top5_noun", "top1_noun_audio",
                    "top1_noun_visual"):
            assert 0.0 <= r[key] <= 1.0, key
    assert "paper (EPIC-Kitchens validation)" in tex and "action top-1" in tex and "noun top-5" in tex
    assert "& 24.2 & 43.6 & 58.7 & 83.6 & 31.7 & 58.4 \\\\" in tex  # the paper's AVSlowFast row, all six numbers
    assert "\\resizebox{\\linewidth}" in tex
    # every claim is judged from the predictions (none "not measured"), the heard nouns' one included
    claims = md.split("## The paper's claims, tested")[1].split("##")[0]
    assert "noun top-1, heard nouns" in claims and "not measured" not in claims


@pytest.mark.slow
def test_charades_tiny_study_end_to_end(tmp_path, monkeypatch):
    results, tex, md = _run_and_report(tmp_path, monkeypatch, "charades")
    for r in results.values():
        assert {"mAP", "mAP_visual", "mAP_audio"} <= set(r) and 0.0 <= r["mAP_audio"] <= 1.0
    config = json.loads((tmp_path / "runs/charades/avslowfast/seed0/config.json").read_text())
    assert config["eval"]["video_pool"] == "max" and config["eval"]["temporal_views"] == 3
    assert "GFLOPs $\\times$ views" in tex and "278 $\\times$ 30" in tex and "$\\times$ 3 &" in tex
    assert "paper (Charades)" in tex
    claims = md.split("## The paper's claims, tested")[1].split("##")[0]
    assert "mAP audio" in claims and "not measured" not in claims
    assert "Per-class test AP of" in md
