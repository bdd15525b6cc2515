"""Reports from finished runs: LaTeX table (booktabs), CSV, figures, summary.md.

    from avsf.report import write_report
    write_report("runs/droppathway")             # -> reports/droppathway/

Everything is regenerated from the study folder alone (runs/NAME); nothing is typed in.
A folder holding `search.json` (an Optuna search) is handed to `avsf.report.search`.
"""

from __future__ import annotations

from pathlib import Path


def default_out(run_dir: str | Path) -> Path:
    return Path("reports") / Path(run_dir).resolve().name


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the report of one study (or search) folder; returns the files written."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else default_out(run_dir)
    if (run_dir / "search.json").exists():
        from avsf.report.search import write_search_report

        written = write_search_report(run_dir, out)
        return list(written) if written else []
    return write_study_report(run_dir, out)


def write_study_report(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    from avsf.report.data import gather

    return write_report_of(gather(run_dir), out_dir)


def write_report_of(data, out_dir: str | Path) -> list[Path]:
    """Write the report of gathered study data (`avsf.report.data.gather`)."""
    from avsf.report.figures import write_figures
    from avsf.report.summary import write_summary
    from avsf.report.tables import write_tables

    out_dir = Path(out_dir)
    _ = data.evidence  # read and check every predictions.json before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_tables(data, out_dir)
    figures, gain = write_figures(data, out_dir)
    for f in figures:
        files += f.paths
    summary = write_summary(data, out_dir, figures, gain, files)
    return [*files, summary]


__all__ = ["default_out", "write_report", "write_report_of", "write_study_report"]
