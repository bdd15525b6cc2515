"""`avsf report`: LaTeX (booktabs) + CSV + figures + summary.md, from run folders alone."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _report_fakes import PredictingTrainer  # noqa: E402
from test_study_runner import FakeTrainer, make_spec  # noqa: E402

from avsf.report import write_report, write_report_of  # noqa: E402
from avsf.report.data import gather  # noqa: E402
from avsf.report.tables import tex_escape  # noqa: E402
from avsf.study import load_study, run_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = [
    {"text": "high Pd beats no DropPathway", "better": "pd0.8", "worse": "pd0"},
    {"text": "no DropPathway beats high Pd", "better": "pd0", "worse": "pd0.8"},
    {"text": "high Pd helps top-5 too", "better": "pd0.8", "worse": "pd0.5", "metric": "top5"},
    {"text": "high Pd helps validation", "better": "pd0.8", "worse": "pd0.5", "metric": "val_top1"},
]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    trainer = PredictingTrainer(unconverged=("pd0.8/seed1",), commits={"pd0/seed1": "fedcba9876543"},
                                dirty=("pd0.5/seed0",))
    spec = make_spec(  # contract 7's study-file fields, through study.json
        hypothesis="Dropping the audio pathway's lateral input lets the visual pathway learn.",
        mechanism="Audio is learned first and,\n if always present, starves the visual pathway.", claim=CLAIMS)
    run_study(spec, root / "pdtest", train_fn=trainer, log=lambda m: None)
    return root / "pdtest"


@pytest.fixture(scope="module")
def report(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "pdtest"
    files = write_report(study, out)
    return out, files


def test_writes_every_artefact(report):
    out, files = report
    for name in ("pdtest.tex", "pdtest_standalone.tex", "pdtest.csv", "runs.csv", "stats.csv", "summary.md"):
        assert (out / name).exists(), name
    stems = ["metric", "learning_curves", "per_class_gain", "confusion_pd0", "confusion_pd0.5", "confusion_pd0.8"]
    for stem in stems:
        for ext in ("png", "pdf"):
            p = out / f"{stem}.{ext}"
            assert p.exists() and p.stat().st_size > 1000, p
    # every variant costs the same GFLOPs here: an accuracy-vs-GFLOPs figure would say nothing
    assert not (out / "acc_vs_gflops.png").exists()
    assert (out / "metric.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "metric.pdf").read_bytes()[:5] == b"%PDF-"
    assert set(files) >= {out / "summary.md", out / "pdtest.tex", out / "stats.csv"}


def test_csv_numbers_come_from_the_runs(report, study):
    out, _ = report
    rows = {r["variant"]: r for r in csv.DictReader(open(out / "pdtest.csv"))}
    assert list(rows) == ["pd0", "pd0.5", "pd0.8"]
    for v in rows:
        tops = [json.loads((study / v / f"seed{s}" / "result.json").read_text())["top1"] * 100 for s in (0, 1)]
        mean = sum(tops) / 2
        std = abs(tops[0] - tops[1]) / 2**0.5
        assert float(rows[v]["top1_mean"]) == pytest.approx(mean, abs=1e-4)
        assert float(rows[v]["top1_std"]) == pytest.approx(std, abs=1e-4)
        assert rows[v]["n_seeds"] == "2"
    assert rows["pd0.8"]["paper_top1"] == "77.0" and rows["pd0"]["paper_top5"] == "91.8"
    assert float(rows["pd0.8"]["gflops_mean"]) > 0
    per_run = list(csv.DictReader(open(out / "runs.csv")))
    assert len(per_run) == 6
    conv = {(r["variant"], r["seed"]): r["converged"] for r in per_run}
    assert conv[("pd0.8", "1")] == "0" and conv[("pd0", "0")] == "1"
    assert {r["git_commit"] for r in per_run} == {"abc1234def5678", "fedcba9876543"}
    assert all(r["stopped_epoch"] == "3" for r in per_run)


def test_latex_table_is_booktabs_and_like_the_paper(report):
    out, _ = report
    tex = (out / "pdtest.tex").read_text()
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "\\cmidrule", "$P_d$", "paper (Kinetics-400)"):
        assert token in tex
    assert "\\hline" not in tex
    body = tex[tex.index("\\midrule") : tex.index("\\bottomrule")]
    labels = [line.split(" & ")[0] for line in body.splitlines()[1:] if "&" in line]
    assert labels == ["-", "0.5", "0.8"]  # the paper's row labels, in the study's order
    assert "\\textbf{" in body.splitlines()[3]  # the best of ours (Pd 0.8) in bold
    assert "77.0" in body and "75.2" in body
    assert "95\\% CI" in tex and body.splitlines()[1].count("[") == 1  # the bootstrap interval column
    # the caption sits above the table with a gap, not on the top rule
    assert tex.index("\\setlength{\\belowcaptionskip}") < tex.index("\\caption") < tex.index("\\toprule")
    assert "% Produced by avsf" in tex


def test_summary_names_the_winner_with_intervals_and_tests(report):
    out, _ = report
    md = (out / "summary.md").read_text()
    assert "**Pd = 0.8** ranks first" in md and "95 % interval" in md
    assert "runner-up **Pd = 0.5**" in md
    assert "Against the baseline **Pd = -**" in md and "smallest detectable difference" in md
    assert "P_d" not in md and "$" not in md  # math in plain form, as the paper writes it
    assert "![top-1 per variant](metric.png)" in md
    for stem in ("learning_curves", "per_class_gain", "confusion_pd0.8"):
        assert f"({stem}.png)" in md
    assert "first variant Pd = -" in md  # no visual-only run: the caption says which baseline
    assert "ours agrees" in md
    assert "**Hypothesis.** Dropping the audio" in md and "**Mechanism.** Audio is learned first" in md


def test_summary_statistics_table_per_variant(report, study):
    out, _ = report
    md = (out / "summary.md").read_text()
    section = md[md.index("## Against the baseline (Pd = -)"):]
    table = section[section.index("| Pd"):section.index("\n\n", section.index("| Pd"))].splitlines()
    assert table[0].startswith("| Pd | top-1 (%) [95 % CI] | Δ vs baseline (points) [95 % CI] | p | p (Holm) | MDD")
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table[2:]}
    assert rows["- (baseline)"][2] == "–"  # no difference of the baseline with itself
    assert rows["0.8"][7].strip(" |") == "1/2"  # one of its two runs converged
    stats = {(r["variant"], r["key"]): r for r in csv.DictReader(open(out / "stats.csv"))}
    s = stats[("pd0.8", "top1")]
    mean = sum(json.loads((study / "pd0.8" / f"seed{k}" / "result.json").read_text())["top1"] for k in (0, 1)) / 2
    assert float(s["estimate"]) == pytest.approx(100 * mean, abs=1e-3)
    assert float(s["low"]) < float(s["estimate"]) < float(s["high"])
    assert float(s["p"]) < 0.01 and float(s["mdd"]) > 0 and s["n_clips"] == "240" and s["n_seeds"] == "2"
    assert ("pd0.5", "top1_sync") in stats and "With 2 seeds" in md and "cannot go below p = 0.5" in md
    assert "### Per class group" in md


def test_claims_are_judged_and_unconverged_runs_marked(report):
    out, _ = report
    md = (out / "summary.md").read_text()
    section = md[md.index("## The paper's claims, tested"):]
    lines = [line for line in section.splitlines() if line.startswith("- *")]
    assert lines[0].startswith("- *high Pd beats no DropPathway* (Pd = 0.8 vs Pd = -): **supported**")
    assert lines[1].startswith("- *no DropPathway beats high Pd* (Pd = - vs Pd = 0.8): **contradicted**")
    # every variant has all clips in its top 5: no difference to detect
    assert lines[2].startswith("- *high Pd helps top-5 too* (Pd = 0.8 vs Pd = 0.5, top-5): **undecided** at this "
                               "power: +0.0 [+0.0, +0.0] points, p = 1.00")
    assert lines[3].startswith("- *high Pd helps validation* (Pd = 0.8 vs Pd = 0.5, val top-1): **not measured** "
                               "('val_top1' is not a per-clip test metric")
    assert "**Drawn from unconverged runs** (pd0.8 seed1)" in lines[0]
    assert "Not converged: pd0.8 seed1 (stopped at epoch 3)" in md


def test_provenance_is_recorded_and_mixed_commits_warned(report):
    out, _ = report
    md = (out / "summary.md").read_text()
    section = md[md.index("## Provenance"):]
    assert "This report: avsf 0.1.0 at commit" in section
    assert "5 runs at commit abc1234def" in section and "1 run at commit fedcba9876" in section
    assert "**Warning:** the runs came from 2 different commits" in section
    assert "uncommitted changes (pd0.5 seed0)" in section
    assert ("Time: the runs spanned 1.0 min of wall time" in section
            and "6.0 min of training + testing summed over runs, on test." in section)


def test_report_regenerates_identically_from_runs_alone(study, report, tmp_path):
    out, _ = report
    again = tmp_path / "again"
    write_report(study, again)
    for name in ("pdtest.tex", "pdtest.csv", "runs.csv", "stats.csv", "summary.md"):
        a = (out / name).read_text().replace(str(out), "")
        b = (again / name).read_text().replace(str(again), "")
        assert a == b, name
    for name in ("metric.png", "metric.pdf", "per_class_gain.pdf"):  # seeded bootstrap, no timestamps
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_partial_study_reports_what_is_done(tmp_path):
    spec = make_spec()
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "s", train_fn=FakeTrainer(interrupt_after_epochs=7), log=lambda m: None)
    write_report(tmp_path / "s", tmp_path / "r")
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "## Not finished" in md and "pd0.5 seed0: partial" in md
    # runs of an older avsf: no predictions.json, so no intervals, and it says so
    assert "**Pd = -** has the highest mean top-1" in md and "No run has predictions.json" in md
    assert "did not record whether they converged" in md and "recorded no provenance" in md


def test_visual_only_baseline_is_used_for_the_gain(tmp_path):
    spec = load_study(ROOT / "studies" / "audio_only.toml")
    run_study(spec, tmp_path / "audio_only", scale="tiny", train_fn=FakeTrainer(), log=lambda m: None)
    write_report(tmp_path / "audio_only", tmp_path / "r")
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "AVSlowFast (the best audiovisual variant) minus the visual-only SlowFast" in md
    assert "Table A.3" in md


def test_search_folder_is_dispatched(tmp_path, monkeypatch):
    import types

    calls = []
    fake = types.ModuleType("avsf.report.search")
    fake.write_search_report = lambda run_dir, out_dir: calls.append((run_dir, out_dir)) or []
    monkeypatch.setitem(sys.modules, "avsf.report.search", fake)
    (tmp_path / "search_x").mkdir()
    (tmp_path / "search_x" / "search.json").write_text("{}")
    write_report(tmp_path / "search_x", tmp_path / "out")
    assert calls == [(tmp_path / "search_x", tmp_path / "out")]


def test_cli_default_out_and_all(study, tmp_path, monkeypatch, capsys):
    from avsf.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    shutil.copytree(study, tmp_path / "runs" / "pdtest")
    assert main(["report", "--all"]) == 0  # every study under runs/, each into reports/<NAME>
    assert (tmp_path / "reports" / "pdtest" / "pdtest.tex").exists()
    assert main(["report", "runs/nothing"]) == 1


def test_tex_escape():
    assert tex_escape("A→F→S") == "A$\\rightarrow\\!$F$\\rightarrow$S".replace("\\!", "")
    assert tex_escape("res3_4 & 50%") == "res3\\_4 \\& 50\\%"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (apt install texlive-latex-recommended)")
def test_generated_latex_compiles(report, tmp_path):
    out, _ = report
    for name in ("pdtest.tex", "pdtest_standalone.tex"):
        shutil.copy(out / name, tmp_path / name)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "pdtest_standalone.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "pdtest_standalone.pdf").exists()


def test_a_broken_predictions_file_is_named_before_anything_is_written(study, tmp_path, capsys):
    from avsf.report.predictions import ReportError

    broken = tmp_path / "pdtest"
    shutil.copytree(study, broken)
    path = broken / "pd0.5" / "seed1" / "predictions.json"
    obj = json.loads(path.read_text())
    obj["label"][3] = 17  # 6 score columns: classes 0..5
    path.write_text(json.dumps(obj))
    with pytest.raises(ReportError, match=r"pd0.5/seed1/predictions.json: key 'label' row 3 is 17; allowed are 0..5"):
        write_report(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    obj["label"][3] = 1
    obj["scores"] = obj["scores"][:-1]
    path.write_text(json.dumps(obj))
    with pytest.raises(ReportError, match="key 'scores' has 239 rows; 'index' has 240"):
        write_report(broken, tmp_path / "out")
    path.write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        write_report(broken, tmp_path / "out")
    from avsf.cli import main

    assert main(["report", str(broken), "--out", str(tmp_path / "out")]) == 2  # a message, not a traceback
    assert "pd0.5/seed1/predictions.json: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_figures_module_chooses_no_matplotlib_backend():
    code = ("import os, sys; import avsf.report.figures, avsf.report.search; "
            "assert 'MPLBACKEND' not in os.environ, 'MPLBACKEND set'; "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    env = {k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _rewrite_predictions(study_dir: Path, make) -> None:
    """Replace every run's predictions.json and result numbers with `make(variant, seed)`."""
    for pred in study_dir.glob("*/seed*/predictions.json"):
        obj, numbers = make(pred.parent.parent.name, int(pred.parent.name[4:]))
        pred.write_text(json.dumps(obj))
        result = json.loads((pred.parent / "result.json").read_text())
        result = {k: v for k, v in result.items() if not k.startswith("top1_")}
        result.update(numbers)
        (pred.parent / "result.json").write_text(json.dumps(result))


def test_epic_verb_noun_study_reports_action_verb_and_noun(tmp_path):
    import numpy as np

    from _report_fakes import clip_scores

    run_study(make_spec(), tmp_path / "epic", train_fn=PredictingTrainer(), log=lambda m: None)
    verb, noun = np.arange(120) % 4, np.arange(120) % 6

    def make(variant, seed):
        rng = np.random.default_rng(seed)
        skill = {"pd0": 0.5, "pd0.5": 0.7, "pd0.8": 0.9}[variant]
        vs = clip_scores(verb, rng.random(120) < skill, 4)
        ns = clip_scores(noun, rng.random(120) < skill, 6)
        obj = {"split": "test", "classes": [], "index": list(range(120)), "verb": verb.tolist(),
               "noun": noun.tolist(), "verb_scores": vs.tolist(), "noun_scores": ns.tolist()}
        nums = {"top1_verb": float((vs.argmax(1) == verb).mean()), "top1_noun": float((ns.argmax(1) == noun).mean())}
        nums["top1"] = float(((vs.argmax(1) == verb) & (ns.argmax(1) == noun)).mean())
        return obj, nums

    _rewrite_predictions(tmp_path / "epic", make)
    write_report(tmp_path / "epic", tmp_path / "r")
    stats = {(r["variant"], r["key"]): r for r in csv.DictReader(open(tmp_path / "r" / "stats.csv"))}
    assert {k for _, k in stats} == {"top1", "top1_verb", "top1_noun"}
    res = json.loads((tmp_path / "epic" / "pd0.8" / "seed0" / "result.json").read_text())
    mean_action = (res["top1"] + json.loads((tmp_path / "epic" / "pd0.8" / "seed1" / "result.json").read_text())["top1"]) / 2
    assert float(stats[("pd0.8", "top1")]["estimate"]) == pytest.approx(100 * mean_action, abs=1e-3)
    assert float(stats[("pd0.8", "top1_verb")]["p"]) < 0.01
    assert not list((tmp_path / "r").glob("confusion_*"))  # verb-noun: no single confusion matrix


def test_multilabel_study_reports_map_with_intervals(tmp_path):
    import numpy as np

    spec = make_spec(metric="mAP")
    run_study(spec, tmp_path / "cha", train_fn=PredictingTrainer(), log=lambda m: None)
    targets = (np.random.default_rng(0).random((150, 5)) < 0.3).astype(float)

    def make(variant, seed):
        noise = {"pd0": 1.5, "pd0.5": 0.8, "pd0.8": 0.4}[variant]
        scores = 1 / (1 + np.exp(-(targets * 2 - 1 + np.random.default_rng(seed).normal(0, noise, targets.shape))))
        import torch

        from avsf.eval.metrics import mean_average_precision

        m = mean_average_precision(torch.tensor(scores), torch.tensor(targets))
        return ({"split": "test", "classes": [f"c{i}" for i in range(5)], "index": list(range(150)),
                 "label": targets.astype(int).tolist(), "scores": np.round(scores, 5).tolist()}, {"mAP": m})

    _rewrite_predictions(tmp_path / "cha", make)
    write_report(tmp_path / "cha", tmp_path / "r")
    stats = {(r["variant"], r["key"]): r for r in csv.DictReader(open(tmp_path / "r" / "stats.csv"))}
    assert ("pd0.8", "mAP") in stats and float(stats[("pd0.8", "mAP")]["diff"]) > 0
    assert float(stats[("pd0.8", "mAP")]["p"]) < 0.01
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "**Pd = 0.8** ranks first with mAP" in md


def test_tex_escape_keeps_unicode_as_latex():
    assert tex_escape("α = 0.05, n ≥ 3") == "$\\alpha$ = 0.05, n $\\geq$ 3"
    assert tex_escape("naïve café") == 'na\\"{\\i}ve caf\\\'{e}'
    assert tex_escape("β_A → FS") == "$\\beta$\\_A $\\rightarrow$ FS"
    assert tex_escape("$αβ") == "\\$$\\alpha\\beta$"  # adjacent math merges, an escaped dollar stays text
    assert "?" not in tex_escape("Γ ς ½ ﬁ 中")
    assert tex_escape("中") == "\\texttt{[U+4E2D]}"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (apt install texlive-latex-recommended)")
def test_unicode_in_a_study_compiles(study, tmp_path):
    data = gather(study)
    data.spec.title = "Naïve α-test: β_A ≥ ½ → “quoted” —"
    data.spec.notes = "Pd ∈ {0, 0.5}; 50% & #1 ~ $5; 中"
    out = tmp_path / "r"
    write_report_of(data, out)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "pdtest_standalone.tex"],
                          cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_the_summary_names_the_variants_above_chance_in_each_class_group(report):
    out, _ = report
    md = (out / "summary.md").read_text()
    lines = {line.split(" (")[0][2:]: line for line in md.splitlines()
             if line.startswith("- ") and "classes, chance" in line}
    assert set(lines) == {"visual", "audio", "sync"}  # the fake study's groups, 2 classes each
    assert "chance 50 %" in lines["sync"]
    # the fake's sync accuracy grows with Pd (about 60 % at Pd 0, 82 % at 0.8): only the high ones are surely above 50
    assert "above chance: Pd = 0.5 (" in lines["sync"] and "Pd = 0.8 (" in lines["sync"]
    assert "Pd = - (" not in lines["sync"]


def test_a_variant_that_scores_every_clip_as_the_baseline_is_named_not_read_as_power(study, report, tmp_path):
    copy = tmp_path / "same"
    shutil.copytree(study, copy)
    for pred in (copy / "pd0.5").glob("seed*/predictions.json"):
        shutil.copy(copy / "pd0" / pred.parent.name / "predictions.json", pred)
    write_report(copy, tmp_path / "r")
    md = (tmp_path / "r" / "summary.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("Scored every test clip exactly as the baseline"))
    assert "Pd = 0.5" in line and "Pd = 0.8" not in line
    assert "Scored every test clip exactly" not in (report[0] / "summary.md").read_text()  # the original has none


def test_the_power_section_says_what_more_seeds_or_clips_would_detect(report):
    out, _ = report
    md = (out / "summary.md").read_text()
    section = md[md.index("### Power: what more seeds or test clips would detect"):]
    table = section[section.index("| comparison"):section.index("\n\n", section.index("| comparison"))].splitlines()
    assert table[0].startswith("| comparison | test clips | MDD now (points) | seed-to-seed SD (points) |")
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ") for line in table[2:]}
    # each variant against the baseline (not the baseline itself); the claim "Pd = - beats Pd = 0.8" is the
    # same comparison as the Pd = 0.8 row; top-5 is 1 everywhere (identical: no power to project), and
    # val_top1 has no per-clip values
    assert set(rows) == {"Pd = 0.5", "Pd = 0.8"}
    stats = {(r["variant"], r["key"]): r for r in csv.DictReader(open(out / "stats.csv"))}
    for name, variant in (("Pd = 0.5", "pd0.5"), ("Pd = 0.8", "pd0.8")):
        assert rows[name][1] == "240" and rows[name][2] == f"{float(stats[(variant, 'top1')]['mdd']):.1f}"
        assert rows[name][5] in ("seeds", "test clips")
    assert "estimated from 1 degree of freedom" in section
    # one plan for all variants, at the spreads' point estimates and at their upper bounds (2 seeds: far apart)
    plan = section[section.index("For every variant against the baseline at once"):].split("\n", 1)[0]
    assert "seeds and" in plan and "at the seed spreads' point estimates" in plan and "at their upper bounds" in plan


def test_the_joint_plan_grows_the_test_split_only_where_it_can():
    import numpy as np

    from avsf import stats as st
    from avsf.report.summary import MDD_TARGET, _joint_plan

    rng = np.random.default_rng(5)
    clip_limited = st.components(rng.normal(0, 0.7, (3, 300)))  # no seed spread: more clips are the lever
    seeds, clips = _joint_plan([clip_limited], 300)  # the built-in benchmark: up to 4x the test clips
    assert clips > 300 and clip_limited.mdd(seeds, clips) <= MDD_TARGET
    fixed = _joint_plan([clip_limited], 300, most_clips_factor=1)  # a dataset's own test split: seeds only
    assert fixed[1] == 300 and fixed[0] > seeds and clip_limited.mdd(fixed[0], 300) <= MDD_TARGET


def test_the_power_section_says_which_class_group_carries_the_seed_spread(report, tmp_path):
    import statistics

    two = (report[0] / "summary.md").read_text()
    assert "Where each variant's seed-to-seed spread" not in two
    assert "not split by class group here: 2 seeds give a variance of 1 degree of freedom" in two
    spec = make_spec(scale={"tiny": {"seeds": 5, "set": {"train.epochs": 3}}})
    run_study(spec, tmp_path / "five", train_fn=PredictingTrainer(), log=lambda m: None)
    write_report(tmp_path / "five", tmp_path / "r")
    md = (tmp_path / "r" / "summary.md").read_text()
    start = md.index("| comparison | SD of the per-seed differences (points) | visual | audio | sync |")
    table = md[start:md.index("\n\n", start)].splitlines()[2:]
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ") for line in table}
    assert set(rows) == {"Pd = 0.5", "Pd = 0.8"}
    for label, variant in (("Pd = 0.5", "pd0.5"), ("Pd = 0.8", "pd0.8")):
        top1 = {v: [json.loads((tmp_path / "five" / v / f"seed{s}" / "result.json").read_text())["top1"]
                    for s in range(5)] for v in (variant, "pd0")}
        diffs = [100 * (a - b) for a, b in zip(top1[variant], top1["pd0"])]
        assert float(rows[label][1]) == pytest.approx(statistics.stdev(diffs), abs=0.051)
        cells = [x.rstrip(" %)").split(" (") for x in rows[label][2:]]  # "1.2 (34 %)"
        assert sum(float(share) for _, share in cells) == pytest.approx(100, abs=2)  # each rounded to a whole percent
        assert max(float(sd) for sd, _ in cells) <= float(rows[label][1]) * len(cells)
    assert "Largest part: Pd = 0.5: " in md
