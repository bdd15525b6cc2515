"""Study figures (PNG and PDF, the shared style of `avsf.report.style`), accuracies in percent:

- `metric`: the study metric per variant as points with 95 % bootstrap intervals (each seed a
  small dot) beside the paper's numbers, both panels on the same scale (points per inch);
- `acc_vs_gflops`: accuracy versus measured GFLOPs, only when the variants' GFLOPs differ;
- `learning_curves`: small multiples, one panel per variant: training and validation top-1 error
  per epoch (Fig. 3 style), mean over seeds with the seeds' range as a band;
- `per_class_gain`: per-class accuracy gain of the best audiovisual variant over the baseline
  (Fig. A.1 style) with 95 % intervals and each class's number of test clips;
- `confusion_<variant>`: the confusion matrix of each variant, summed over seeds.

No matplotlib backend is chosen here: figures are made without pyplot (see style.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avsf.report import style
from avsf.report.data import ReportData, Row, fmt_gflops, metric_name
from avsf.report.latex import plain

if TYPE_CHECKING:
    from avsf.report.evidence import Evidence


@dataclass
class Figure:
    key: str  # file stem
    title: str
    caption: str
    paths: list[Path]


def axis_label(header: str) -> str:
    """A row header for a matplotlib axis: LaTeX math ("$P_d$") is rendered by mathtext."""
    return header if "$" in header else (header or "variant")


def _colours(data: ReportData) -> dict[str, tuple]:
    return dict(zip((r.name for r in data.rows), style.palette(len(data.rows))))


def _ours(data: ReportData, key: str) -> list[tuple[Row, float, float, float, list[float], str]]:
    """(row, estimate, low, high, seed values, what the bar is) in percent, rows with results."""
    ev = data.evidence
    out = []
    for r in data.rows:
        s = r.stats.get(key)
        if not s or not s.n:
            continue
        iv = ev.variants[r.name].interval.get(key) if ev and r.name in ev.variants else None
        if iv is not None and math.isfinite(iv.low):
            out.append((r, iv.estimate * 100, iv.low * 100, iv.high * 100, s.values, "95 % interval"))
        else:
            sd = s.std if s.n > 1 else 0.0
            out.append((r, s.mean, s.mean - sd, s.mean + sd, s.values, "± 1 std over seeds"))
    return out


def _same_scale(axes, spans: list[tuple[float, float]]) -> None:
    """Give every panel the same y range length (a 2-point gap looks as large in each), centred
    on its own data and kept within 0..100 (percent)."""
    top = max(100.0, max(hi for _, hi in spans))
    width = min(top, max(hi - lo for lo, hi in spans) * 1.25 + 2.0)
    for ax, (lo, hi) in zip(axes, spans):
        bottom = min(max(0.0, (lo + hi) / 2 - width / 2), top - width)
        ax.set_ylim(bottom, bottom + width)


def metric_figure(data: ReportData, out_dir: Path) -> Figure | None:
    key = data.metric
    ours = _ours(data, key)
    if not ours:
        return None
    paper = [(r, r.variant.paper[key]) for r in data.rows if key in r.variant.paper]
    colours = _colours(data)
    with style.styled():
        fig, axes = style.new_figure(1, 2 if paper else 1, size=(8.5 if paper else 4.8, 3.4))
        ax = axes[0][0]
        for i, (r, est, lo, hi, vals, _) in enumerate(ours):
            ax.errorbar(i, est, yerr=[[est - lo], [hi - est]], fmt="o", color=colours[r.name], capsize=4, markersize=6)
            ax.plot([i + 0.18] * len(vals), vals, "o", color="0.3", markersize=2.5, alpha=0.8)
        ax.set_xticks(range(len(ours)), [r.label for r, *_ in ours])
        ax.set_title(f"ours ({data.record.scale} scale, {data.seeds_text()}): mean and {ours[0][5]}")
        spans = [(min(min(lo, *v) for _, _, lo, _, v, _ in ours), max(max(hi, *v) for _, _, _, hi, v, _ in ours))]
        if paper:
            ax2 = axes[0][1]
            for i, (r, v) in enumerate(paper):
                ax2.plot(i, v, "o", color=colours[r.name], markersize=6)
            ax2.set_xticks(range(len(paper)), [r.label for r, _ in paper])
            ax2.set_title(f"paper ({data.paper_data}, one run)")
            spans.append((min(v for _, v in paper), max(v for _, v in paper)))
        _same_scale(axes[0], spans)
        for a in axes[0]:
            a.set_xlabel(axis_label(data.spec.row_header))
            a.set_ylabel(style.percent_label(metric_name(key)))
            a.set_xlim(-0.5, max(len(ours), len(paper)) - 0.5)
            a.tick_params(axis="x", rotation=20 if len(ours) > 4 else 0)
        fig.suptitle(data.spec.title)
        paths = style.save_figure(fig, out_dir, "metric")
    return Figure("metric", f"{metric_name(key)} per variant",
                  f"{metric_name(key)} per variant: points are the mean over seeds with their {ours[0][5]}, small "
                  "dots single seeds" + ("; right: the paper's numbers. Both panels span the same number of points, "
                                         "so equal gaps look equal." if paper else "."), paths)


def gflops_figure(data: ReportData, out_dir: Path) -> Figure | None:
    """Accuracy against cost; None when every variant costs the same (the figure would say nothing)."""
    key = data.metric
    pts = [(r, est, lo, hi) for r, est, lo, hi, _, _ in _ours(data, key) if r.mean("gflops") is not None]
    gf = [r.mean("gflops") for r, *_ in pts]
    if len(pts) < 2 or max(gf) - min(gf) <= 1e-3 * max(max(gf), 1e-12):
        return None
    colours = _colours(data)
    with style.styled():
        fig, axes = style.new_figure(size=(5.0, 3.6))
        ax = axes[0][0]
        for r, est, lo, hi in pts:
            ax.errorbar(r.mean("gflops"), est, yerr=[[est - lo], [hi - est]], fmt="o", color=colours[r.name], capsize=3)
            ax.annotate(r.label, (r.mean("gflops"), est), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel("GFLOPs per clip (counted)")
        ax.set_ylabel(style.percent_label(metric_name(key)))
        ax.set_title(f"{data.spec.title}: accuracy vs. cost")
        paths = style.save_figure(fig, out_dir, "acc_vs_gflops")
    span = ", ".join(f"{data.named(r)}: {fmt_gflops(r.mean('gflops'))}" for r, *_ in pts)
    return Figure("acc_vs_gflops", "Accuracy versus GFLOPs",
                  f"{metric_name(key)} with its interval against the GFLOPs counted by the code ({span}).", paths)


def _curves(row: Row) -> dict[str, dict[int, list[float]]]:
    """split -> epoch -> error (percent) per seed; a resumed run's repeated epoch counts once."""
    out: dict[str, dict[int, list[float]]] = {"train": {}, "val": {}}
    for run in row.runs:
        last: dict[tuple[int, str], dict] = {}
        for m in run.metrics():
            ep, split = m.get("epoch"), m.get("split")
            if isinstance(ep, (int, float)) and split in out:
                last[(int(ep), split)] = m
        for (ep, split), m in sorted(last.items()):
            err = m.get("train_error") if split == "train" else None
            if err is None and isinstance(m.get("top1"), (int, float)):
                err = 1.0 - m["top1"] if m["top1"] <= 1.0 else 100.0 - m["top1"]
            if isinstance(err, (int, float)):
                out[split].setdefault(ep, []).append(err * 100.0 if err <= 1.0 else err)
    return out


def learning_curves_figure(data: ReportData, out_dir: Path) -> Figure | None:
    rows = [(r, _curves(r)) for r in data.rows]
    rows = [(r, c) for r, c in rows if c["train"] or c["val"]]
    if not rows:
        return None
    from avsf.report.evidence import converged

    ncols = min(4, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    colours = _colours(data)
    with style.styled():
        fig, axes = style.new_figure(nrows, ncols, size=(2.4 * ncols + 0.6, 2.1 * nrows + 0.6), sharex=True,
                                     sharey=True)
        for ax, (r, curves) in zip(axes.flat, rows):
            for split, ls in (("train", "-"), ("val", "--")):
                eps = sorted(curves[split])
                if not eps:
                    continue
                mean = [np.mean(curves[split][e]) for e in eps]
                ax.plot(eps, mean, ls, marker="o", markersize=3, color=colours[r.name],
                        label=f"{split} error")
                ax.fill_between(eps, [min(curves[split][e]) for e in eps], [max(curves[split][e]) for e in eps],
                                color=colours[r.name], alpha=0.2, linewidth=0)
            states = [converged(run) for run in r.runs]
            state = ("converged" if all(states) else "not converged" if any(s is False for s in states)
                     else "") if states else ""
            ax.set_title(r.label + (f" ({state})" if state else ""), fontsize=8)
            style.integer_ticks(ax.xaxis)
        for ax in axes.flat[len(rows):]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel("top-1 error (%)")
        for ax in axes[-1, :]:
            ax.set_xlabel("epoch")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2)
        fig.suptitle(f"{data.spec.title}: learning curves (Fig. 3 style)")
        paths = style.save_figure(fig, out_dir, "learning_curves")
    return Figure("learning_curves", "Learning curves",
                  "One panel per variant: top-1 training error (solid) and validation error (dashed) per epoch, mean "
                  "over seeds with the seeds' range shaded (the paper's Fig. 3 plots the training error this way); "
                  "the title says whether the variant's runs converged.", paths)


def gain_pair(data: ReportData) -> tuple[Row, Row, str] | None:
    """(best audiovisual variant, baseline, why that baseline) for the per-class gain figure."""
    spec = data.spec
    base_v = spec.baseline_variant()
    base = data.row(base_v.name)
    if not base.runs:
        return None
    candidates = [r for r in data.ranked() if spec.is_audiovisual(r.variant) and r.name != base.name]
    if not candidates:
        candidates = [r for r in data.ranked() if r.name != base.name]
    if not candidates:
        return None
    if base_v.baseline:
        why = f"the study's baseline {data.named(base)}"
    elif spec._merged(base_v).get("model.pathways") == "slowfast":
        why = f"the visual-only {data.named(base)}"
    else:
        why = f"the first variant {data.named(base)} (this study has no visual-only run)"
    return candidates[0], base, why


def _detection_gains(ev: "Evidence", best: Row, base: Row) -> list[dict] | None:
    """Detection (Fig. A.1): per class, the frame-AP gain (points) with a 95 % interval over
    seed and keyframe draws; n = the class's ground-truth boxes."""
    seeds = ev.seeds_of(base.name)
    if not seeds or not ev.seeds_of(best.name):
        return None
    record = ev.preds[(base.name, seeds[0])].extra["record"]
    names = record["classes"] or [str(c) for c in range(len(record["detections"]["scores"][0]))]
    counts = [sum(c in labels for f in record["keyframes"] for labels in f["labels"]) for c in range(len(names))]
    comps = ev.compare(best.name, base.name, "mAP", [[c] for c in range(len(names))])
    return [{"class": n, "n": k, "gain": c.diff.estimate * 100, "low": c.diff.low * 100, "high": c.diff.high * 100}
            for n, k, c in zip(names, counts, comps) if k]


def _class_gains(data: ReportData, best: Row, base: Row) -> list[dict] | None:
    """Per class: gain (points) of best over base with a 95 % interval, from the predictions;
    else from per_class.json means without an interval. n = test clips of the class."""
    ev = data.evidence
    if ev is not None and ev.kind == "detection":
        return _detection_gains(ev, best, base)
    cm = ev.class_masks(base.name) if ev else None
    if cm is not None and ev.seeds_of(best.name):
        names, masks = cm
        comps = ev.compare(best.name, base.name, "top1", masks)
        if comps:
            return [{"class": n, "n": int(m.sum()), "gain": c.diff.estimate * 100, "low": c.diff.low * 100,
                     "high": c.diff.high * 100} for n, m, c in zip(names, masks, comps) if m.sum()]
    pb, pa = data.per_class(best), data.per_class(base)
    if not pb or not pa or len(pb[0]) != len(pa[0]):
        return None
    counts = next((r.per_class().get("count") for r in base.runs if r.per_class()), None) or []
    return [{"class": c, "n": counts[i] if i < len(counts) else None, "gain": pb[2][i] - pa[2][i], "low": math.nan,
             "high": math.nan} for i, c in enumerate(pb[0]) if pb[2][i] is not None and pa[2][i] is not None]


def _group_of(data: ReportData, classes: list[str]) -> dict[str, str]:
    pc = next((r.per_class() for row in data.rows for r in row.runs if r.per_class()), None) or {}
    groups = (data.evidence.groups if data.evidence else {}) or pc.get("groups") or {}
    classes = [str(c) for c in pc.get("classes") or classes]  # members are indices of all classes
    out = {}
    for g, members in groups.items():
        for m in members:
            name = classes[m] if isinstance(m, int) and m < len(classes) else m
            out[str(name)] = str(g)
    return out


def per_class_figure(data: ReportData, out_dir: Path) -> tuple[Figure | None, dict | None]:
    pair = gain_pair(data)
    if pair is None:
        return None, None
    best, base, why = pair
    recs = _class_gains(data, best, base)
    if not recs:
        return None, None
    group = _group_of(data, [r["class"] for r in recs])
    recs.sort(key=lambda r: -r["gain"])
    gorder = [g for g in ("visual", "audio", "sync") if g in set(group.values())] + sorted(
        set(group.values()) - {"visual", "audio", "sync"})
    colours = dict(zip(gorder + ["other"], style.palette(len(gorder) + 1)))
    with style.styled():
        fig, axes = style.new_figure(size=(max(6.0, 0.32 * len(recs) + 2.0), 3.8))
        ax = axes[0][0]
        seen: set[str] = set()
        for i, r in enumerate(recs):
            g = group.get(r["class"], "other")
            err = None if math.isnan(r["low"]) else [[r["gain"] - r["low"]], [r["high"] - r["gain"]]]
            ax.errorbar(i, r["gain"], yerr=err, fmt="o", color=colours[g], capsize=2, markersize=5,
                        label=None if g in seen else g)
            seen.add(g)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(recs)), [f"{r['class']} (n={r['n']})" if r["n"] else r["class"] for r in recs],
                      rotation=90, fontsize=6 if len(recs) > 30 else 7)
        ax.set_ylabel(f"per-class {_per_class_metric(data)} gain (points)")
        ax.set_title(f"{plain(data.named(best))} minus {plain(data.named(base))}, per class (Fig. A.1 style)")
        ax.legend(title="class group", loc="upper right", fontsize=7)
        paths = style.save_figure(fig, out_dir, "per_class_gain")
    return (Figure("per_class_gain", "Per-class gain from audio", _gain_caption(data, best, why, recs), paths),
            _gain_info(data, best, base, why, recs, group))


def _per_class_metric(data: ReportData) -> str:
    """What per_class.json measures: "top-1", "noun top-1" (EPIC), "AP" (multi-label; detection's
    frame AP at IoU 0.5)."""
    if data.evidence is not None and data.evidence.kind == "detection":
        return "AP"
    what = data.per_class_metric()
    return "AP" if what == "average precision" else what.replace(" accuracy", "")


def _gain_caption(data: ReportData, best: Row, why: str, recs: list[dict]) -> str:
    has_ci = not math.isnan(recs[0]["low"])
    detection = data.evidence is not None and data.evidence.kind == "detection"
    what = "frame AP (IoU 0.5)" if detection else _per_class_metric(data)
    drawn = ("test keyframes (n = the class's ground-truth boxes" if detection else
             "the class's test clips (n per class")
    return (f"Per-class test {what} of {data.named(best)} (the best audiovisual variant) minus {why}, sorted; "
            + (f"bars are 95 % paired bootstrap intervals over seeds and {drawn} in "
               "the labels)" if has_ci else "means over seeds (no per-class intervals: they need single-label or "
               "detection predictions.json)")
            + "; colours are class groups.")


def _gain_info(data: ReportData, best: Row, base: Row, why: str, recs: list[dict], group: dict[str, str]) -> dict:
    def cell(r: dict) -> str:
        ci = "" if math.isnan(r["low"]) else f" [{r['low']:+.1f}, {r['high']:+.1f}]"
        return f"{r['class']} ({r['gain']:+.1f}{ci})"

    clear = [r for r in recs if not math.isnan(r["low"]) and (r["low"] > 0 or r["high"] < 0)]
    by_group: dict[str, list[float]] = {}
    for r in recs:
        by_group.setdefault(group.get(r["class"], "other"), []).append(r["gain"])
    text = f"Baseline: {why}. Largest gains: {', '.join(cell(r) for r in recs[:3])}. Lowest: " + ", ".join(
        cell(r) for r in recs[-3:][::-1]) + ". Mean gain per class group: " + ", ".join(
        f"{g} {np.mean(v):+.1f}" for g, v in sorted(by_group.items())) + " points."
    if not math.isnan(recs[0]["low"]):
        text += (f" Classes whose interval excludes 0: {', '.join(cell(r) for r in clear)}." if clear else
                 " No class's interval excludes 0: with this many test clips per class, per-class gains are noise.")
    return {"best": data.named(best), "base": data.named(base), "why": why, "text": text}


def confusion_figures(data: ReportData, out_dir: Path) -> list[Figure]:
    """One confusion matrix per variant (single-label studies with predictions.json)."""
    ev = data.evidence
    out = []
    for row in data.rows if ev else []:
        mat = ev.confusion(row.name)
        if mat is None:
            continue
        cm = ev.class_masks(row.name)
        names = cm[0] if cm else [str(i) for i in range(len(mat))]
        n_seeds = len(ev.seeds_of(row.name))
        stem = "confusion_" + re.sub(r"[^A-Za-z0-9_.-]+", "-", row.name)
        out.append(_confusion_figure(mat, names, n_seeds, out_dir, stem, data.named(row)))
    return out


def _confusion_figure(mat: np.ndarray, names: list[str], n_seeds: int, out_dir: Path, stem: str, who: str) -> Figure:
    share = 100.0 * mat / np.maximum(mat.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.42 * len(names)
    with style.styled():
        fig, axes = style.new_figure(size=(size + 1.2, size))
        ax = axes[0][0]
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
        if len(names) <= 20:
            for (i, j), v in np.ndenumerate(mat):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                            color="white" if share[i, j] > 60 else "black")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), [f"{n} (n={int(t) // n_seeds})" for n, t in zip(names, mat.sum(axis=1))],
                      fontsize=7)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class (test clips per seed)")
        ax.grid(False)
        fig.colorbar(im, ax=ax, label="share of the true class (%)", shrink=0.8)
        ax.set_title(f"{plain(who)}: counts summed over {n_seeds} seed{'s' if n_seeds != 1 else ''}")
        paths = style.save_figure(fig, out_dir, stem)
    return Figure(stem, f"Confusion matrix: {who}",
                  f"Test clips of {who} by true (rows) and predicted (columns) class, counts summed over seeds; "
                  "colour: the share of the row (%).", paths)


def write_figures(data: ReportData, out_dir: Path) -> tuple[list[Figure], dict | None]:
    figs: list[Figure] = []
    for f in (metric_figure, gflops_figure, learning_curves_figure):
        fig = f(data, out_dir)
        if fig:
            figs.append(fig)
    fig, info = per_class_figure(data, out_dir)
    if fig:
        figs.append(fig)
    figs += confusion_figures(data, out_dir)
    return figs, info
