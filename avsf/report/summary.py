"""summary.md: the hypothesis, the result in words with intervals and p-values, the paper's
claims judged at this study's power, the tables, the figures, convergence and provenance."""

from __future__ import annotations

import math
from pathlib import Path

from avsf import stats as st
from avsf.io import atomic_write_text
from avsf.report.data import ReportData, Row, dataset_text, fmt, fmt_ci, fmt_p, metric_name, on_benchmark
from avsf.report.evidence import Evidence, Verdict, converged
from avsf.report.figures import Figure
from avsf.report.latex import plain
from avsf.report.provenance import code_provenance, describe, runs_provenance
from avsf.report.tables import group_table, markdown_table, paper_ref

METHOD = (
    "Intervals are 95 % bootstrap intervals from a paired, hierarchical bootstrap: seeds and test clips are "
    "resampled (the same draw for both variants of a comparison), with the seed level rescaled to the "
    "training-to-training variance the seeds show beyond test-clip noise and widened by Student's t for few "
    "seeds. p is two-sided for the difference against the baseline (Holm: adjusted over this study's variants); "
    "MDD is the smallest difference this study detects with 80 % power at the 5 % level "
    "(`avsf/stats.py` documents the method)."
)


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
    return (c - d) / (n * (n - 1) / 2)


def _points(x: float) -> str:
    return f"{x * 100:+.1f}"


def _test_text(cmp: st.Comparison) -> str:
    """ "+6.0 points [+1.2, +10.8], p = 0.014 (MDD 4.8 points)" """
    return (f"{fmt_ci(cmp.diff, signed=True)} points, p = {fmt_p(cmp.p_value)} "
            f"(smallest detectable difference {cmp.mdd * 100:.1f} points)").replace("p = < ", "p < ")


def _unconverged(data: ReportData, names: list[str]) -> list[str]:
    return [f"{r.variant} seed{r.seed}" for n in dict.fromkeys(names) for r in data.row(n).runs
            if converged(r) is False]


def _winner_lines(data: ReportData, ev: Evidence, ranked: list[Row]) -> list[str]:
    key, name = data.metric, metric_name(data.metric)
    w = ranked[0]
    iv = ev.variants[w.name].interval.get(key)
    seeds = ev.seeds_of(w.name)
    out = [f"**{data.named(w)}** ranks first with {name} {fmt_ci(iv)} % (95 % interval; {len(seeds)} seed"
           f"{'s' if len(seeds) != 1 else ''} x {ev.n_clips} test clips)."]
    if len(ranked) > 1:
        r = ranked[1]
        cmp = ev.compare(w.name, r.name, key)
        if cmp:
            c = cmp[0]
            how = ("a clear margin" if c.direction() == 1 else
                   "not distinguishable at this power")
            out.append(f"Over the runner-up **{data.named(r)}** ({fmt_ci(ev.variants[r.name].interval.get(key))} %): "
                       f"{_test_text(c)}: {how}.")
    base = data.row(ev.baseline)
    c = ev.comparison(w.name, key)
    if c is not None and base is not w:
        verdict = {1: "better than", -1: "worse than", 0: "not distinguishable from"}[c.direction()]
        out.append(f"Against the baseline **{data.named(base)}**: {_test_text(c)}: {verdict} the baseline.")
    bad = _unconverged(data, [w.name] + ([ranked[1].name] if len(ranked) > 1 else []) + [base.name])
    if bad:
        out.append(f"Caution: drawn from runs that had not converged ({', '.join(bad)}); the ranking may change "
                   "with longer training.")
    return out


def _fallback_lines(data: ReportData, ranked: list[Row]) -> list[str]:
    """Without predictions.json there are no per-clip outcomes: say what is known."""
    w = ranked[0]
    ws = w.stats[data.metric]
    return [f"**{data.named(w)}** has the highest mean {metric_name(data.metric)}: {fmt(ws)} (mean ± std over "
            f"{ws.n} seed{'s' if ws.n != 1 else ''}). No run has predictions.json, so there are no intervals, "
            "p-values or detectable differences; rerun the study with the current avsf to get them."]


def _paper_line(data: ReportData, ranked: list[Row]) -> str | None:
    key = data.metric
    pw = data.paper_winner()
    if pw is None:
        return None
    w = ranked[0]
    s = (f"In the paper ({paper_ref(data.spec.paper_table)}, {data.paper_data}) **{data.named(data.row(pw.name))}** is best "
         f"with {pw.paper[key]:.1f}" + ("; ours agrees." if pw.name == w.name else f"; ours ranks {data.named(w)} first."))
    both = [r for r in ranked if key in r.variant.paper]
    tau = _kendall_tau([r.mean(key) for r in both], [r.variant.paper[key] for r in both])
    if tau is not None and len(both) > 2:
        s += f" Rank agreement with the paper over {len(both)} rows: Kendall's tau = {tau:+.2f}."
    return s


def verdict(data: ReportData) -> list[str]:
    """Sentences: the winner with its interval, its margin over the runner-up and the baseline
    (paired test, MDD), and the paper's view."""
    ranked = data.ranked()
    if not ranked:
        return ["No variant has a finished run yet, so there is no winner to report."]
    ev = data.evidence
    out = _winner_lines(data, ev, ranked) if ev and ev.variants[ranked[0].name].seeds else _fallback_lines(data, ranked)
    paper = _paper_line(data, ranked)
    if paper:
        out.append(paper)
    if "gflops" in data.keys and ranked[0].mean("gflops") is not None:
        g = [r.mean("gflops") for r in data.rows if r.mean("gflops") is not None]
        if max(g) - min(g) > 1e-3 * max(g):
            out.append(f"{data.named(ranked[0])} costs {ranked[0].mean('gflops'):.3g} GFLOPs per clip "
                       f"(range {min(g):.3g}–{max(g):.3g}).")
    return out


# ----------------------------------------------------------------------------- sections


def claim_line(data: ReportData, c: Verdict) -> str:
    a, b = data.named(data.row(c.claim.better)), data.named(data.row(c.claim.worse))
    metric = c.claim.metric or data.metric
    on = "" if metric == data.metric else f", {metric_name(metric)}"
    head = f"- *{plain(c.claim.text)}* ({a} vs {b}{on}): "
    if c.comparison is None:
        return head + f"**not measured** ({c.reason})."
    cmp = c.comparison
    line = head + f"**{c.verdict}**" + ("" if c.verdict != "undecided" else " at this power") + f": {_test_text(cmp)}"
    if cmp.n_seeds > 1 and not cmp.seeds_agree and cmp.diff.estimate:
        line += "; the seeds disagree in sign (" + ", ".join(_points(d) for d in cmp.seed_diffs) + ")"
    line += "."
    if c.unconverged:
        line += f" **Drawn from unconverged runs** ({', '.join(c.unconverged)}): it may change with longer training."
    return line


def claims_section(data: ReportData) -> list[str]:
    ev = data.evidence
    claims = ev.claims if ev else []
    if not claims:
        return []
    lines = ["## The paper's claims, tested", "",
             f"Each claim compares two variants on {metric_name(data.metric)} unless it names another metric "
             "(difference better − worse, 95 % interval); *supported* or *contradicted* when p < 0.05 and the "
             "interval excludes 0, else *undecided at this power*.", ""]
    return lines + [claim_line(data, c) for c in claims] + [""]


def _conv_cell(data: ReportData, row: Row) -> str:
    states = [converged(r) for r in row.runs]
    if not states:
        return "–"
    if all(s is None for s in states):
        return "not recorded"
    return f"{sum(s is True for s in states)}/{len(states)}"


def stats_table(data: ReportData, keys: list[str] | None = None) -> str | None:
    """Per variant: interval, difference to the baseline with interval, p, Holm p, MDD."""
    ev = data.evidence
    if ev is None:
        return None
    key = data.metric
    head = [plain(data.spec.row_header) or "variant", f"{metric_name(key)} (%) [95 % CI]",
            "Δ vs baseline (points) [95 % CI]", "p", "p (Holm)", "MDD (points)", "seeds", "converged"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in data.rows:
        vs = ev.variants[row.name]
        c = vs.vs_base.get(key)
        label = row.label + (" (baseline)" if row.name == ev.baseline else "")
        cells = [label, fmt_ci(vs.interval.get(key)), fmt_ci(c.diff, signed=True) if c else "–",
                 fmt_p(c.p_value) if c else "–", fmt_p(vs.p_holm.get(key)) if c else "–",
                 f"{c.mdd * 100:.1f}" if c and math.isfinite(c.mdd) else "–", str(len(vs.seeds)),
                 _conv_cell(data, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def group_stats_table(data: ReportData) -> str | None:
    """Class groups (or EPIC heads): each variant's interval and its difference to the baseline."""
    ev = data.evidence
    keys = [k for k in (ev.keys if ev else []) if k != data.metric]
    if not keys:
        return None
    head = [plain(data.spec.row_header) or "variant"] + [f"{metric_name(k)} (%)" for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(keys)) + "|"]
    for row in data.rows:
        vs = ev.variants[row.name]
        cells = [row.label]
        for k in keys:
            c = vs.vs_base.get(k)
            cell = fmt_ci(vs.interval.get(k))
            if c is not None:
                cell += f"; Δ {_points(c.diff.estimate)}, p {fmt_p(c.p_value)}".replace("p < ", "p<")
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def identical_lines(data: ReportData) -> list[str]:
    """Variants whose test predictions score exactly as the baseline's, clip for clip and seed for
    seed: their row reads "+0.0 [+0.0, +0.0], MDD 0.0", which a reader must not take for a precise
    null result."""
    ev = data.evidence
    same = [data.named(row) for row in data.rows
            if (c := ev.variants[row.name].vs_base.get(data.metric)) is not None and c.identical]
    if not same:
        return []
    return [f"Scored every test clip exactly as the baseline did, in every seed: {', '.join(same)}. What "
            "such a variant changes made no difference to any test clip on this data (for example an option "
            "that never acts on it), so its MDD of 0 is not power: the study cannot say what it would do "
            "where it acts.", ""]


def chance_lines(data: ReportData) -> list[str]:
    """Per class group: which variants are above chance within the group (1/k for its k classes:
    a model that knows a clip's group but nothing finer), with 95 % confidence (the interval's
    lower end above it). The question the synchrony classes ask: does any variant tell in-sync
    from out-of-sync at all?"""
    ev = data.evidence
    if ev is None or ev.kind != "single":
        return []
    out = []
    for key in ev.keys:
        group = key[5:] if key.startswith("top1_") else ""
        if group not in ev.groups or len(ev.groups[group]) < 2:
            continue
        chance = 1.0 / len(ev.groups[group])
        above = [row for row in data.rows
                 if (iv := ev.variants[row.name].interval.get(key)) is not None and iv.low > chance]
        names = ", ".join(f"{data.named(row)} ({fmt_ci(ev.variants[row.name].interval[key])})" for row in above)
        out.append(f"- {group} ({len(ev.groups[group])} classes, chance {100 * chance:.0f} %): "
                   + (f"above chance: {names}." if above else "no variant is above chance with 95 % confidence."))
    if not out:
        return []
    return ["Above chance within each group, with 95 % confidence (the interval's lower end above 1/k, k the "
            "group's classes: the accuracy of a model that knows a clip's group and nothing finer):", "",
            *out, ""]


def statistics_section(data: ReportData) -> list[str]:
    ev = data.evidence
    if ev is None:
        return ["## Statistics", "", "No finished run has predictions.json (per-clip test predictions), so this "
                "report has no intervals or tests; runs from the current avsf write it.", ""]
    base = data.named(data.row(ev.baseline))
    n_seeds = max((len(v.seeds) for v in ev.variants.values()), default=0)
    lines = [f"## Against the baseline ({base})", "", stats_table(data), "", *identical_lines(data), METHOD, "",
             st.seed_level_note(n_seeds, ev.n_clips), ""]
    gt = group_stats_table(data)
    if gt:
        part = "Per class group" if any(k[5:] in ev.groups for k in ev.keys if k.startswith("top1_")) else "Per head"
        lines += [f"### {part}", "", "Each cell: the variant's accuracy [95 % interval]; Δ and p against the "
                  "baseline.", "", gt, ""]
        lines += chance_lines(data)
    power = power_lines(data)
    if power:
        lines += ["### Power: what more seeds or test clips would detect", "", *power, *spread_lines(data)]
    if ev.missing:
        lines += [f"Left out of the statistics (no predictions.json): {', '.join(ev.missing)}.", ""]
    lines += [f"Note: {n}." for n in ev.notes] + ([""] if ev.notes else [])
    return lines


MDD_TARGET = 0.05
"""The smallest detectable difference the studies are sized for: 5 top-1 points (docs/studies.md,
"Power"). The power section says how many seeds or test clips would reach it."""


def _power_rows(data: ReportData) -> list[tuple[str, st.Comparison, st.Components]]:
    """(what is compared, its comparison, its variance components): each variant against the
    baseline on the study metric, then each claim not already among them."""
    ev = data.evidence
    wanted = [(row.name, ev.baseline, data.metric, data.named(row), ev.comparison(row.name, data.metric))
              for row in data.rows if row.name != ev.baseline]
    wanted += [(v.claim.better, v.claim.worse, v.claim.metric or data.metric,
                f"claim: {data.named(data.row(v.claim.better))} vs {data.named(data.row(v.claim.worse))}"
                + (f", {metric_name(v.claim.metric)}" if v.claim.metric and v.claim.metric != data.metric else ""),
                v.comparison) for v in ev.claims]
    out, seen = [], set()
    for a, b, key, label, cmp in wanted:
        if (frozenset((a, b)), key) in seen:  # a claim the other way round is the same comparison
            continue
        seen.add((frozenset((a, b)), key))
        comp = ev.components(a, b, key) if cmp is not None and not cmp.identical else None
        if comp is not None and comp.n_seeds > 1:
            out.append((label, cmp, comp))
    return out


def power_lines(data: ReportData) -> list[str]:
    """What more seeds or test clips would detect: per comparison, the spread from training to
    training, the test clips' share of the SE, and the seeds (or clips) that would bring the MDD
    to `MDD_TARGET`, from the variance components of the per-clip differences (`avsf.stats.Components`)."""
    ev = data.evidence
    rows = _power_rows(data) if ev is not None else []
    if not rows:
        return []
    target = 100 * MDD_TARGET
    synth = on_benchmark(data)  # only the benchmark's test split can grow (data.synth_test_per_class)
    s = rows[0][2].n_seeds
    head = ["comparison", "test clips", "MDD now (points)", "seed-to-seed SD (points)",
            "SE from the test clips (points)", "limited mostly by",
            f"seeds for MDD ≤ {target:g} at these clips (80 % upper)",
            f"test clips for MDD ≤ {target:g} at {s} seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 4 + ["---"] + ["---:"] * 2) + "|"]

    def seeds_text(x: int | None) -> str:
        return str(x) if x is not None else f"> {st.MOST_SEEDS}"

    for label, cmp, comp in rows:
        n = comp.n_clips  # a class group's claim: its group's clips
        clip_se = math.sqrt(comp.clip / n + comp.residual / (s * n))
        k, k_up = comp.seeds_for(MDD_TARGET, n), comp.at_upper().seeds_for(MDD_TARGET, n)
        clips = comp.clips_for(MDD_TARGET, s)
        lines.append("| " + " | ".join([
            label, f"{n:,}", f"{cmp.mdd * 100:.1f}", f"{math.sqrt(comp.seed) * 100:.1f}", f"{clip_se * 100:.1f}",
            comp.limited_by(s, n), f"{seeds_text(k)} ({seeds_text(k_up)})",
            f"{clips:,}" if clips is not None else "none: the seeds' part alone exceeds it"]) + " |")
    n = rows[0][2].n_clips
    lines += ["", f"How the smallest detectable difference would shrink, from the variance components of each "
              f"comparison's per-clip differences over these {s} seeds x {n:,} test clips (`avsf.stats.Components`: "
              "SE² = seed-to-seed variance / seeds + (clip variance + seed x clip variance / seeds) / clips, "
              "Student's t on seeds - 1 degrees of freedom for the seed part, as the intervals above). The seed "
              f"spread is estimated from {s - 1} degree{'s' if s != 2 else ''} of freedom: the number in brackets "
              "is the seeds needed if it is at its one-sided 80 % upper bound. \"Limited mostly by\" names the part "
              "that leaves the larger MDD when the other lever is made unlimited. A comparison limited by the test "
              "clips gains from more of them (they cost evaluation only"
              + ("; `data.synth_test_per_class` sizes the built-in benchmark's test split without changing its "
                 "training clips" if synth else "")
              + "); one limited by the seeds gains only from retraining.", ""]
    variants = [comp for label, _, comp in rows if not label.startswith("claim:")]
    factor = 4 if synth else 1
    plan = _joint_plan(variants, n, most_clips_factor=factor)
    # the same plan if every seed spread is at its upper bound: from few seeds the point estimate
    # has been optimistic (docs/studies.md, "Power at this budget"), so a reader plans with both
    upper = _joint_plan([c.at_upper() for c in variants], n, most_clips_factor=factor)
    if plan is not None:
        seeds, clips = plan
        lines.append(f"For every variant against the baseline at once (claims aside): about {seeds} seeds"
                     + (f" and {clips:,} test clips" if synth else f" on these {n:,} test clips")
                     + " at the seed spreads' point estimates, "
                     + (f"{upper[0]} seeds" + (f" and {upper[1]:,} test clips" if synth else "")
                        if upper is not None else f"more than {st.MOST_SEEDS} seeds")
                     + " at their upper bounds"
                     + (f"; `avsf study run` with `--seeds N` on this study's folder adds the missing seeds "
                        "and keeps the finished runs" if seeds > s else "") + ".")
        lines.append("")
    return lines


SPREAD_MIN_SEEDS = 5
"""Seeds from which the report splits a seed spread by class group: from 3 (2 degrees of freedom)
the shares came out as noise (a group with the largest part but a negative share)."""


def spread_lines(data: ReportData) -> list[str]:
    """Which class group carries each variant's seed-to-seed spread against the baseline (top-1
    studies on class-grouped benchmarks, `SPREAD_MIN_SEEDS` or more; `Evidence.spread_by_group`): the part
    of the MDD that only more seeds, or a benchmark learned more reliably, can reduce."""
    ev = data.evidence
    if ev is None or data.metric != "top1" or ev.kind != "single" or len(ev.groups) < 2:
        return []
    seeds = len(ev.seeds_of(ev.baseline))
    if seeds < SPREAD_MIN_SEEDS:
        return [f"The seed spread is not split by class group here: {seeds} seed{'s' if seeds != 1 else ''} "
                f"give{'s' if seeds == 1 else ''} a variance of {max(seeds - 1, 0)} degree"
                f"{'s' if seeds != 2 else ''} of freedom, which splits into noise; the report does it from "
                f"{SPREAD_MIN_SEEDS} seeds on.", ""]
    rows = [(data.named(row), out) for row in data.rows if row.name != ev.baseline
            and (out := ev.spread_by_group(row.name, ev.baseline)) is not None]
    if not rows:
        return []
    shown = [k[5:] for k in ev.keys if k.startswith("top1_") and k[5:] in ev.groups]  # the group table's order
    groups = shown + [g for g in ev.groups if g not in shown]
    lines = ["| comparison | SD of the per-seed differences (points) | "
             + " | ".join(groups) + " |",
             "|---|" + "---:|" * (len(groups) + 1)]
    for label, (sd, parts) in rows:
        lines.append(f"| {label} | {100 * sd:.1f} | "
                     + " | ".join(f"{100 * parts[g][0]:.1f} ({100 * parts[g][1]:.0f} %)" for g in groups) + " |")
    top = []
    for label, (_, parts) in rows:
        g = max(groups, key=lambda k: parts[k][0])
        top.append(f"{label}: {g} ({100 * parts[g][0]:.1f} points, {100 * parts[g][1]:.0f} %)")
    offset = any(q < -0.1 for _, (_, parts) in rows for _, q in parts.values())
    return ["Where each variant's seed-to-seed spread against the baseline comes from: the SD of the "
            "per-seed top-1 differences, and in each class group's column the SD of its part of them (its clips' "
            "contribution to the difference, points) with its share of their variance in brackets (the part's "
            "covariance with the whole over the whole's variance; the shares sum to 100 %; "
            "`avsf.stats.spread_shares`):", "", *lines,
            "", "Largest part: " + "; ".join(top) + ". More test clips do not reduce this spread; more seeds "
            "average it, and the group that carries it is the one whose learning varies from training to "
            "training."
            + (" A negative share marks groups that offset each other (trainings that do better on one do worse "
               "on the other); the others' shares then exceed what they alone would carry." if offset else ""), ""]


def _joint_plan(comps: list[st.Components], n_clips: int, most_clips_factor: int = 4) -> tuple[int, int] | None:
    """The fewest seeds, then the fewest test clips (at most `most_clips_factor` x today's), that
    bring every comparison's projected MDD to `MDD_TARGET`; None when no such pair exists."""
    if not comps:
        return None
    for seeds in range(2, st.MOST_SEEDS + 1):
        need = [c.clips_for(MDD_TARGET, seeds, most=most_clips_factor * n_clips) for c in comps]
        if all(x is not None for x in need):
            return seeds, max(n_clips, *need)
    return None


def convergence_section(data: ReportData) -> list[str]:
    runs = [r for row in data.rows for r in row.runs]
    if not runs:
        return []
    states = [(r, converged(r)) for r in runs]
    if all(s is None for _, s in states):
        return ["## Convergence", "", "The runs did not record whether they converged (result.json `converged`, "
                "written by the current avsf); read the learning curves.", ""]
    bad = [r for r, s in states if s is False]
    lines = ["## Convergence", "", f"{sum(s is True for _, s in states)} of {len(runs)} finished runs converged (their "
             "validation metric stopped improving: no gain above the tolerance in the last evaluations; "
             "`train.plateau_window`, `train.plateau_tol`)."]
    if bad:
        lines.append("Not converged: " + ", ".join(
            f"{r.variant} seed{r.seed}" + (f" (stopped at epoch {int(r.number('stopped_epoch'))})"
                                           if r.number("stopped_epoch") is not None else "") for r in bad)
            + ". Conclusions that rest on them are marked above.")
    unknown = [r for r, s in states if s is None]
    if unknown:
        lines.append("Not recorded: " + ", ".join(f"{r.variant} seed{r.seed}" for r in unknown) + ".")
    return lines + [""]


def provenance_section(data: ReportData) -> list[str]:
    rp = runs_provenance([r for row in data.rows for r in row.runs])
    lines = ["## Provenance", "", f"This report: {describe(code_provenance())}."]
    if rp.commits:
        lines.append("Runs: " + "; ".join(
            f"{n} run{'s' if n != 1 else ''} at commit {c[:10] if c else 'unknown'}" for c, n in rp.commits.most_common())
            + (f" (avsf {', '.join(sorted(rp.versions))})" if rp.versions else "") + ".")
    time = rp.time_text()
    if time:
        lines.append(f"Time: {time}.")
    lines += [f"**Warning:** {w}." for w in rp.warnings()]
    return lines + [""]


def _figure_lines(figures: list[Figure], gain: dict | None) -> list[str]:
    lines = ["## Figures", ""] if figures else []
    for f in figures:
        png = next((p for p in f.paths if p.suffix == ".png"), f.paths[0])
        pdf = next((p for p in f.paths if p.suffix == ".pdf"), None)
        lines += [f"### {f.title}", "", f"![{f.title}]({png.name})", "", f.caption + (f" ([PDF]({pdf.name}))" if pdf else ""), ""]
        if f.key == "per_class_gain" and gain:
            lines += [gain["text"], ""]
    return lines


def _header(data: ReportData) -> list[str]:
    spec, rec = data.spec, data.record
    c = rec.counts()
    lines = [f"# {spec.title} ({paper_ref(spec.paper_table)})", ""]
    if spec.description:
        lines += [" ".join(spec.description.split()), ""]
    for name in ("hypothesis", "mechanism"):
        text = data.text_of(name)
        if text:
            lines += [f"**{name.capitalize()}.** {text}", ""]
    lines += [
        f"Study `{spec.name}` from `{rec.path}`: {len(spec.variants)} variants at {data.scale_text()} on "
        f"{dataset_text(data)}; {c['done']} of {len(rec.runs)} runs finished"
        + (f", {c['failed']} failed" if c["failed"] else "")
        + (f", {c['partial']} partial" if c["partial"] else "")
        + (f", {c['pending']} pending" if c["pending"] else "")
        + ". Every number below is read from the run folders (result.json, predictions.json, metrics.jsonl, "
        "per_class.json); accuracies are in percent.",
        "",
    ]
    return lines


def write_summary(data: ReportData, out_dir: Path, figures: list[Figure], gain: dict | None, files: list[Path]) -> Path:
    spec, rec = data.spec, data.record
    lines = _header(data) + ["## Result", "", *[f"- {s}" for s in verdict(data)], ""]
    lines += claims_section(data)
    lines += statistics_section(data)
    lines += ["## Table", "", "Ours: mean ± standard deviation over seeds, from result.json.", "", markdown_table(data), ""]
    if spec.notes:
        lines += [f"*{spec.notes}*", ""]
    lines += [f"Paper columns: the paper's numbers for the same row ({data.paper_setup}). "
              "Ours: GFLOPs counted by the code for one clip at this scale's input size"
              + (f", times the {data.views} test views per video." if data.spec.paper_views and data.views else "."), ""]
    gt = group_table(data) if data.evidence is None else None
    if gt:
        lines += ["### Accuracy per class group", "", "The synthetic benchmark's classes are told apart by what they "
                  "look like (visual), what they sound like (audio), or by sound and motion being in sync (sync).",
                  "", gt, ""]
    lines += _figure_lines(figures, gain)
    lines += convergence_section(data)
    missing = [r for r in rec.runs if r.state != "done"]
    if missing:
        lines += ["## Not finished", ""]
        lines += [f"- {r.variant} seed{r.seed}: {r.state}" + (f" ({r.error})" if r.error else "") for r in missing]
        lines += ["", "Finish them with `avsf study run` on the same study (finished runs are skipped).", ""]
    lines += provenance_section(data)
    lines += ["## Files", "", *[f"- [`{p.name}`]({p.name})" for p in files], ""]
    path = out_dir / "summary.md"
    atomic_write_text(path, "\n".join(lines))
    return path
