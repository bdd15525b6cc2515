"""Report of an Optuna search (`avsf report runs/<search>`): what the search found and what it cost.

Writes into `out_dir`:
  pareto.png/.pdf       validation top-1 (%) vs GFLOPs of every finished trial, coloured by trial
                        number; the Pareto front (two objectives) or the best trials (one) marked,
                        the GFLOPs budget as a line
  history.png/.pdf      validation top-1 (%) per trial number and the best so far
  importances.png/.pdf  parameter importances (optuna.importance; needs >= 2 complete trials
                        whose parameters vary, otherwise skipped with a note in summary.md)
  best_trials.tex/.csv  the Pareto-optimal trials (or the best one, then the runners-up), booktabs;
  best_trials_standalone.tex   a document around the table (`pdflatex` checks it)
  trials.csv            every trial: number, state, parameters, numbers, run folder
  summary.md            the above in words

Figures share the study reports' style (`avsf.report.style`): percent, integer trial numbers.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from avsf.io import atomic_write_text
from avsf.report import style
from avsf.report.latex import plain, standalone, table_float, tex_escape, tex_label
from avsf.report.provenance import code_provenance, describe

PARAM_LATEX = {"drop_pathway": r"$P_d$", "beta_a": r"$\beta_A$"}
TOP_RUNNERS_UP = 5  # single objective: the best trial and this many behind it


def _param_name(p: str) -> str:
    """A parameter for Markdown: "Pd (drop_pathway)" when it has a math symbol, else its name."""
    return f"{plain(PARAM_LATEX[p])} (`{p}`)" if p in PARAM_LATEX else f"`{p}`"


def _save(fig: Any, out_dir: Path, stem: str) -> list[str]:
    return [p.name for p in style.save_figure(fig, out_dir, stem)]


def open_search(run_dir: Path, storage: str | None = None) -> tuple[dict[str, Any], Any, str]:
    """(search.json, the loaded study, storage URL). The URL: `storage`, else $AVSF_SEARCH_STORAGE,
    else what search.json names (the run folder's optuna.db by default)."""
    import optuna

    from avsf.study.search import SearchError, make_storage

    meta_path = Path(run_dir) / "search.json"
    if not meta_path.exists():
        raise SearchError(f"{run_dir} has no search.json: not a search run folder (run `avsf search` first)")
    meta = json.loads(meta_path.read_text())
    url = storage or os.environ.get("AVSF_SEARCH_STORAGE") or meta.get("storage") or "optuna.db"
    if "://" not in url:
        url = f"sqlite:///{(Path(run_dir) / url).resolve()}"
    if "***" in url:
        raise SearchError(f"{meta_path} names a storage with a hidden password ({url}); "
                          "pass the full URL (--storage or $AVSF_SEARCH_STORAGE)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = make_storage(url, (meta.get("spec") or {}).get("storage"))
    try:
        study = optuna.load_study(study_name=meta["name"], storage=store)
    except KeyError:
        raise SearchError(f"no study '{meta['name']}' in {url}") from None
    return meta, study, url


def _num(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "--"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _pct(v: float | None) -> float | None:
    """Top-1 as a percentage for tables (the trainer's numbers are fractions in [0, 1])."""
    if v is None:
        return None
    return round(v * 100, 4) if v <= 1.0 else v


def _val_top1(t: Any, meta: dict[str, Any]) -> float | None:
    objs = meta.get("objectives") or []
    for i, o in enumerate(objs):
        if o.split(":")[0] in ("val_top1", "top1") and t.values is not None:
            return float(t.values[i])
    v = t.user_attrs.get("val_top1")
    return float(v) if v is not None else None


def _gflops(t: Any) -> float | None:
    v = t.user_attrs.get("gflops")
    return float(v) if v is not None else None


def write_search_report(run_dir: str | Path, out_dir: str | Path, *, storage: str | None = None) -> list[Path]:
    """Write the search report of `run_dir` (which holds search.json) into `out_dir`."""
    from optuna.trial import TrialState

    from avsf.study.search import best_trials

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    meta, study, url = open_search(run_dir, storage)
    out_dir.mkdir(parents=True, exist_ok=True)
    multi = len(study.directions) > 1
    all_trials = study.get_trials(deepcopy=False)
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    space = dict(meta.get("space_order") or meta.get("space") or {})  # the file's order
    params = list(space) or sorted({k for t in complete for k in t.params})
    acc_i = next((i for i, o in enumerate(meta.get("objectives") or []) if not o.startswith("gflops")), 0)
    best = best_trials(study)
    if not multi and complete:
        ranked = sorted(complete, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
        best = ranked[: 1 + TOP_RUNNERS_UP]
    best = sorted(best, key=lambda t: -(_val_top1(t, meta) or -math.inf))

    written, notes = _figures(study, complete, best, params, meta, acc_i, out_dir)
    written += _tables(study, all_trials, best, params, meta, multi, out_dir)
    _summary(study, url, meta, space, params, best, multi, written, notes, out_dir)
    written.append("summary.md")
    return [out_dir / w for w in written]


def _figures(study: Any, complete: list, best: list, params: list[str], meta: dict, acc_i: int,
             out_dir: Path) -> tuple[list[str], list[str]]:
    written: list[str] = []
    notes: list[str] = []
    if complete:
        written += _save(_pareto_figure(study, complete, best, meta), out_dir, "pareto")
        written += _save(_history_figure(study, complete, meta), out_dir, "history")
    else:
        notes.append("No complete trial yet: no Pareto front or history.")
    varying = [p for p in params if len({t.params.get(p) for t in complete}) > 1]
    if len(complete) >= 2 and varying:
        try:
            importances = _importances(study, acc_i)
        except Exception as e:  # noqa: BLE001 - few trials can defeat the evaluator
            notes.append(f"Parameter importances skipped: {type(e).__name__}: {e}")
        else:
            written += _save(_importance_figure(study, importances), out_dir, "importances")
    else:
        notes.append(f"Parameter importances skipped: they need >= 2 complete trials with varying "
                     f"parameters ({len(complete)} complete).")
    return written, notes


def _importances(study: Any, acc_i: int) -> dict[str, float]:
    """optuna.importance's default evaluator (PED-ANOVA), on validation top-1."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if len(study.directions) > 1:
            # with a target, PED-ANOVA ranks params by how they reach LOW values: negate accuracy
            warnings.filterwarnings("ignore", message=".*importances of params to achieve low")
            return optuna.importance.get_param_importances(study, target=lambda t: -t.values[acc_i])
        return optuna.importance.get_param_importances(study)


def _pareto_figure(study: Any, complete: list, best: list, meta: dict) -> Any:
    """Val top-1 (%) vs GFLOPs, coloured by trial number; the Pareto front (or the best trials)
    ringed and joined; the GFLOPs budget as a dashed line."""
    pts = [(t, _gflops(t), _pct(_val_top1(t, meta))) for t in complete]
    pts = [(t, x, y) for t, x, y in pts if x is not None and y is not None]
    multi = len(study.directions) > 1
    with style.styled():
        fig, axes = style.new_figure(size=(5.2, 3.8))
        ax = axes[0][0]
        if pts:
            sc = ax.scatter([x for _, x, _ in pts], [y for *_, y in pts], c=[t.number for t, *_ in pts],
                            cmap="viridis", s=28, zorder=3)
            bar = fig.colorbar(sc, ax=ax, label="trial number")
            style.integer_ticks(bar.ax.yaxis)
            front = sorted((x, y) for t, x, y in pts if t in best)
            ax.plot([x for x, _ in front], [y for _, y in front], "o-" if multi else "o", mfc="none", mec="tab:red",
                    color="tab:red", ms=10, lw=1, zorder=2, label="Pareto front" if multi else "best trials")
        if meta.get("gflops_budget") is not None:
            ax.axvline(meta["gflops_budget"], color="0.3", ls="--", label="GFLOPs budget")
        ax.set_xlabel("GFLOPs per clip")
        ax.set_ylabel(style.percent_label("val top-1"))
        ax.set_title(f"{study.study_name}: accuracy vs GFLOPs")
        ax.legend(loc="best")
    return fig


def _history_figure(study: Any, complete: list, meta: dict) -> Any:
    pts = sorted((t.number, _pct(_val_top1(t, meta))) for t in complete if _val_top1(t, meta) is not None)
    with style.styled():
        fig, axes = style.new_figure(size=(5.2, 3.4))
        ax = axes[0][0]
        ax.plot([n for n, _ in pts], [v for _, v in pts], "o", label="trial")
        best = list(itertools.accumulate((v for _, v in pts), max))
        ax.step([n for n, _ in pts], best, where="post", color="tab:red", label="best so far")
        style.integer_ticks(ax.xaxis)
        ax.set_xlabel("trial number")
        ax.set_ylabel(style.percent_label("val top-1"))
        ax.set_title(f"{study.study_name}: optimisation history")
        ax.legend(loc="best")
    return fig


def _importance_figure(study: Any, importances: dict[str, float]) -> Any:
    names = list(importances)[::-1]  # largest on top
    with style.styled():
        fig, axes = style.new_figure(size=(5.2, 0.5 * len(names) + 1.6))
        ax = axes[0][0]
        vals = [100 * importances[n] for n in names]
        ax.barh([PARAM_LATEX.get(n, n) for n in names], vals, color=style.palette(1)[0])
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.0f}%", va="center", fontsize=8)
        ax.set_xlim(0, 115)
        ax.set_xlabel("share of the importance for val top-1 (%)")
        ax.set_title(f"{study.study_name}: parameter importances")
    return fig


def _tables(study: Any, all_trials: list, best: list, params: list[str], meta: dict, multi: bool,
            out_dir: Path) -> list[str]:
    # accuracies in percent, as everywhere people read them; the column names say so
    header = ["trial", *params, "val_top1_pct", "gflops", "params_m", "top1_pct", "run_dir"]
    rows = [[t.number, *[t.params.get(p) for p in params], _pct(_val_top1(t, meta)), _gflops(t),
             t.user_attrs.get("params_m"), _pct(t.user_attrs.get("top1")), t.user_attrs.get("run_dir")] for t in best]
    _write_csv(out_dir / "best_trials.csv", header, rows)
    all_rows = [[t.number, t.state.name, *[t.params.get(p) for p in params], _pct(_val_top1(t, meta)) if t.values else None,
                 _gflops(t), t.user_attrs.get("run_dir"), t.user_attrs.get("pruned_reason") or t.user_attrs.get("error")]
                for t in all_trials]
    _write_csv(out_dir / "trials.csv", ["trial", "state", *params, "val_top1_pct", "gflops", "run_dir", "note"], all_rows)
    atomic_write_text(out_dir / "best_trials.tex", _latex_table(study.study_name, best, params, meta, multi))
    atomic_write_text(out_dir / "best_trials_standalone.tex", standalone("\\input{best_trials.tex}"))
    return ["best_trials.csv", "trials.csv", "best_trials.tex", "best_trials_standalone.tex"]


def _summary(study: Any, url: str, meta: dict, space: dict, params: list[str], best: list, multi: bool,
             written: list[str], notes: list[str], out_dir: Path) -> None:
    from avsf.study.search import public_url, summarize

    s = summarize(study, url=url)
    lines = [
        f"# Search `{study.study_name}`",
        "",
        (meta.get("spec") or {}).get("description", ""),
        "",
        f"- scale: {meta.get('scale')}; objectives: {', '.join(meta.get('objectives') or [])}"
        + (f"; GFLOPs budget {meta['gflops_budget']}" if meta.get("gflops_budget") is not None else ""),
        "- space: " + ", ".join(f"{_param_name(p)} -> `{k}`" for p, k in space.items()),
        f"- storage: {public_url(url)}",
        f"- trials: {s['n_complete']} complete, {s['n_pruned']} pruned, {s['n_fail']} failed, "
        f"{s['n_running']} running, {s['n_waiting']} waiting",
        f"- produced by {describe(code_provenance())}",
        "",
        "## " + ("Pareto-optimal trials" if multi else "Best trials"),
        "",
        "| trial | " + " | ".join(plain(PARAM_LATEX.get(p, p)) for p in params) + " | val top-1 (%) | GFLOPs |",
        "|---" * (len(params) + 3) + "|",
    ]
    for t in best:
        lines.append(f"| {t.number} | " + " | ".join(_num(t.params.get(p)) for p in params)
                     + f" | {_num(_pct(_val_top1(t, meta)), 1)} | {_num(_gflops(t), 3)} |")
    lines += ["", "Validation top-1 of one run per trial (no seeds, no intervals): differences between close trials "
              "are within run-to-run noise; confirm a choice with a study (`avsf study run`).",
              "", "Files: " + ", ".join(f"`{w}`" for w in written + ["summary.md"])]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    atomic_write_text(out_dir / "summary.md", "\n".join(lines) + "\n")


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    atomic_write_text(path, buf.getvalue())


def _latex_table(name: str, trials: list[Any], params: list[str], meta: dict[str, Any], multi: bool) -> str:
    head = " & ".join(["Trial", *[PARAM_LATEX.get(p, tex_escape(p)) for p in params], "Val top-1 (\\%)", "GFLOPs"])
    body = []
    for t in trials:
        cells = [str(t.number)]
        for p in params:
            v = t.params.get(p)
            cells.append(f"{v:.2f}" if isinstance(v, float) else tex_escape(str(v)))
        cells += [_num(_pct(_val_top1(t, meta)), 1), _num(_gflops(t), 3)]
        body.append(" & ".join(cells) + r" \\")
    what = "Pareto-optimal trials (validation top-1 vs GFLOPs)" if multi else "Best trials by validation top-1"
    cap = f"{what} of search \\texttt{{{tex_escape(name)}}} at scale {tex_escape(str(meta.get('scale')))}."
    tabular = [
        f"\\begin{{tabular}}{{r{'c' * len(params)}rr}}",
        r"\toprule",
        head + r" \\",
        r"\midrule",
        *(body or [r"\multicolumn{%d}{c}{no complete trial yet} \\" % (len(params) + 3)]),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    comment = f"generated by avsf report (avsf/report/search.py)\nProduced by {describe(code_provenance())}."
    return "\n".join(table_float(cap, f"tab:{tex_label(name)}", tabular, comment=comment))
