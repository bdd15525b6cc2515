"""`avsf study run|status|list`: run a paper ablation (resumable) and see what is done."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("study", description="Run a declarative ablation study (studies/*.toml): every variant x seed "
                       "into its own run folder, resumable; see which runs are done; list the study files.")
    ssub = p.add_subparsers(dest="study_command", metavar="ACTION")
    ssub.required = True

    r = ssub.add_parser("run", help="train every variant x seed that has no result yet")
    r.add_argument("study", type=Path, help="a study file, e.g. studies/droppathway.toml")
    r.add_argument("--scale", choices=("tiny", "small", "paper"), default=None, help="tiny | small | paper (default: the study's, small)")
    r.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the study's [scale.*] seeds)")
    r.add_argument("--out", type=Path, default=None, help="study folder (default: runs/<study name>)")
    r.add_argument("--variant", action="append", default=None, help="run only this variant (repeatable)")
    r.add_argument(
        "--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
        help="config override applied to every run, e.g. --set train.epochs=2 (repeatable)",
    )
    r.add_argument("--dry-run", action="store_true", help="print the plan and each run's state; train nothing")
    r.add_argument("--quiet", action="store_true", help="no per-step progress bars from the trainer")
    r.set_defaults(func=_run)

    s = ssub.add_parser("status", help="which runs of a study are done, partial, failed or pending")
    s.add_argument("target", nargs="*", type=Path, help="runs/NAME or STUDY.toml (default: every study under runs/)")
    s.set_defaults(func=_status)

    ls = ssub.add_parser("list", help="the study files in studies/ (validated)")
    ls.add_argument("folder", nargs="?", type=Path, default=Path("studies"))
    ls.set_defaults(func=_list)


def _run(args: argparse.Namespace) -> int:
    from avsf.study.runner import plan_study, run_study
    from avsf.study.spec import load_study
    from avsf.study.store import run_state

    spec = load_study(args.study)
    out = args.out or Path("runs") / spec.name
    if args.dry_run:
        plan = plan_study(spec, out, scale=args.scale, seeds=args.seeds, overrides=args.overrides, variants=args.variant)
        print(f"study {spec.name} (scale {args.scale or spec.default_scale}) -> {out}: {len(plan)} runs")
        for p in plan:
            print(f"  {p.variant:<16} seed{p.seed}  {run_state(p.path):<8} epochs {p.cfg.train.epochs}  {p.path}")
        return 0
    outcome = run_study(
        spec,
        out,
        scale=args.scale,
        seeds=args.seeds,
        overrides=args.overrides,
        variants=args.variant,
        progress=False if args.quiet else None,
    )
    if not outcome.ok:
        print(f"avsf study: {len(outcome.failed)} run(s) failed; see `avsf study status {out}`", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from avsf.study.runner import format_status
    from avsf.study.spec import load_study

    targets: list[Path] = []
    for t in args.target:
        if t.suffix == ".toml":
            targets.append(Path("runs") / load_study(t).name)
        else:
            targets.append(t)
    if not args.target:
        root = Path("runs")
        targets = sorted(p for p in root.iterdir() if (p / "study.json").exists()) if root.is_dir() else []
        if not targets:
            print("no studies under runs/ yet (run `avsf study run studies/<name>.toml`)")
            return 0
    code = 0
    for i, t in enumerate(targets):
        if i:
            print()
        try:
            print(format_status(t))
        except FileNotFoundError as e:
            print(f"avsf study status: {e}", file=sys.stderr)
            code = 1
    return code


def _list(args: argparse.Namespace) -> int:
    from avsf.study.spec import discover_studies, load_study

    for path in discover_studies(args.folder):
        spec = load_study(path)
        scales = ", ".join(f"{k}: {s.seeds} seeds" for k, s in spec.scales.items())
        print(f"{spec.name:<16} Table {spec.paper_table or '-':<4} {len(spec.variants)} variants  ({scales})  {spec.title}")
    return 0
