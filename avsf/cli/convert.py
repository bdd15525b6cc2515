"""`avsf convert SRC --out FILE (--variant NAME | --config FILE) [--from LAYOUT]`: pytorchvideo or
PySlowFast weights as an avsf checkpoint, with a report of what mapped."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avsf.cli.common import add_scale_option, add_set_option

LAYOUT_CHOICES = ("auto", "pytorchvideo", "pyslowfast", "avsf")


def register(sub) -> None:
    p = sub.add_parser(
        "convert",
        description="Read SRC (a state dict or checkpoint of pytorchvideo's create_audio_visual_slowfast / "
        "create_slowfast, a PySlowFast .pyth with model_state, or avsf's own), rename its tensors to avsf's "
        "parameter names, load them into the model --variant/--config describes and write an avsf checkpoint "
        "(train.init_from, avsf eval --checkpoint and avsf export read it). Prints how many tensors loaded, "
        "which model tensors the file lacks (they keep their initialisation) and which file tensors have no "
        "place in avsf (ignored). Files are read weights-only: no code in them runs. Fails, writing nothing, "
        "when no tensor matches or a shape differs.",
    )
    p.add_argument("source", metavar="SRC", type=Path, help="checkpoint or state dict file")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the avsf checkpoint to write")
    p.add_argument("--from", dest="layout", choices=LAYOUT_CHOICES, default="auto",
                   help="the names SRC uses (default auto: recognised from its names)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--variant", metavar="NAME", help="a paper variant (avsf.model.variants.VARIANTS)")
    src.add_argument("--config", metavar="FILE", help="a TOML config file")
    add_scale_option(p, default_text="the config file's scale, else paper")
    add_set_option(p, applies_to="the model's config (e.g. --set model.fusion_stages=[...])")
    p.add_argument("--new-head", action="store_true",
                   help="the classifier may have another class count (it keeps its initialisation)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avsf.config import ConfigError
    from avsf.convert import convert, notes_for, save_converted
    from avsf.train import resolve_config

    if args.out.resolve() == args.source.resolve():
        raise ConfigError(f"--out {args.out} is SRC itself; write the converted checkpoint to another file")
    cfg = resolve_config(variant=args.variant, config=args.config, scale=args.scale, sets=args.overrides)
    model, report = convert(args.source, cfg, key_map=args.layout, new_head=args.new_head)
    print(report)
    for note in notes_for(report.key_map):
        print(f"  note: {note}")
    save_converted(model, report, cfg, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
