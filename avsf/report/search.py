"""Report of an Optuna search (`avsf report runs/<search>`): what the search found and what it cost.

Writes into `out_dir`:
  pareto.png/.pdf       accuracy vs GFLOPs of every finished trial, the Pareto front marked
                        (two objectives: optuna's plot_pareto_front; one objective: a scatter
                        with the GFLOPs budget)
  history.png/.pdf      optimisation history of validation top-1 (optuna)
  importances.png/.pdf  parameter importances (optuna; needs >= 2 complete trials whose
                        parameters vary, otherwise skipped with a note in summary.md)
  best_trials.tex/.csv  the Pareto-optimal trials (or the best one, then the runners-up), booktabs
  trials.csv            every trial: number, state, parameters, numbers, run folder
  summary.md            the above in words
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from avsf.io import atomic_savefig, atomic_write_text

PARAM_LATEX = {"drop_pathway": r"$P_d$", "beta_a": r"$\beta_A$"}
TOP_RUNNERS_UP = 5  # single objective: the best trial and this many behind it


def _savefig(ax_or_axes: Any, out_dir: Path, stem: str) -> list[str]:
    import matplotlib.pyplot as plt

    ax = ax_or_axes
    if hasattr(ax, "flat"):
        ax = ax.flat[0]
    elif isinstance(ax, (list, tuple)):
        ax = ax[0]
    fig = ax.figure
    fig.tight_layout()
    names = []
    for ext in ("png", "pdf"):
        atomic_savefig(fig, out_dir / f"{stem}.{ext}", dpi=150)
        names.append(f"{stem}.{ext}")
    plt.close(fig)
    return names


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


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        s = s.replace(a, b)
    return s


def _pct(v: float | None) -> float | None:
    """Top-1 as a percentage for tables (the trainer's numbers are fractions in [0, 1])."""
    if v is None:
        return None
    return v * 100 if v <= 1.0 else v


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
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.trial import TrialState

    from avsf.study.search import best_trials

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta, study, url = open_search(run_dir, storage)
    multi = len(study.directions) > 1
    all_trials = study.get_trials(deepcopy=False)
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    space = dict(meta.get("space_order") or meta.get("space") or {})  # the file's order
    params = list(space) or sorted({k for t in complete for k in t.params})
    written: list[str] = []
    notes: list[str] = []
    acc_i = next((i for i, o in enumerate(meta.get("objectives") or []) if not o.startswith("gflops")), 0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        vis = optuna.visualization.matplotlib
        # ---- Pareto front: accuracy vs GFLOPs --------------------------------------------
        if complete:
            if multi:
                names = [("val top-1" if not o.startswith("gflops") else "GFLOPs")
                         for o in meta.get("objectives", ["val_top1", "gflops"])]
                ax = vis.plot_pareto_front(study, target_names=names)
                ax.set_title(f"{study.study_name}: Pareto front")
            else:
                ax = _scatter_budget(complete, meta)
            written += _savefig(ax, out_dir, "pareto")
            # ---- optimisation history --------------------------------------------------------
            if multi:
                ax = vis.plot_optimization_history(study, target=lambda t: t.values[acc_i], target_name="val top-1")
            else:
                ax = vis.plot_optimization_history(study, target_name="val top-1")
            ax.set_title(f"{study.study_name}: optimisation history")
            written += _savefig(ax, out_dir, "history")
        else:
            notes.append("No complete trial yet: no Pareto front or history.")
        # ---- parameter importances ---------------------------------------------------------------
        varying = [p for p in params if len({t.params.get(p) for t in complete}) > 1]
        if len(complete) >= 2 and varying:
            try:
                if multi:
                    # PED-ANOVA ranks params by how they reach LOW target values: negate accuracy.
                    warnings.filterwarnings("ignore", message=".*importances of params to achieve low")
                    ax = vis.plot_param_importances(study, target=lambda t: -t.values[acc_i],
                                                    target_name="val top-1")
                else:
                    ax = vis.plot_param_importances(study, target_name="val top-1")
                ax.set_title(f"{study.study_name}: parameter importances for val top-1", loc="left")
                written += _savefig(ax, out_dir, "importances")
            except Exception as e:  # noqa: BLE001 - few trials can defeat the evaluator
                import matplotlib.pyplot as plt

                plt.close("all")
                notes.append(f"Parameter importances skipped: {type(e).__name__}: {e}")
        else:
            notes.append(f"Parameter importances skipped: they need >= 2 complete trials with varying "
                         f"parameters ({len(complete)} complete).")

    # ---- tables ---------------------------------------------------------------------------------
    best = best_trials(study)
    if not multi and complete:
        ranked = sorted(complete, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
        best = ranked[: 1 + TOP_RUNNERS_UP]
    best = sorted(best, key=lambda t: -(_val_top1(t, meta) or -math.inf))
    header = ["trial", *params, "val_top1", "gflops", "params_m", "top1", "run_dir"]
    rows = [[t.number, *[t.params.get(p) for p in params], _val_top1(t, meta), _gflops(t),
             t.user_attrs.get("params_m"), t.user_attrs.get("top1"), t.user_attrs.get("run_dir")] for t in best]
    _write_csv(out_dir / "best_trials.csv", header, rows)
    all_rows = [[t.number, t.state.name, *[t.params.get(p) for p in params], _val_top1(t, meta) if t.values else None,
                 _gflops(t), t.user_attrs.get("run_dir"), t.user_attrs.get("pruned_reason") or t.user_attrs.get("error")]
                for t in all_trials]
    _write_csv(out_dir / "trials.csv", ["trial", "state", *params, "val_top1", "gflops", "run_dir", "note"], all_rows)
    atomic_write_text(out_dir / "best_trials.tex", _latex_table(study.study_name, best, params, meta, multi))
    written += ["best_trials.csv", "trials.csv", "best_trials.tex"]

    # ---- summary ---------------------------------------------------------------------------------
    from avsf.study.search import public_url, summarize

    s = summarize(study, url=url)
    lines = [
        f"# Search `{study.study_name}`",
        "",
        (meta.get("spec") or {}).get("description", ""),
        "",
        f"- scale: {meta.get('scale')}; objectives: {', '.join(meta.get('objectives') or [])}"
        + (f"; GFLOPs budget {meta['gflops_budget']}" if meta.get("gflops_budget") is not None else ""),
        "- space: " + ", ".join(f"`{p}` -> `{k}`" for p, k in space.items()),
        f"- storage: {public_url(url)}",
        f"- trials: {s['n_complete']} complete, {s['n_pruned']} pruned, {s['n_fail']} failed, "
        f"{s['n_running']} running, {s['n_waiting']} waiting",
        "",
        "## " + ("Pareto-optimal trials" if multi else "Best trials"),
        "",
        "| trial | " + " | ".join(params) + " | val top-1 (%) | GFLOPs |",
        "|---" * (len(params) + 3) + "|",
    ]
    for t in best:
        lines.append(f"| {t.number} | " + " | ".join(_num(t.params.get(p)) for p in params)
                     + f" | {_num(_pct(_val_top1(t, meta)), 2)} | {_num(_gflops(t), 3)} |")
    lines += ["", "Files: " + ", ".join(f"`{w}`" for w in written)]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    atomic_write_text(out_dir / "summary.md", "\n".join(lines) + "\n")
    written.append("summary.md")
    return [out_dir / w for w in written]


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    atomic_write_text(path, buf.getvalue())


def _latex_table(name: str, trials: list[Any], params: list[str], meta: dict[str, Any], multi: bool) -> str:
    cols = "r" + "c" * len(params) + "rr"
    head = " & ".join(["Trial", *[PARAM_LATEX.get(p, _latex_escape(p)) for p in params], "Val top-1 (\\%)", "GFLOPs"])
    body = []
    for t in trials:
        cells = [str(t.number)]
        for p in params:
            v = t.params.get(p)
            cells.append(f"{v:.2f}" if isinstance(v, float) else _latex_escape(str(v)))
        cells += [_num(_pct(_val_top1(t, meta)), 1), _num(_gflops(t), 3)]
        body.append(" & ".join(cells) + r" \\")
    what = "Pareto-optimal trials (validation top-1 vs GFLOPs)" if multi else "Best trials by validation top-1"
    cap = f"{what} of search \\texttt{{{_latex_escape(name)}}} at scale {_latex_escape(str(meta.get('scale')))}."
    return "\n".join([
        r"% generated by avsf report (avsf/report/search.py); needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{cap}}}",
        f"\\label{{tab:{_latex_escape(name).replace(chr(92), '')}}}",
        f"\\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        head + r" \\",
        r"\midrule",
        *(body or [r"\multicolumn{%d}{c}{no complete trial yet} \\" % (len(params) + 3)]),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
        "",
    ])


def _scatter_budget(complete: list[Any], meta: dict[str, Any]) -> Any:
    """Single objective: val top-1 vs GFLOPs of each complete trial, the budget as a line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    xs = [_gflops(t) for t in complete]
    ys = [_val_top1(t, meta) for t in complete]
    ax.scatter(xs, ys, c=[t.number for t in complete], cmap="viridis")
    if meta.get("gflops_budget") is not None:
        ax.axvline(meta["gflops_budget"], color="tab:red", ls="--", label="GFLOPs budget")
        ax.legend()
    ax.set_xlabel("GFLOPs")
    ax.set_ylabel("val top-1")
    ax.set_title("accuracy vs GFLOPs")
    return ax
