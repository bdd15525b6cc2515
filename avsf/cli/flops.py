"""`avsf flops`: GFLOPs, parameters and per-pathway share of one variant, or of every paper row."""

from __future__ import annotations

import argparse
import json

from avsf.cli.common import add_progress_flag, add_scale_option, add_set_option, positive_int
from avsf.config import ConfigError


def input_size(text: str) -> int | tuple[int, int]:
    """argparse type: "256" (a square clip) or "256x320" (height x width), integers >= 1."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        return positive_int(text)
    try:
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(text)
        return positive_int(parts[0]), positive_int(parts[1])
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; want SIZE or HEIGHTxWIDTH, "
                                         "integers >= 1 (e.g. 256 or 256x320)") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flops",
        help="GFLOPs / params / per-pathway share of a variant (fvcore, one clip)",
        description=(
            "Count GFLOPs (fvcore: one multiply-add = one FLOP, one clip in eval mode, as the paper) "
            "and parameters of a named paper variant or of any config. --list counts every row of the "
            "paper's GFLOPs columns and prints paper vs ours; the paper's figure is compared only at the "
            "paper's scale and input size. Counts are cached by config and model code "
            "($AVSF_CACHE/flops/), so a second --list is instant."
        ),
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--variant", metavar="NAME", help="a named paper row (see --list)")
    what.add_argument("--config", metavar="FILE", help="a TOML config file")
    what.add_argument("--list", action="store_true", help="count every named variant: paper GFLOPs, ours, delta")
    p.add_argument("--input-size", type=input_size, default=None, metavar="SIZE",
                   help="spatial size of the clip: 256 or HEIGHTxWIDTH such as 256x320 "
                        "(default: the row's, 256 for a config)")
    add_scale_option(p, default_text="paper")
    add_set_option(p, dest="sets", applies_to="the counted model")
    p.add_argument("--json", action="store_true", help="print one JSON object (a list with --list)")
    p.add_argument("--no-cache", action="store_true", help="count afresh and do not store the count")
    add_progress_flag(p)
    p.set_defaults(func=run)


def _size_text(size: int | tuple[int, int]) -> str:
    from avsf.flops import hw

    h, w = hw(size)
    return f"{h}x{w}"


def _counted(cfg, size, args: argparse.Namespace) -> dict:
    """Our count of `cfg` at `size`, with the Fast->Slow stages the model builds."""
    from avsf.flops import count
    from avsf.model.avslowfast import fs_fusion_stages

    report = count(cfg.model, input_size=size, cache=not args.no_cache)
    fs = fs_fusion_stages(cfg.model) if cfg.model.has_visual else []
    return {"input": _size_text(size), "fs_stages": fs, **report.to_dict()}


def _row(name: str, args: argparse.Namespace) -> dict:
    """One paper row: our count, and the paper's beside it where they are comparable (the
    paper scale at the row's input size; `--set` overrides keep it comparable: they are how
    the alternatives in docs/model.md are measured)."""
    from avsf.config import build_config
    from avsf.flops import hw
    from avsf.model.variants import get_variant

    v = get_variant(name)
    cfg = build_config(scale=args.scale, base=v.overrides, overrides=args.sets)
    size = args.input_size or v.input_size
    row = {"variant": name, "description": v.description, **_counted(cfg, size, args),
           "paper_gflops": v.paper_gflops, "paper_params_m": v.paper_params_m, "paper_input": _size_text(v.input_size)}
    row["paper_comparable"] = cfg.scale == "paper" and hw(size) == hw(v.input_size)
    row["delta_pct"] = (round(100.0 * (row["gflops"] - v.paper_gflops) / v.paper_gflops, 2)
                        if row["paper_comparable"] else None)
    return row


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from avsf.config import load_config
    from avsf.model.variants import VARIANTS

    if args.list:
        rows = [_row(n, args) for n in tqdm(VARIANTS, desc="counting", unit="variant", leave=False,
                                            disable=args.json or args.no_progress)]
        print(json.dumps(rows, indent=2) if args.json else format_table(rows))
        return 0
    if args.variant:
        row = _row(args.variant, args)
    else:
        cfg = load_config(args.config, scale=args.scale, overrides=args.sets)
        row = {"config": args.config, **_counted(cfg, args.input_size or 256, args)}
    print(json.dumps(row) if args.json else format_one(row))
    return 0


def gf(value: float) -> str:
    """GFLOPs with enough digits: two decimals from 1 up, three significant digits below."""
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


def _fs_text(stages: list[str]) -> str:
    return ",".join(stages) if stages else "-"


def _paper_note(row: dict) -> str:
    if row["paper_comparable"]:
        params = f"; {row['paper_params_m']:.1f} M params" if row.get("paper_params_m") else ""
        return f"  paper: {row['paper_gflops']:.1f} GFLOPs (delta {row['delta_pct']:+.1f}%){params}"
    return (f"  paper: {row['paper_gflops']:.1f} GFLOPs at the paper scale, {row['paper_input']}; "
            f"this count is at another scale or input size, so the paper's figure does not apply")


def format_one(row: dict) -> str:
    label = row.get("variant") or row.get("config")
    lines = [f"{label}: {gf(row['gflops'])} GFLOPs, {row['params_m']:.2f} M params, "
             f"audio {100 * row['audio_share']:.1f}% of compute ({row['input']}, "
             f"Fast->Slow at {_fs_text(row['fs_stages'])})"]
    if "paper_gflops" in row:
        lines.append(_paper_note(row))
    lines.append("  per pathway (GFLOPs): " + ", ".join(f"{k} {gf(v)}" for k, v in row["by_pathway"].items()))
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    head = ("variant", "input", "paper GFLOPs", "ours", "delta", "params (M)", "paper params", "audio share",
            "Fast->Slow")
    body = [
        (r["variant"], r["input"], f"{r['paper_gflops']:.1f}", gf(r["gflops"]),
         f"{r['delta_pct']:+.1f}%" if r["paper_comparable"] else "n/a", f"{r['params_m']:.1f}",
         f"{r['paper_params_m']:.1f}" if r.get("paper_params_m") else "", f"{100 * r['audio_share']:.1f}%",
         _fs_text(r["fs_stages"]))
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i in (0, 8) else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(head), line(tuple("-" * w for w in widths)), *map(line, body)]
    if any(not r["paper_comparable"] for r in rows):
        out.append("n/a: counted at another scale or input size than the paper's; its figure does not apply.")
    return "\n".join(out)


__all__ = ["register", "run", "format_table", "format_one", "input_size", "ConfigError"]
