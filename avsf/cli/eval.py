"""`avsf eval RUN_DIR [--views 10x3] [--set k=v ...] [--compare OTHER_RUN]` and
`avsf eval --checkpoint FILE (--config FILE | --variant NAME) [--scale S] [--set k=v ...]`."""

from __future__ import annotations

import argparse
import json

from avsf.cli.common import add_progress_flag, add_scale_option, add_set_option, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        description="Multi-view testing of RUN_DIR's final model: softmax scores averaged over views "
        "(sigmoid + temporal max-pool for multi-label); top-1/top-5, mAP, per-group and per-class accuracy. "
        "Writes eval_<tag>.json and per_class_<tag>.json into RUN_DIR (tag: TxS, plus a hash of any --set). "
        "With --checkpoint FILE, tests a bare checkpoint (any layout avsf.weights reads) with the model "
        "--config/--variant describes, and writes nothing. With --compare OTHER, prints the per-class accuracy "
        "of RUN_DIR minus OTHER (e.g. AVSlowFast vs SlowFast: which classes gain from audio). Accuracies print "
        "in percent; --json prints fractions.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="a run folder (or use --checkpoint)")
    p.add_argument("--checkpoint", metavar="FILE", help="a bare checkpoint to test instead of a run folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--variant", metavar="NAME", help="with --checkpoint: the paper variant it was trained as")
    src.add_argument("--config", metavar="FILE", help="with --checkpoint: the TOML config it was trained with")
    add_scale_option(p, default_text="the config file's scale, else paper")
    add_set_option(p, dest="sets", applies_to="the run's config (e.g. --set data.dataset=DIR: another dataset)")
    p.add_argument("--views", default=None, metavar="TxS",
                   help="temporal x spatial views, e.g. 10x3 (default: the run's eval settings)")
    p.add_argument("--compare", default=None, metavar="OTHER_RUN",
                   help="print per-class accuracy differences RUN_DIR - OTHER_RUN (from their per_class files)")
    p.add_argument("--top", type=positive_int, default=10,
                   help="with --compare: classes shown at each end (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON (accuracies as fractions) instead of percent")
    p.add_argument("--no-fuse", action="store_true",
                   help="test the model as trained, without folding BatchNorm into the convs (the default folds "
                        "it: same scores to float rounding, faster)")
    add_progress_flag(p)
    p.set_defaults(func=run)


def _print_compare(args: argparse.Namespace, rows: list[dict], summary: dict[str, float]) -> None:
    print(f"per-class top-1 (%): {args.run_dir} minus {args.compare}")
    print(f"{'class':<28} {'group':<8} {'A':>7} {'B':>7} {'A-B':>7}")
    shown = rows if len(rows) <= 2 * args.top else rows[: args.top] + [None] + rows[-args.top:]
    for r in shown:
        if r is None:
            print("...")
            continue
        print(f"{r['class'][:28]:<28} {r['group']:<8} {100 * r['a']:7.1f} {100 * r['b']:7.1f} {100 * r['diff']:+7.1f}")
    print("mean difference by group (points): "
          + ", ".join(f"{g} {100 * v:+.1f}" for g, v in sorted(summary.items())))


def _compare(args: argparse.Namespace, kw: dict) -> int:
    from avsf.eval import compare_runs, evaluate
    from avsf.eval.evaluate import group_summary
    from avsf.run import RunDir

    for run_dir in (args.run_dir, args.compare):
        if args.views and RunDir(run_dir).read_per_class(args.views) is None:
            evaluate(run_dir, args.views, **kw)
    rows = compare_runs(args.run_dir, args.compare, args.views)
    summary = group_summary(rows)
    if args.json:
        print(json.dumps({"classes": rows, "mean_diff_by_group": summary}, indent=2))
    else:
        _print_compare(args, rows, summary)
    return 0


def run(args: argparse.Namespace, factories=None) -> int:
    """`factories` (avsf.factories.Factories) builds the model and loaders; tests pass toys."""
    from avsf.cli.train import print_result
    from avsf.config import ConfigError
    from avsf.eval import evaluate
    from avsf.eval.evaluate import evaluate_checkpoint

    if bool(args.run_dir) == bool(args.checkpoint):
        raise ConfigError("give a RUN_DIR or --checkpoint FILE (one of them)")
    if args.run_dir and (args.variant or args.config or args.scale):
        raise ConfigError("RUN_DIR brings its own config.json: --variant/--config/--scale go with --checkpoint only; "
                          "change the run's config with --set")
    kw = {"progress": not args.no_progress, "fuse": not args.no_fuse, "factories": factories}
    if args.compare:
        if args.checkpoint or args.sets:
            raise ConfigError("--compare reads two run folders' per-class files: no --checkpoint or --set")
        return _compare(args, kw)
    if args.checkpoint:
        from avsf.train import resolve_config

        if not (args.variant or args.config):
            raise ConfigError("--checkpoint needs --config FILE or --variant NAME to build the model")
        cfg = resolve_config(variant=args.variant, config=args.config, scale=args.scale, sets=args.sets)
        metrics = evaluate_checkpoint(args.checkpoint, cfg, args.views, **kw)
        title = f"avsf eval: {args.checkpoint}"
    else:
        metrics = evaluate(args.run_dir, args.views, sets=args.sets, **kw)
        title = f"avsf eval: {args.run_dir}"
    print_result(metrics, as_json=args.json, title=title)
    return 0
