"""`avsf report runs/NAME [--out reports/NAME]`: tables, figures and summary from finished runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        description="Regenerates everything from runs/NAME alone. A folder holding search.json is an Optuna "
        "search and gets the search report.",
    )
    p.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR",
                   help="study folders, e.g. runs/droppathway (default with --all: every folder in runs/)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<NAME>; one RUN_DIR only)")
    p.add_argument("--all", action="store_true", help="report every study/search folder under runs/")
    p.set_defaults(func=_report)


def _is_study(p: Path) -> bool:
    return p.is_dir() and ((p / "study.json").exists() or (p / "search.json").exists())


def _report(args: argparse.Namespace) -> int:
    from avsf.report import default_out, write_report

    dirs = list(args.run_dirs)
    if args.all:
        root = Path("runs")
        dirs += sorted(p for p in root.iterdir() if _is_study(p)) if root.is_dir() else []
        if not dirs:
            print("avsf report: no study folders under runs/ yet; nothing to report")
            return 0
    if not dirs:
        print("avsf report: name a study folder (e.g. runs/droppathway) or pass --all", file=sys.stderr)
        return 2
    if args.out is not None and len(dirs) > 1:
        print("avsf report: --out takes one RUN_DIR", file=sys.stderr)
        return 2
    code = 0
    for d in dirs:
        out = args.out or default_out(d)
        try:
            files = write_report(d, out)
        except FileNotFoundError as e:
            print(f"avsf report: {e}", file=sys.stderr)
            code = 1
            continue
        print(f"avsf report: {d} -> {out}/ ({len(files)} files; see {out / 'summary.md'})")
    return code
