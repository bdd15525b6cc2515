"""Figures (PNG and PDF, seaborn), each with error bars over seeds:

- `metric`: the study's metric per variant (mean +- std, each seed a dot), the paper's beside it;
- `acc_vs_gflops`: accuracy versus measured GFLOPs;
- `learning_curves`: top-1 training error per epoch (Fig. 3 style), validation error dashed;
- `per_class_gain`: per-class accuracy gain of the best audiovisual variant over the
  baseline (Fig. A.1 style), coloured by class group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from avsf.io import atomic_savefig
from avsf.report.data import ReportData, Row, fmt_gflops, metric_name, plain  # noqa: E402


@dataclass
class Figure:
    key: str  # file stem
    title: str
    caption: str
    paths: list[Path]


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "pdf"):
        p = out_dir / f"{stem}.{ext}"
        atomic_savefig(fig, p, dpi=150, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def _palette(data: ReportData) -> dict[str, tuple]:
    colours = sns.color_palette("colorblind", max(len(data.rows), 3))
    return {r.label: colours[i % len(colours)] for i, r in enumerate(data.rows)}


def metric_figure(data: ReportData, out_dir: Path) -> Figure | None:
    key = data.metric
    recs = []
    for r in data.rows:
        for v in r.stats[key].values if key in r.stats else []:
            recs.append({"variant": r.label, "value": v})
    if not recs:
        return None
    df = pd.DataFrame(recs)
    order = [r.label for r in data.rows if r.stats.get(key) and r.stats[key].n]
    has_paper = any(key in r.variant.paper for r in data.rows)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 2 if has_paper else 1, figsize=(9 if has_paper else 5, 3.4), squeeze=False)
    ax = axes[0][0]
    pal = _palette(data)
    sns.barplot(data=df, x="variant", y="value", order=order, errorbar="sd", capsize=0.15, ax=ax,
                hue="variant", palette=pal, legend=False, alpha=0.8, err_kws={"linewidth": 1.2})
    sns.stripplot(data=df, x="variant", y="value", order=order, color="black", size=4, ax=ax, jitter=0.1)
    lo = df["value"].min()
    hi = df["value"].max()
    span = max(hi - lo, 1.0)
    ax.set_ylim(max(0.0, lo - 1.5 * span), hi + 0.6 * span)
    ax.set_xlabel(plain(data.spec.row_header) or "variant")
    unit = " (%)" if key in data.percent else ""
    ax.set_ylabel(f"{metric_name(key)}{unit}")
    ax.set_title(f"ours ({data.record.scale} scale, mean ± std, {data.seeds_text()})")
    if has_paper:
        ax2 = axes[0][1]
        prows = [r for r in data.rows if key in r.variant.paper]
        pdf = pd.DataFrame({"variant": [r.label for r in prows], "value": [r.variant.paper[key] for r in prows]})
        sns.barplot(data=pdf, x="variant", y="value", hue="variant", palette=pal, legend=False, ax=ax2, alpha=0.8)
        plo, phi = pdf["value"].min(), pdf["value"].max()
        pspan = max(phi - plo, 1.0)
        ax2.set_ylim(max(0.0, plo - 1.5 * pspan), phi + 0.6 * pspan)
        ax2.set_xlabel(plain(data.spec.row_header) or "variant")
        ax2.set_ylabel(f"{metric_name(key)} (%)")
        ax2.set_title("paper (Kinetics-400, one run)")
    for a in axes[0]:
        for lab in a.get_xticklabels():
            lab.set_rotation(20 if len(order) > 4 else 0)
    fig.suptitle(data.spec.title)
    fig.tight_layout()
    paths = _save(fig, out_dir, "metric")
    return Figure("metric", f"{metric_name(key)} per variant",
                  f"{metric_name(key)} per variant: bars are the mean over seeds, error bars one standard "
                  f"deviation, dots single seeds" + ("; right: the paper's numbers." if has_paper else "."), paths)


def gflops_figure(data: ReportData, out_dir: Path) -> Figure | None:
    key = data.metric
    pts = [r for r in data.rows if r.mean("gflops") is not None and r.mean(key) is not None]
    if not pts:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    pal = _palette(data)
    for r in pts:
        s = r.stats[key]
        g = r.stats["gflops"]
        ax.errorbar(g.mean, s.mean, yerr=s.std if s.n > 1 else None, xerr=g.std if g.n > 1 and g.std else None,
                    fmt="o", color=pal[r.label], capsize=3, markersize=6, label=r.label)
        ax.annotate(r.label, (g.mean, s.mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("GFLOPs per clip (measured)")
    unit = " (%)" if key in data.percent else ""
    ax.set_ylabel(f"{metric_name(key)}{unit}")
    ax.set_title(f"{data.spec.title}: accuracy vs. cost")
    xs = [r.mean("gflops") for r in pts]
    if max(xs) - min(xs) < 1e-3 * max(max(xs), 1e-9):
        ax.set_xlim(min(xs) * 0.9, max(xs) * 1.1 if max(xs) > 0 else 1)
    fig.tight_layout()
    paths = _save(fig, out_dir, "acc_vs_gflops")
    if len({fmt_gflops(r.mean("gflops")) for r in pts}) == 1:
        span = f"{fmt_gflops(pts[0].mean('gflops'))} for every variant"
    else:
        span = ", ".join(f"{data.named(r)}: {fmt_gflops(r.mean('gflops'))}" for r in pts)
    return Figure("acc_vs_gflops", "Accuracy versus GFLOPs",
                  f"{metric_name(key)} (mean ± std over seeds) against the GFLOPs counted by the code ({span}).", paths)


def _curve_records(data: ReportData) -> list[dict]:
    recs = []
    for r in data.rows:
        for run in r.runs:
            last: dict[tuple[int, str], dict] = {}
            for m in run.metrics():
                ep, split = m.get("epoch"), m.get("split")
                if isinstance(ep, (int, float)) and split in ("train", "val"):
                    last[(int(ep), split)] = m  # a resumed run may repeat an epoch: keep the last line
            for (ep, split), m in sorted(last.items()):
                if split == "train":
                    err = m.get("train_error")
                    if err is None and isinstance(m.get("top1"), (int, float)):
                        err = 1.0 - m["top1"] if m["top1"] <= 1.0 else 100.0 - m["top1"]
                else:
                    t = m.get("top1")
                    err = (1.0 - t if t <= 1.0 else 100.0 - t) if isinstance(t, (int, float)) else None
                if isinstance(err, (int, float)):
                    recs.append({"variant": r.label, "seed": run.seed, "epoch": ep, "split": split, "error": err})
    return recs


def learning_curves_figure(data: ReportData, out_dir: Path) -> Figure | None:
    recs = _curve_records(data)
    if not recs:
        return None
    df = pd.DataFrame(recs)
    if df["error"].max() <= 1.0:
        df["error"] = df["error"] * 100.0
    df["split"] = df["split"].map({"train": "train error", "val": "val error"})
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    sns.lineplot(data=df, x="epoch", y="error", hue="variant", style="split", errorbar="sd", ax=ax,
                 palette=_palette(data), hue_order=[r.label for r in data.rows if r.label in set(df["variant"])],
                 style_order=[s for s in ("train error", "val error") if s in set(df["split"])], marker="o",
                 markersize=4)
    ax.set_ylabel("top-1 error (%)")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(f"{data.spec.title}: learning curves (Fig. 3 style)")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    paths = _save(fig, out_dir, "learning_curves")
    return Figure("learning_curves", "Learning curves",
                  "Top-1 training error (solid) and validation error (dashed) per epoch, mean over seeds with a "
                  "band of one standard deviation (the paper's Fig. 3 plots the training error this way).", paths)


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


def per_class_figure(data: ReportData, out_dir: Path) -> tuple[Figure | None, dict | None]:
    pair = gain_pair(data)
    if pair is None:
        return None, None
    best, base, why = pair
    pb, pa = data.per_class(best), data.per_class(base)
    if not pb or not pa or len(pb[0]) != len(pa[0]):
        return None, None
    classes, groups, acc_best = pb
    _, _, acc_base = pa
    group_of: dict[int, str] = {}
    for g, members in (groups or {}).items():
        for m in members:
            idx = m if isinstance(m, int) else (classes.index(m) if m in classes else None)
            if idx is not None:
                group_of[idx] = str(g)
    recs = []
    for i, c in enumerate(classes):
        if acc_best[i] is None or acc_base[i] is None:
            continue
        recs.append({"class": c, "gain": acc_best[i] - acc_base[i], "group": group_of.get(i, "other"),
                     "best": acc_best[i], "base": acc_base[i]})
    if not recs:
        return None, None
    df = pd.DataFrame(recs).sort_values("gain", ascending=False).reset_index(drop=True)
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(df) + 2), 3.8))
    gorder = [g for g in ("visual", "audio", "sync") if g in set(df["group"])] + sorted(
        set(df["group"]) - {"visual", "audio", "sync"})
    pal = dict(zip(gorder, sns.color_palette("Set2", len(gorder))))
    sns.barplot(data=df, x="class", y="gain", hue="group", hue_order=gorder, palette=pal, dodge=False, ax=ax)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("per-class accuracy gain (points)")
    ax.set_xlabel("")
    for lab in ax.get_xticklabels():
        lab.set_rotation(90)
        lab.set_fontsize(6 if len(df) > 30 else 7)
    top = set(df["class"].head(5))
    for lab in ax.get_xticklabels():
        if lab.get_text() in top:
            lab.set_fontweight("bold")
    ax.set_title(f"{data.named(best)} minus {data.named(base)}, per class (Fig. A.1 style)")
    ax.legend(title="class group", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=7)
    fig.tight_layout()
    paths = _save(fig, out_dir, "per_class_gain")
    by_group = df.groupby("group")["gain"].mean().to_dict()
    info = {
        "best": data.named(best),
        "base": data.named(base),
        "why": why,
        "top": [(r["class"], r["gain"]) for _, r in df.head(5).iterrows()],
        "bottom": [(r["class"], r["gain"]) for _, r in df.tail(3).iloc[::-1].iterrows() if r["class"] not in top],
        "by_group": by_group,
    }
    cap = (f"Per-class test accuracy of {data.named(best)} (the best audiovisual variant) minus {why}, mean over "
           f"seeds, sorted; bars coloured by class group, the five largest gains in bold.")
    return Figure("per_class_gain", "Per-class gain from audio", cap, paths), info


def write_figures(data: ReportData, out_dir: Path) -> tuple[list[Figure], dict | None]:
    figs: list[Figure] = []
    for f in (metric_figure, gflops_figure, learning_curves_figure):
        fig = f(data, out_dir)
        if fig:
            figs.append(fig)
    fig, info = per_class_figure(data, out_dir)
    if fig:
        figs.append(fig)
    return figs, info
