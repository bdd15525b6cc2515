"""The paper-style LaTeX table (booktabs), its CSV twin, and a Markdown version for summary.md.

Layout follows the paper's ablation tables (first column = the row labels as the paper
prints them), with our mean +- std over seeds on the left and the paper's Kinetics-400
numbers on the right.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from avsf.io import atomic_write_text
from avsf.report.data import ReportData, Row, dataset_text, fmt, fmt_gflops, is_accuracy, metric_name
from avsf.report.latex import plain, standalone, table_float, tex_escape, tex_label
from avsf.report.provenance import code_provenance, describe

__all__ = ["tex_escape", "latex_table", "markdown_table", "group_table", "write_tables", "paper_ref"]


def paper_ref(table: str) -> str:
    if not table:
        return "the paper"
    if table[0].isdigit() or (len(table) > 1 and table[0].isalpha() and table[1] == "."):
        return f"Table {table}"
    return table


# accuracy columns in table order; EPIC's verb and noun heads follow the action's top1/top5 (Table 2)
TABLE_KEYS = ("top1", "top5", "mAP", "top1_verb", "top5_verb", "top1_noun", "top5_noun")
HEADS = {"top1": "top-1", "top5": "top-5", "mAP": "mAP", "gflops": "GFLOPs", "top1_verb": "verb top-1",
         "top5_verb": "verb top-5", "top1_noun": "noun top-1", "top5_noun": "noun top-5"}


def our_columns(data: ReportData) -> list[str]:
    """Accuracy columns shown for our runs: the metric first, then top-5 / mAP / verb / noun if measured."""
    cols = [data.metric]
    for k in TABLE_KEYS:
        if k in data.keys and k not in cols and any(r.stats[k].n for r in data.rows):
            cols.append(k)
    return cols


def paper_columns(data: ReportData) -> list[str]:
    cols = []
    for k in (*TABLE_KEYS, "gflops"):
        if any(k in v.paper for v in data.spec.variants):
            cols.append(k)
    return cols


def heads(data: ReportData) -> dict[str, str]:
    """Column names; with EPIC's verb and noun columns, top-1/top-5 are named the action's."""
    if any(k.endswith(("_verb", "_noun")) for k in (*our_columns(data), *paper_columns(data))):
        return {**HEADS, "top1": "action top-1", "top5": "action top-5", "gflops": gflops_head(data)}
    return {**HEADS, "gflops": gflops_head(data)}


def gflops_head(data: ReportData) -> str:
    return "GFLOPs × views" if data.spec.paper_views else "GFLOPs"


def gflops_cell(data: ReportData, gflops: float | None, *, paper: bool = False) -> str:
    """GFLOPs of one view, "× views" where the study's paper table gives its cost so (Tables 3, 4):
    the paper's with its views, ours with the runs' test views (eval.temporal_views x spatial_views)."""
    if paper:
        text = "–" if gflops is None else f"{gflops:g}"
    else:
        text = fmt_gflops(gflops)
    views = data.spec.paper_views if paper else data.views
    if data.spec.paper_views and gflops is not None and views:
        text += f" × {views}"
    return text


def _row_label_tex(row: Row) -> str:
    return row.variant.latex or tex_escape(row.label)


def _ordered(data: ReportData) -> tuple[list[Row], list[Row]]:
    main = [r for r in data.rows if not r.variant.reference]
    ref = [r for r in data.rows if r.variant.reference]
    return main, ref


def _best(data: ReportData, key: str) -> str | None:
    """The one best row of ours (bold); None when fewer than two rows or the best is tied."""
    rows = [r for r in data.rows if not r.variant.reference and r.mean(key) is not None]
    if len(rows) < 2:
        return None
    rows.sort(key=lambda r: r.mean(key), reverse=True)
    if round(rows[0].mean(key), 1) == round(rows[1].mean(key), 1):
        return None
    return rows[0].name


def latex_table(data: ReportData) -> str:
    spec = data.spec
    ours = our_columns(data)
    ev = data.evidence
    has_ci = ev is not None and any(v.interval.get(data.metric) for v in ev.variants.values())
    has_gflops = "gflops" in data.keys
    paper = paper_columns(data)
    n_ours = len(ours) + has_ci + has_gflops
    best = {k: _best(data, k) for k in ours}

    names = heads(data)

    def head(k: str) -> str:
        return tex_escape(names[k]) if k in names else tex_escape(metric_name(k))

    caption = (
        f"{tex_escape(spec.title)} ({tex_escape(paper_ref(spec.paper_table))}). "
        f"Ours: {tex_escape(dataset_text(data))}, {tex_escape(data.scale_text())}, "
        f"mean $\\pm$ std over {tex_escape(data.seeds_text())}"
        + (f"; 95\\% CI of {head(data.metric)}: paired hierarchical bootstrap over seeds and test clips" if has_ci else "")
        + "; accuracy in \\%, GFLOPs counted on one clip at the run's input size. "
        f"Paper: {tex_escape(data.paper_setup)}."
    )
    if spec.notes:
        caption += " " + tex_escape(spec.notes)
    groups = [f"\\multicolumn{{{n_ours}}}{{c}}{{ours}}"]
    rules = [f"\\cmidrule(lr){{2-{1 + n_ours}}}"]
    if paper:
        groups.append(f"\\multicolumn{{{len(paper)}}}{{c}}{{paper ({tex_escape(data.paper_data)})}}")
        rules.append(f"\\cmidrule(lr){{{2 + n_ours}-{1 + n_ours + len(paper)}}}")
    cols = ([head(data.metric)] + (["95\\% CI"] if has_ci else []) + [head(k) for k in ours[1:]]
            + ([head("gflops")] if has_gflops else []) + [head(k) for k in paper])

    def body(row: Row) -> str:
        cells = [_row_label_tex(row)]
        for i, k in enumerate(ours):
            cell = fmt(row.stats.get(k), pm=" $\\pm$ ").replace("–", "--")
            cells.append(f"\\textbf{{{cell}}}" if best.get(k) == row.name else cell)
            if i == 0 and has_ci:
                iv = ev.variants[row.name].interval.get(k)
                cells.append(f"[{iv.low * 100:.1f}, {iv.high * 100:.1f}]" if iv else "--")
        if has_gflops:
            cells.append(tex_escape(gflops_cell(data, row.mean("gflops"))).replace("–", "--"))
        cells += [tex_escape(gflops_cell(data, row.variant.paper.get(k), paper=True)) if k == "gflops"
                  else f"{row.variant.paper[k]:.1f}" if k in row.variant.paper else "--" for k in paper]
        return " & ".join(cells) + " \\\\"

    main, ref = _ordered(data)
    tabular = [f"\\begin{{tabular}}{{l{'c' * (n_ours + len(paper))}}}", "\\toprule",
               " & " + " & ".join(groups) + " \\\\", " ".join(rules),
               f"{spec.row_header or 'variant'} & " + " & ".join(cols) + " \\\\", "\\midrule",
               *map(body, main), *(["\\midrule", *map(body, ref)] if ref else []), "\\bottomrule", "\\end{tabular}"]
    comment = ("Generated by `avsf report` from runs/ alone; do not edit by hand.\n"
               f"Produced by {describe(code_provenance())}.")
    # more than 9 numbers a row (EPIC: three heads, ours and the paper's) do not fit a text width
    return "\n".join(table_float(caption, f"tab:{tex_label(spec.name)}", tabular, comment=comment,
                                  fit_width=n_ours + len(paper) > 9))


def csv_rows(data: ReportData) -> tuple[list[str], list[list]]:
    keys = data.keys
    header = ["variant", "label", "reference", "n_seeds", "n_planned"]
    for k in keys:
        header += [f"{k}_mean", f"{k}_std"]
    paper = paper_columns(data)
    header += [f"paper_{k}" for k in paper]
    rows = []
    for r in data.rows:
        n = max((s.n for s in r.stats.values()), default=0)
        line: list = [r.name, r.label, int(r.variant.reference), n, r.n_planned]
        for k in keys:
            s = r.stats[k]
            line += ["" if s.mean is None else round(s.mean, 6), "" if s.std is None else round(s.std, 6)]
        line += [r.variant.paper.get(k, "") for k in paper]
        rows.append(line)
    return header, rows


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def csv_text(data: ReportData) -> str:
    return _csv(*csv_rows(data))


def runs_csv_text(data: ReportData) -> str:
    """One line per finished run (variant x seed), display units; whether it converged (1/0,
    empty when not recorded), where it stopped, and the commit that produced it."""
    from avsf.report.evidence import converged

    rows = []
    for r in data.rows:
        for run in r.runs:
            vals = [run.number(k) for k in data.keys]
            vals = ["" if v is None else round(v * data.percent.get(k, 1.0), 6) for k, v in zip(data.keys, vals)]
            conv = converged(run)
            prov = run.result.get("provenance") if isinstance(run.result.get("provenance"), dict) else {}
            stop = [run.number(k) for k in ("stopped_epoch", "best_epoch")]
            rows.append([r.name, run.seed, *vals, "" if conv is None else int(conv),
                         *("" if v is None else int(v) for v in stop), prov.get("git_commit") or "",
                         "" if prov.get("git_dirty") is None else int(bool(prov.get("git_dirty")))])
    return _csv(["variant", "seed", *data.keys, "converged", "stopped_epoch", "best_epoch", "git_commit", "git_dirty"],
                rows)


def stats_csv_text(data: ReportData) -> str | None:
    """stats.csv: per variant and statistics key, the interval, the difference to the baseline
    with its interval, p, Holm p, MDD, SE, degrees of freedom, seeds, clips (percent points)."""
    ev = data.evidence
    if ev is None:
        return None
    header = ["variant", "key", "estimate", "low", "high", "baseline", "diff", "diff_low", "diff_high", "p", "p_holm",
              "mdd", "se", "df", "p_seed", "n_seeds", "n_clips"]
    rows = []
    pct = lambda x: "" if x is None or not math.isfinite(x) else round(100 * x, 4)  # noqa: E731
    for name, vs in ev.variants.items():
        for key in ev.keys:
            iv, c = vs.interval.get(key), vs.vs_base.get(key)
            line = [name, key, *(pct(getattr(iv, f, None)) for f in ("estimate", "low", "high")), ev.baseline]
            if c is not None:
                line += [pct(c.diff.estimate), pct(c.diff.low), pct(c.diff.high), round(c.p_value, 6),
                         round(vs.p_holm.get(key, math.nan), 6), pct(c.mdd), pct(c.se),
                         "inf" if math.isinf(c.df) else round(c.df, 2), round(c.p_seed, 6)]
            else:
                line += [""] * 9
            rows.append(line + [len(vs.seeds), ev.n_clips])
    return _csv(header, rows)


def markdown_table(data: ReportData) -> str:
    ours = our_columns(data)
    has_gflops = "gflops" in data.keys
    paper = paper_columns(data)
    names = heads(data)
    head = [plain(data.spec.row_header) or "variant"]
    head += [f"{names.get(k, metric_name(k))} (ours)" for k in ours]
    if has_gflops:
        head.append(f"{names['gflops']} (ours)")
    head += [f"{names.get(k, k)} (paper)" for k in paper]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    best = {k: _best(data, k) for k in ours}
    main, ref = _ordered(data)
    for r in main + ref:
        cells = [r.label + (" (reference)" if r.variant.reference else "")]
        for k in ours:
            c = fmt(r.stats.get(k))
            cells.append(f"**{c}**" if best.get(k) == r.name else c)
        if has_gflops:
            cells.append(gflops_cell(data, r.mean("gflops")))
        for k in paper:
            v = r.variant.paper.get(k)
            cells.append(gflops_cell(data, v, paper=True) if k == "gflops" else f"{v:.1f}" if v is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def group_table(data: ReportData) -> str | None:
    """Per-class-group top-1 (visual / audio / sync classes of the synthetic benchmark)."""
    gkeys = [k for k in data.keys if k.startswith("top1_") and is_accuracy(k)]
    if not gkeys:
        return None
    head = [plain(data.spec.row_header) or "variant"] + [metric_name(k) for k in gkeys]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(gkeys)) + "|"]
    for r in data.rows:
        lines.append("| " + " | ".join([r.label] + [fmt(r.stats.get(k)) for k in gkeys]) + " |")
    return "\n".join(lines)


def write_tables(data: ReportData, out_dir: Path) -> list[Path]:
    name = data.spec.name
    tex = out_dir / f"{name}.tex"
    atomic_write_text(tex, latex_table(data))
    sa = out_dir / f"{name}_standalone.tex"
    atomic_write_text(sa, standalone(f"\\input{{{name}.tex}}"))
    c = out_dir / f"{name}.csv"
    atomic_write_text(c, csv_text(data))
    rc = out_dir / "runs.csv"
    atomic_write_text(rc, runs_csv_text(data))
    files = [tex, sa, c, rc]
    stats = stats_csv_text(data)
    if stats is not None:
        atomic_write_text(out_dir / "stats.csv", stats)
        files.append(out_dir / "stats.csv")
    return files
