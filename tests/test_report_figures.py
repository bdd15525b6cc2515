"""Study figures a reviewer would accept: equal scales, readable legends, n and intervals, math labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _report_fakes import PredictingTrainer  # noqa: E402
from test_study_runner import STUDY  # noqa: E402

from avsf.report import figures, style, write_report  # noqa: E402
from avsf.study import run_study  # noqa: E402
from avsf.study.spec import study_from_dict  # noqa: E402

PDS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """An 8-variant study reported, every matplotlib figure kept by its file stem."""
    tree = json.loads(json.dumps(STUDY))
    tree["variant"] = [{"name": f"pd{p}", "label": str(p), "set": {"model.drop_pathway": p},
                        "paper": {"top1": 75.0 + p}} for p in PDS]
    root = tmp_path_factory.mktemp("fig")
    run_study(study_from_dict(tree, source="eight.toml"), root / "eight", train_fn=PredictingTrainer(),
              log=lambda m: None)
    kept = {}
    original = style.save_figure

    def keep(fig, out_dir, stem, formats=style.FORMATS):
        kept[stem] = fig
        return original(fig, out_dir, stem, formats)

    mp = pytest.MonkeyPatch()
    mp.setattr(style, "save_figure", keep)
    try:
        write_report(root / "eight", root / "out")
    finally:
        mp.undo()
    for fig in kept.values():
        fig.draw_without_rendering()
    return kept


def test_metric_panels_share_one_scale_in_percent(drawn):
    ours, paper = drawn["metric"].axes
    span = lambda ax: ax.get_ylim()[1] - ax.get_ylim()[0]  # noqa: E731
    assert span(ours) == pytest.approx(span(paper))
    assert 0.0 <= ours.get_ylim()[0] and ours.get_ylim()[1] <= 100.0
    assert ours.get_ylabel() == "top-1 (%)" and ours.get_xlabel() == "$P_d$"  # mathtext, not "P_d"
    # each variant: a point with an interval (errorbar) over the seeds' dots
    assert len(ours.containers) == len(PDS)


def test_learning_curves_are_small_multiples_with_one_short_legend(drawn):
    fig = drawn["learning_curves"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(PDS)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["train error", "val error"]
    assert all(ax.get_title(loc="left").endswith("(converged)") for ax in panels)


def test_per_class_gain_shows_n_and_intervals_and_no_bold(drawn):
    ax = drawn["per_class_gain"].axes[0]
    labels = ax.get_xticklabels()
    assert all("(n=40)" in t.get_text() for t in labels)
    assert all(t.get_fontweight() in ("normal", 400) for t in labels)
    assert len(ax.containers) == len(labels)  # one interval per class


def test_no_gflops_figure_when_costs_are_equal_and_one_confusion_per_variant(drawn):
    assert "acc_vs_gflops" not in drawn
    assert {f"confusion_pd{p}" for p in PDS} <= set(drawn)
    conf = drawn["confusion_pd0.8"].axes[0]
    assert conf.get_xlabel() == "predicted class" and "(n=40)" in conf.get_yticklabels()[0].get_text()


def test_axis_label_keeps_math_and_names_a_plain_header():
    assert figures.axis_label("$\\beta_A$") == "$\\beta_A$"
    assert figures.axis_label("") == "variant"
