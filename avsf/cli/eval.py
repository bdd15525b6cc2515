"""`avsf eval RUN_DIR [--views 10x3] [--compare OTHER_RUN]`."""

from __future__ import annotations

import argparse
import json
import os


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="multi-view test of a run; per-class differences between two runs",
        description="Multi-view testing of RUN_DIR's final model: softmax scores averaged over views "
        "(sigmoid + temporal max-pool for multi-label); top-1/top-5, mAP, per-group and per-class accuracy. "
        "Writes eval_TxS.json and per_class_TxS.json into RUN_DIR. With --compare OTHER, prints the "
        "per-class accuracy of RUN_DIR minus OTHER (e.g. AVSlowFast vs SlowFast: which classes gain from audio).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--views", default=None, metavar="TxS",
                   help="temporal x spatial views, e.g. 10x3 (default: the run's eval settings)")
    p.add_argument("--compare", default=None, metavar="OTHER_RUN",
                   help="print per-class accuracy differences RUN_DIR - OTHER_RUN (from their per_class files)")
    p.add_argument("--top", type=int, default=10, help="with --compare: classes shown at each end (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.add_argument("--no-fuse", action="store_true",
                   help="test the model as trained, without folding BatchNorm into the convs (the default folds "
                        "it: same scores to float rounding, faster)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, factories=None) -> int:
    """`factories` (avsf.factories.Factories) builds the model and loaders; tests pass toys."""
    from avsf.eval import compare_runs, evaluate
    from avsf.eval.evaluate import group_summary
    from avsf.run import RunDir

    kw = {"progress": not args.no_progress, "fuse": not args.no_fuse, "factories": factories}
    if args.compare:
        for run_dir in (args.run_dir, args.compare):
            if args.views and RunDir(run_dir).read_per_class(args.views) is None:
                evaluate(run_dir, args.views, **kw)
        rows = compare_runs(args.run_dir, args.compare, args.views)
        summary = group_summary(rows)
        if args.json:
            print(json.dumps({"classes": rows, "mean_diff_by_group": summary}, indent=2))
            return 0
        print(f"per-class top-1: {args.run_dir} minus {args.compare}")
        print(f"{'class':<28} {'group':<8} {'A':>7} {'B':>7} {'A-B':>7}")
        shown = rows if len(rows) <= 2 * args.top else rows[: args.top] + [None] + rows[-args.top:]
        for r in shown:
            if r is None:
                print("...")
                continue
            print(f"{r['class'][:28]:<28} {r['group']:<8} {r['a']:7.3f} {r['b']:7.3f} {r['diff']:+7.3f}")
        print("mean difference by group: " + ", ".join(f"{g} {v:+.3f}" for g, v in sorted(summary.items())))
        return 0
    metrics = evaluate(args.run_dir, args.views, **kw)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0
