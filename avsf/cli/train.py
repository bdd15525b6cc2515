"""`avsf train (--variant NAME | --config FILE) [--scale S] [--set k=v ...] --out RUN_DIR`."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one variant into a run folder (resumes it; a finished run is not redone)",
        description="Train one model into RUN_DIR: config.json, metrics.jsonl, checkpoints/last.pt, "
        "per_class.json, result.json. Running the same command again resumes from the checkpoint; "
        "a finished run (result.json present) is not redone. Works under torchrun --nproc_per_node N.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--variant", metavar="NAME", help="a paper variant (avsf.model.variants.VARIANTS)")
    src.add_argument("--config", metavar="FILE", help="a TOML config file")
    p.add_argument("--scale", choices=("tiny", "small", "paper"), default=None,
                   help="sizes: tiny (seconds), small (minutes on a 2-core CPU), paper (the authors' recipe); "
                   "default: the config file's scale, else paper")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=4 (repeatable)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, factories=None) -> int:
    """`factories` (avsf.factories.Factories) builds the model and loaders; tests pass toys."""
    from avsf.train import TooManyFailedClips, TrainingDiverged, resolve_config, train

    cfg = resolve_config(variant=args.variant, config=args.config, scale=args.scale, sets=args.sets)
    try:
        result = train(cfg, args.out, progress=not args.no_progress, factories=factories)
    except (TrainingDiverged, TooManyFailedClips) as e:
        print(f"avsf train: {e}", file=sys.stderr)
        return 1
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0
