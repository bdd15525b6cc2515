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
from test_study_runner import FakeTrainer, make_spec  # noqa: E402

from avsf.report import write_report  # noqa: E402
from avsf.report.tables import tex_escape  # noqa: E402
from avsf.study import load_study, run_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run_study(make_spec(), root / "pdtest", train_fn=FakeTrainer(), log=lambda m: None)
    return root / "pdtest"


@pytest.fixture(scope="module")
def report(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "pdtest"
    files = write_report(study, out)
    return out, files


def test_writes_every_artefact(report):
    out, files = report
    for name in ("pdtest.tex", "pdtest_standalone.tex", "pdtest.csv", "runs.csv", "summary.md"):
        assert (out / name).exists(), name
    for stem in ("metric", "acc_vs_gflops", "learning_curves", "per_class_gain"):
        for ext in ("png", "pdf"):
            p = out / f"{stem}.{ext}"
            assert p.exists() and p.stat().st_size > 1000, p
    assert (out / "metric.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "metric.pdf").read_bytes()[:5] == b"%PDF-"
    assert set(files) >= {out / "summary.md", out / "pdtest.tex"}


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


def test_summary_names_the_winner_with_uncertainty(report):
    out, _ = report
    md = (out / "summary.md").read_text()
    assert "**P_d = 0.8** won" in md
    assert "runner-up **P_d = 0.5**" in md
    assert "standard error" in md
    assert "![top-1 per variant](metric.png)" in md
    for stem in ("acc_vs_gflops", "learning_curves", "per_class_gain"):
        assert f"({stem}.png)" in md
    assert "first variant P_d = -" in md  # no visual-only run: the caption says which baseline
    assert "our winner agrees" in md


def test_report_regenerates_identically_from_runs_alone(study, report, tmp_path):
    out, _ = report
    again = tmp_path / "again"
    write_report(study, again)
    for name in ("pdtest.tex", "pdtest.csv", "runs.csv", "summary.md"):
        a = (out / name).read_text().replace(str(out), "")
        b = (again / name).read_text().replace(str(again), "")
        assert a == b, name


def test_partial_study_reports_what_is_done(tmp_path):
    spec = make_spec()
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "s", train_fn=FakeTrainer(interrupt_after_epochs=7), log=lambda m: None)
    write_report(tmp_path / "s", tmp_path / "r")
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "## Not finished" in md and "pd0.5 seed0: partial" in md
    assert "Only **P_d = -** has finished runs" in md


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
    assert tex_escape("A→F→S") == "A$\\rightarrow$F$\\rightarrow$S"
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
