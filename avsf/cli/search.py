"""`avsf search STUDY.toml`: an Optuna search (e.g. Pd x beta_A), one training run per trial."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from avsf.cli.common import add_progress_flag, add_scale_option, add_set_option, non_negative_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        description=(
            "Create, join or continue the Optuna study a search file declares. Without --trials "
            "this worker runs trials until the study holds the file's `trials` finished trials; "
            "workers started together on one storage share that target. With --trials N this "
            "worker runs exactly N more trials."
        ),
    )
    p.add_argument("spec", metavar="STUDY.toml", help="search file, e.g. studies/search_pd_beta.toml")
    add_scale_option(p, default_text="the file's default_scale")
    p.add_argument("--trials", type=non_negative_int, default=None, metavar="N",
                   help="trials THIS worker runs now (default: run until the study reaches the file's target)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna RDB URL, e.g. postgresql://user:pw@host/db to join workers on several "
                        "machines (default: sqlite:///<out>/optuna.db)")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default: runs/<name>)")
    add_set_option(p, applies_to="every trial")
    add_progress_flag(p)
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary as the last line (accuracies as fractions 0..1, as Optuna stores them)")
    p.set_defaults(func=main)


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    from avsf.study.search import format_summary, load_search, run_search

    spec = load_search(args.spec)
    # A scheduler's SIGTERM (preemption) ends the worker like Ctrl-C: its running trial is
    # failed and re-queued at once instead of waiting out the heartbeat grace period.
    # The previous handler comes back afterwards: main() also runs inside longer processes (tests,
    # notebooks), whose later children would otherwise inherit this one.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        res = run_search(
            spec,
            scale=args.scale,
            trials=args.trials,
            storage=args.storage,
            out=args.out,
            overrides=args.overrides,
            progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(format_summary(res.summary), file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.json:
        print(json.dumps(res.summary, default=str), flush=True)
    return 0
