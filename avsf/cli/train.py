"""`avsf train (--variant NAME | --config FILE) [--scale S] [--set k=v ...] --out RUN_DIR`
and `avsf train --out RUN_DIR --resume-with train.base_lr=0.01`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from avsf.cli.common import add_progress_flag, add_scale_option, add_set_option

ACCURACY_PREFIXES = ("top1", "top5", "mAP", "val_top1", "best_val_top1")
"""result / eval keys that are accuracies: fractions in JSON, percent for people (and any key
ending in `_top1`: a pretraining run's `pretext_top1`, `rot_top1`, `avs_top1`)."""


def format_metrics(metrics: dict[str, Any]) -> str:
    """Human-facing lines of a result or eval dict: accuracies in percent, other numbers as
    they are, non-numbers (provenance, overrides) left out."""
    acc, other = [], []
    for k in sorted(metrics):
        v = metrics[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if k.startswith(ACCURACY_PREFIXES) or k.endswith("_top1"):
            acc.append(f"{k} {100 * v:.1f}%")
        else:
            other.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return "\n".join(["  " + ", ".join(acc)] * bool(acc) + ["  " + ", ".join(other)] * bool(other))


def print_result(metrics: dict[str, Any], *, as_json: bool, title: str) -> None:
    """Rank 0 prints the result: JSON (fractions) with --json, else percent lines."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if as_json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    else:
        print(f"{title}\n{format_metrics(metrics)}")


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        description="Train one model into RUN_DIR: config.json, metrics.jsonl, checkpoints/last.pt, "
        "per_class.json, predictions.json, result.json. Running the same command again resumes from the "
        "checkpoint; a finished run (result.json present) is not redone. Works under torchrun --nproc_per_node N. "
        "Accuracies print in percent; --json prints result.json's fractions.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--variant", metavar="NAME", help="a paper variant (avsf.model.variants.VARIANTS)")
    src.add_argument("--config", metavar="FILE", help="a TOML config file")
    add_scale_option(p, default_text="the config file's scale, else paper")
    add_set_option(p, dest="sets")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    p.add_argument("--resume-with", dest="resume_with", action="append", default=[], metavar="KEY=VALUE",
                   help="resume RUN_DIR's unfinished run from its last checkpoint with an optimisation key changed "
                        "(e.g. train.base_lr=0.01 after a divergence; recorded in config.json; repeatable); the "
                        "config is RUN_DIR's own, so no --variant/--config/--set")
    p.add_argument("--init", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="start from these weights (same as --set train.init_from=...): a run folder (its "
                        "checkpoints/last.pt) or a checkpoint file; tensors load by name, the report says what was "
                        "loaded, what is new (heads) and what was skipped; a shape mismatch is an error naming the "
                        "tensor. With --set train.freeze=all-but-head: the linear protocol (docs/ssl.md)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard scalars into RUN_DIR/tb (same as --set train.tensorboard=true)")
    p.add_argument("--json", action="store_true", help="print result.json (fractions) instead of percent lines")
    add_progress_flag(p)
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from avsf.config import ConfigError
    from avsf.run import RunDir
    from avsf.train import resolve_config

    sets = list(args.sets) + (["train.tensorboard=true"] if args.tensorboard else [])
    if args.init:  # a TOML string, so that no path reads as a number or a boolean
        sets.append(f"train.init_from={json.dumps(args.init)}")
    if args.resume_with:
        if args.variant or args.config or sets:
            raise ConfigError("--resume-with resumes RUN_DIR with its own config.json: drop --variant, --config, "
                              "--set, --init and --tensorboard")
        return RunDir(args.out).load_config()
    if not (args.variant or args.config):
        raise ConfigError("give --variant NAME or --config FILE (or --resume-with to continue RUN_DIR)")
    return resolve_config(variant=args.variant, config=args.config, scale=args.scale, sets=sets)


def run(args: argparse.Namespace, factories=None) -> int:
    """`factories` (avsf.factories.Factories) builds the model and loaders; tests pass toys."""
    from avsf.io import UnreadableFile
    from avsf.run import RunFolderError
    from avsf.train import TooManyFailedClips, TrainingDiverged, train

    try:
        cfg = _config(args)
        result = train(cfg, args.out, progress=not args.no_progress, factories=factories,
                       resume_with=args.resume_with or None)
    except (TrainingDiverged, TooManyFailedClips) as e:
        print(f"avsf train: {e}", file=sys.stderr)
        return 1
    except (RunFolderError, UnreadableFile) as e:
        print(f"avsf train: {e}", file=sys.stderr)
        return 2
    print_result(result, as_json=args.json, title=f"avsf train: {args.out}")
    return 0
