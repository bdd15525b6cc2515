"""`avsf flops`: GFLOPs, parameters and per-pathway share of one variant, or of every paper row."""

from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from avsf.cli.common import positive_int
from avsf.config import ConfigError, build_config, load_config
from avsf.flops import count
from avsf.model.variants import VARIANTS, get_variant


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flops",
        help="GFLOPs / params / per-pathway share of a variant (fvcore, one clip)",
        description=(
            "Count GFLOPs (fvcore: one multiply-add = one FLOP, one clip in eval mode, as the paper) "
            "and parameters of a named paper variant or of any config. --list counts every row of the "
            "paper's GFLOPs columns and prints paper vs ours."
        ),
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--variant", metavar="NAME", help="a named paper row (see --list)")
    what.add_argument("--config", metavar="FILE", help="a TOML config file")
    what.add_argument("--list", action="store_true", help="count every named variant: paper GFLOPs, ours, delta")
    p.add_argument("--input-size", type=positive_int, default=None, help="spatial size of the clip (default 256, the paper's)")
    p.add_argument("--scale", default=None, help="tiny | small | paper (default paper)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. model.beta_a=1/4 (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object (a list with --list)")
    p.set_defaults(func=run)


def _row(name: str, scale: str | None, sets: list[str], input_size: int | None) -> dict:
    v = get_variant(name)
    cfg = build_config(scale=scale, base=v.overrides, overrides=sets)
    report = count(cfg.model, input_size=input_size or v.input_size)
    ours = report.gflops
    return {
        "variant": name,
        "description": v.description,
        "paper_gflops": v.paper_gflops,
        **report.to_dict(),
        "delta_pct": round(100.0 * (ours - v.paper_gflops) / v.paper_gflops, 2),
    }


def run(args: argparse.Namespace) -> int:
    if args.list:
        rows = [_row(n, args.scale, args.sets, args.input_size)
                for n in tqdm(VARIANTS, desc="counting", unit="variant", leave=False, disable=args.json)]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(format_table(rows))
        return 0
    if args.variant:
        row = _row(args.variant, args.scale, args.sets, args.input_size)
    else:
        cfg = load_config(args.config, scale=args.scale, overrides=args.sets)
        row = {"config": args.config, **count(cfg.model, input_size=args.input_size or 256).to_dict()}
    if args.json:
        print(json.dumps(row))
        return 0
    label = row.get("variant") or row.get("config")
    print(f"{label}: {row['gflops']:.2f} GFLOPs, {row['params_m']:.2f} M params, "
          f"audio {100 * row['audio_share']:.1f}% of compute")
    if "paper_gflops" in row:
        print(f"  paper: {row['paper_gflops']:.1f} GFLOPs (delta {row['delta_pct']:+.1f}%)")
    print("  per pathway (GFLOPs): " + ", ".join(f"{k} {v:.2f}" for k, v in row["by_pathway"].items()))
    return 0


def format_table(rows: list[dict]) -> str:
    head = ("variant", "paper GFLOPs", "ours", "delta", "params (M)", "audio share")
    body = [
        (r["variant"], f"{r['paper_gflops']:.1f}", f"{r['gflops']:.2f}", f"{r['delta_pct']:+.1f}%",
         f"{r['params_m']:.1f}", f"{100 * r['audio_share']:.1f}%")
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, body)])


__all__ = ["register", "run", "format_table", "ConfigError"]
