"""summary.md: the table, the figures, and in words which variant won, by how much, how sure."""

from __future__ import annotations

import math
from pathlib import Path

from avsf.report.data import ReportData, dataset_text, fmt, metric_name
from avsf.report.figures import Figure
from avsf.report.tables import group_table, markdown_table, paper_ref
from avsf.io import atomic_write_text
from avsf.study.store import Stat


def _gap(a: Stat, b: Stat) -> tuple[float, float | None]:
    """Difference of means and its standard error (None with fewer than 2 seeds on a side)."""
    d = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return d, None
    return d, math.sqrt(a.std**2 / a.n + b.std**2 / b.n)


def _confidence(d: float, se: float | None, n: int) -> str:
    if se is None:
        return "with a single seed per variant there is no estimate of the seed-to-seed spread, so this ranking is tentative"
    if se == 0:
        return "the seeds agree exactly"
    z = abs(d) / se
    if z >= 3:
        return f"the gap is {z:.1f} standard errors, well beyond the seed-to-seed spread"
    if z >= 2:
        return f"the gap is {z:.1f} standard errors: likely real, but {n} seeds are few"
    return f"the gap is only {z:.1f} standard errors, within the seed-to-seed spread: not a clear win with {n} seeds"


def _kendall_tau(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    c = d = 0
    for i in range(n):
        for j in range(i + 1, n):
            s = (xs[i] - xs[j]) * (ys[i] - ys[j])
            if s > 0:
                c += 1
            elif s < 0:
                d += 1
    pairs = n * (n - 1) / 2
    return (c - d) / pairs if pairs else None


def verdict(data: ReportData) -> list[str]:
    """Sentences: the winner, its margin over the runner-up with uncertainty, the paper's view."""
    key = data.metric
    name = metric_name(key)
    unit = " points" if key in data.percent else ""
    ranked = data.ranked()
    out: list[str] = []
    if not ranked:
        return ["No variant has a finished run yet, so there is no winner to report."]
    w = ranked[0]
    ws = w.stats[key]
    if len(ranked) == 1:
        out.append(f"Only **{data.named(w)}** has finished runs: {name} {fmt(ws)} (n = {ws.n}).")
    else:
        r = ranked[1]
        rs = r.stats[key]
        d, se = _gap(ws, rs)
        margin = f"{d:.1f}{unit}" + (f" ± {se:.1f} (standard error)" if se is not None else "")
        out.append(
            f"**{data.named(w)}** won with {name} {fmt(ws)} (mean ± std over {ws.n} seed{'s' if ws.n != 1 else ''}), "
            f"{margin} above the runner-up **{data.named(r)}** ({fmt(rs)}); {_confidence(d, se, min(ws.n, rs.n))}."
        )
        last = ranked[-1]
        if last is not r:
            d2, se2 = _gap(ws, last.stats[key])
            out.append(
                f"The spread from best to worst ({data.named(last)}, {fmt(last.stats[key])}) is {d2:.1f}{unit}"
                + (f" ± {se2:.1f}" if se2 is not None else "")
                + "."
            )
    base = data.row(data.spec.baseline_variant().name)
    if base is not w and base.stats[key].n and not base.variant.reference:
        d, se = _gap(ws, base.stats[key])
        out.append(
            f"Against the baseline {data.named(base)} ({fmt(base.stats[key])}) the winner gains {d:+.1f}{unit}"
            + (f" ± {se:.1f}" if se is not None else "")
            + "."
        )
    pw = data.paper_winner()
    if pw is not None:
        pv = pw.paper[key]
        same = pw.name == w.name
        both = [r for r in ranked if key in r.variant.paper]
        tau = _kendall_tau([r.mean(key) for r in both], [r.variant.paper[key] for r in both])
        s = (
            f"In the paper ({paper_ref(data.spec.paper_table)}, Kinetics-400) **{data.named(data.row(pw.name))}** is best with {pv:.1f}"
            + ("; our winner agrees." if same else f"; ours ranks {data.named(w)} first instead.")
        )
        if tau is not None and len(both) > 2:
            s += f" Rank agreement with the paper over {len(both)} rows: Kendall's tau = {tau:+.2f}."
        out.append(s)
    if "gflops" in data.keys and w.mean("gflops") is not None:
        g = [r.mean("gflops") for r in data.rows if r.mean("gflops") is not None]
        if max(g) - min(g) > 1e-3 * max(g):
            out.append(f"{data.named(w)} costs {w.mean('gflops'):.3g} GFLOPs per clip (range {min(g):.3g}–{max(g):.3g}).")
    return out


def write_summary(data: ReportData, out_dir: Path, figures: list[Figure], gain: dict | None, files: list[Path]) -> Path:
    spec = data.spec
    rec = data.record
    c = rec.counts()
    lines = [f"# {spec.title} ({paper_ref(spec.paper_table)})", ""]
    if spec.description:
        lines += [" ".join(spec.description.split()), ""]
    lines += [
        f"Study `{spec.name}` from `{rec.path}`: {len(spec.variants)} variants at {data.scale_text()} on "
        f"{dataset_text(data)}; {c['done']} of {len(rec.runs)} runs finished"
        + (f", {c['failed']} failed" if c["failed"] else "")
        + (f", {c['partial']} partial" if c["partial"] else "")
        + (f", {c['pending']} pending" if c["pending"] else "")
        + ". Every number below is read from the run folders (result.json, metrics.jsonl, per_class.json); "
        "accuracies are in percent, mean ± standard deviation over seeds.",
        "",
        "## Result",
        "",
        *[f"- {s}" for s in verdict(data)],
        "",
        "## Table",
        "",
        markdown_table(data),
        "",
    ]
    if spec.notes:
        lines += [f"*{spec.notes}*", ""]
    lines += [
        "Paper columns: the paper's Kinetics-400 numbers for the same row (R-50 4×16; GFLOPs at 256² input). "
        "Ours: GFLOPs counted by the code for one clip at this scale's input size.",
        "",
    ]
    gt = group_table(data)
    if gt:
        lines += [
            "### Accuracy per class group",
            "",
            "The synthetic benchmark's classes are told apart by what they look like (visual), what they sound "
            "like (audio), or by sound and motion being in sync (sync).",
            "",
            gt,
            "",
        ]
    if figures:
        lines += ["## Figures", ""]
        for f in figures:
            png = next((p for p in f.paths if p.suffix == ".png"), f.paths[0])
            pdf = next((p for p in f.paths if p.suffix == ".pdf"), None)
            lines += [f"### {f.title}", "", f"![{f.title}]({png.name})", "", f.caption + (f" ([PDF]({pdf.name}))" if pdf else ""), ""]
            if f.key == "per_class_gain" and gain:
                top = ", ".join(f"{cl} ({g:+.1f})" for cl, g in gain["top"])
                bottom = ", ".join(f"{cl} ({g:+.1f})" for cl, g in gain["bottom"])
                groups = ", ".join(f"{k} {v:+.1f}" for k, v in sorted(gain["by_group"].items()))
                text = f"Baseline: {gain['why']}. Largest gains: {top}."
                if bottom:
                    text += f" Lowest: {bottom}."
                text += f" Mean gain per class group: {groups} points."
                lines += [text, ""]
    missing = [r for r in rec.runs if r.state != "done"]
    if missing:
        lines += ["## Not finished", ""]
        for r in missing:
            lines.append(f"- {r.variant} seed{r.seed}: {r.state}" + (f" ({r.error})" if r.error else ""))
        lines += ["", "Finish them with `avsf study run` on the same study (finished runs are skipped).", ""]
    lines += ["## Files", ""]
    for p in files:
        lines.append(f"- [`{p.name}`]({p.name})")
    lines.append("")
    path = out_dir / "summary.md"
    atomic_write_text(path, "\n".join(lines))
    return path
