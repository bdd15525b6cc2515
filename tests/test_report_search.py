"""The search report: shared figure style (percent, whole trial numbers), LaTeX that compiles."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

sys.path.insert(0, str(Path(__file__).parent))
from test_search_core import QUIET, spec_tree  # noqa: E402
from test_search_workers import fake_flops, fake_train  # noqa: E402

from avsf.report import search as R  # noqa: E402
from avsf.study.search import parse_search, run_search  # noqa: E402


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    run_search(parse_search(spec_tree(trials=6), "m.toml"), out=root / "run", train_fn=fake_train,
               flops_fn=fake_flops, **QUIET)
    files = R.write_search_report(root / "run", root / "rep")
    return root, files


def test_figures_in_percent_with_whole_trial_numbers(searched):
    root, _ = searched
    _, study, _ = R.open_search(root / "run")
    import json

    meta = json.loads((root / "run" / "search.json").read_text())
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    fig = R._history_figure(study, complete, meta)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    assert ax.get_ylabel() == "val top-1 (%)" and ax.get_xlabel() == "trial number"
    assert all(float(x).is_integer() for x in ax.get_xticks())
    values = ax.lines[0].get_ydata()
    assert min(values) > 1.0  # percent, not fractions
    pareto = R._pareto_figure(study, complete, complete[:1], meta)
    assert pareto.axes[0].get_ylabel() == "val top-1 (%)"
    imp = R._importance_figure(study, {"drop_pathway": 0.75, "beta_a": 0.25})
    imp.draw_without_rendering()
    labels = [t.get_text() for t in imp.axes[0].get_yticklabels()]
    assert labels == ["$\\beta_A$", "$P_d$"]  # mathtext, largest on top
    title = imp.axes[0].title if imp.axes[0].get_title() else imp.axes[0]._left_title
    bbox, fig_box = title.get_window_extent(), imp.bbox
    assert bbox.x0 >= fig_box.x0 and bbox.x1 <= fig_box.x1  # the title fits


def test_summary_names_parameters_in_plain_form(searched):
    root, files = searched
    md = (root / "rep" / "summary.md").read_text()
    assert "| trial | Pd | βA | val top-1 (%) | GFLOPs |" in md
    assert "P_d" not in md and "produced by avsf" in md
    assert root / "rep" / "best_trials_standalone.tex" in files
    import csv

    rows = list(csv.DictReader((root / "rep" / "trials.csv").open()))
    assert all(float(r["val_top1_pct"]) > 1.0 for r in rows if r["val_top1_pct"])  # percent, and named so


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (apt install texlive-latex-recommended)")
def test_search_latex_compiles(searched):
    root, _ = searched
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "best_trials_standalone.tex"],
                          cwd=root / "rep", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
