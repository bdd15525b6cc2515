"""`avsf study run|status|list`: run a paper ablation (resumable) and see what is done."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avsf.cli.common import add_progress_flag, add_scale_option, add_set_option, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser("study", description="Run a declarative ablation study (studies/*.toml): every variant x seed "
                       "into its own run folder, resumable; see which runs are done; list the study files.")
    ssub = p.add_subparsers(dest="study_command", metavar="ACTION")
    ssub.required = True

    r = ssub.add_parser("run", help="train every variant x seed that has no result yet",
                        description="Train every variant x seed of a study that has no result yet, each into "
                        "runs/<study>/<variant>/seed<k>/; finished runs are skipped, partial ones resume. "
                        "Then `avsf report runs/<study>`.")
    r.add_argument("study", type=Path, help="a study file, e.g. studies/droppathway.toml")
    add_scale_option(r, default_text="the study's default_scale, small unless it says otherwise")
    r.add_argument("--seeds", type=positive_int, default=None,
                   help="number of seeds (default: the study's [scale.*] seeds)")
    r.add_argument("--out", type=Path, default=None, help="study folder (default: runs/<study name>)")
    r.add_argument("--variant", action="append", default=None, help="run only this variant (repeatable)")
    add_set_option(r, applies_to="every run")
    r.add_argument("--dry-run", action="store_true", help="print the plan and each run's state; train nothing")
    r.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                   help="start this many worker processes on this machine, each with its share of the cores "
                        "(train.num_threads = cores / N unless --set gives it); they split the runs (default 1; "
                        "auto: one per usable core, what `nox -s study_<name>` passes). "
                        "Workers on other machines sharing the study folder join by running the same command")
    r.add_argument("--worker", default="", metavar="NAME",
                   help="this worker's name in log lines and run claims (default: none; --workers names its own)")
    r.add_argument("--claim-ttl", type=positive_int, default=None, metavar="SECONDS",
                   help="seconds without a heartbeat after which another machine's claim on a run counts as dead "
                        "(default 600; machines' clocks must agree to well within it)")
    r.add_argument("--until-mdd", type=positive_float, default=None, metavar="POINTS",
                   help="after the study's seeds, add seeds until every variant's smallest detectable difference "
                        "against the baseline (the report's MDD on the study metric, in percentage points) is at "
                        "most POINTS, or --max-seeds is reached; each round goes to the seeds the measured "
                        "variance projects and measures again (docs/studies.md, \"Power\")")
    r.add_argument("--max-seeds", type=positive_int, default=20, metavar="N",
                   help="the most seeds --until-mdd adds up to (default 20)")
    add_progress_flag(r, deprecated=("--quiet",))
    r.set_defaults(func=_run)

    s = ssub.add_parser("status", help="which runs of a study are done, partial, failed or pending",
                        description="For each study folder: every variant x seed and its state (done, partial, "
                        "failed, pending), read from the run folders alone.")
    s.add_argument("target", nargs="*", type=Path, help="runs/NAME or STUDY.toml (default: every study under runs/)")
    s.set_defaults(func=_status)

    ls = ssub.add_parser("list", help="the study files in a folder, validated",
                         description="Load and validate every study file in FOLDER (search_*.toml left out) and "
                         "print its name, paper table, variants, seeds per scale and title.")
    ls.add_argument("folder", nargs="?", type=Path, default=Path("studies"),
                    help="folder holding the study files (default: studies)")
    ls.set_defaults(func=_list)


def _workers(text: str) -> int:
    """`--workers`: a positive integer, or `auto` = the cores this process may use (one
    single-threaded run per core is the fastest split measured at the small scale, docs/studies.md)."""
    if text == "auto":
        from avsf.cores import usable_cores

        return usable_cores()
    return positive_int(text)


_workers.__name__ = "'auto' or an integer >= 1"


def _run(args: argparse.Namespace) -> int:
    from avsf.study.runner import plan_study
    from avsf.study.spec import StudyError, load_study
    from avsf.study.store import run_state

    spec = load_study(args.study)
    out = args.out or Path("runs") / spec.name
    if args.dry_run:
        plan = plan_study(spec, out, scale=args.scale, seeds=args.seeds, overrides=args.overrides, variants=args.variant)
        print(f"study {spec.name} (scale {args.scale or spec.default_scale}) -> {out}: {len(plan)} runs")
        for p in plan:
            print(f"  {p.variant:<16} seed{p.seed}  {run_state(p.path):<8} epochs {p.cfg.train.epochs}  {p.path}")
        return 0
    if args.until_mdd is None:
        return _run_round(args, spec, out)
    if args.variant:
        raise StudyError("--until-mdd sizes the whole study against its baseline: leave out --variant")
    return _until_mdd(args, spec, out)


def _run_round(args: argparse.Namespace, spec, out: Path) -> int:
    """Every run of the study at `args.seeds` seeds: in this process, or in `--workers` processes."""
    from avsf.study.runner import run_study, run_workers

    if args.workers > 1:
        return run_workers(args.workers, _worker_args(args, out))
    outcome = run_study(
        spec,
        out,
        scale=args.scale,
        seeds=args.seeds,
        overrides=args.overrides,
        variants=args.variant,
        progress=False if args.no_progress else None,
        worker=args.worker,
        claim_ttl_s=args.claim_ttl,
    )
    if not outcome.ok:
        print(f"avsf study: {len(outcome.failed)} run(s) failed; see `avsf study status {out}`", file=sys.stderr)
        return 1
    return 0


def _until_mdd(args: argparse.Namespace, spec, out: Path) -> int:
    """Rounds of `_run_round`, each at the seeds the last one's variance projects
    (avsf.report.power), until every variant's MDD is at most --until-mdd points or the
    seeds reach --max-seeds. The finished runs of earlier rounds are kept, as `--seeds N` does."""
    from avsf.report.power import power_table, study_power
    from avsf.study.spec import StudyError

    target = args.until_mdd / 100
    args.seeds = max(len(spec.seeds(args.scale, args.seeds)), 2)  # one seed has no spread to measure
    if args.seeds > args.max_seeds:
        raise StudyError(f"--max-seeds {args.max_seeds} is below the {args.seeds} seeds this study starts from")
    while True:
        rc = _run_round(args, spec, out)
        if rc:
            return rc
        power = study_power(out, target)
        print(f"avsf study: {spec.name} at {args.seeds} seeds, against MDD <= {args.until_mdd:g} points:\n"
              f"{power_table(power)}", file=sys.stderr, flush=True)
        if power.met:
            print(f"avsf study: every variant's MDD is at most {args.until_mdd:g} points at {args.seeds} seeds",
                  file=sys.stderr)
            return 0
        if args.seeds >= args.max_seeds:
            print(f"avsf study: not reached at --max-seeds {args.max_seeds}; the finished runs are kept: a larger "
                  f"--max-seeds goes on from them (the report's \"Power\" section projects what is needed)",
                  file=sys.stderr)
            return 0
        args.seeds = power.next_seeds(args.seeds, args.max_seeds)
        print(f"avsf study: going on to {args.seeds} seeds", file=sys.stderr, flush=True)


def _worker_args(args: argparse.Namespace, out: Path) -> list[str]:
    """`study run` arguments of one of `--workers N` local workers: the same study, no bars
    (N processes share the terminal), and a share of the cores unless --set gives the threads."""
    from avsf.study.runner import worker_threads

    cmd = ["study", "run", str(args.study), "--out", str(out), "--no-progress"]
    cmd += ["--scale", args.scale] if args.scale else []
    cmd += ["--seeds", str(args.seeds)] if args.seeds else []
    cmd += ["--claim-ttl", str(args.claim_ttl)] if args.claim_ttl else []
    for v in args.variant or []:
        cmd += ["--variant", v]
    sets = list(args.overrides)
    if not any(s.split("=", 1)[0].strip() == "train.num_threads" for s in sets):
        sets.append(f"train.num_threads={worker_threads(args.workers)}")
    for s in sets:
        cmd += ["--set", s]
    return cmd


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
        print(f"{spec.name:<16} {spec.paper_ref:<10} {len(spec.variants)} variants  ({scales})  {spec.title}")
    return 0
