"""`avsf export RUN_DIR --format torchscript|onnx|exported-program [--out FILE]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        description="Write RUN_DIR's final model (or a checkpoint written by avsf convert) as TorchScript "
        "(traced), ONNX (the onnx extra: pip install -e .[onnx]) or a torch.export program. The exported model "
        "takes positional tensors, the clip's pathways in the order slow, fast, audio (those the variant has), "
        "batch first, any batch size, and returns the logits. Before writing, its outputs on a seeded sample "
        "batch and on a batch of one are compared with the eager model's; a mismatch writes nothing.",
    )
    p.add_argument("source", metavar="RUN_DIR", type=Path, help="a finished or checkpointed run folder, or a "
                   "checkpoint written by avsf convert")
    p.add_argument("--format", dest="fmt", required=True, choices=("torchscript", "onnx", "exported-program"),
                   help="torchscript: a traced torch.jit module (.ts.pt); onnx: an ONNX graph (.onnx); "
                        "exported-program: torch.export.save (.pt2)")
    p.add_argument("--out", type=Path, default=None,
                   help="file to write (default: RUN_DIR/export/model.<suffix>, or beside the checkpoint)")
    p.add_argument("--no-fuse", action="store_true",
                   help="export the model as trained, without folding BatchNorm into the convs (the default "
                        "folds it: same logits to float rounding, faster)")
    p.add_argument("--json", action="store_true", help="print what was written and checked as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avsf.export import export_run

    info = export_run(args.source, args.fmt, args.out, fuse=not args.no_fuse)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"wrote {info['path']} ({info['format']}; inputs {', '.join(info['inputs'])}; "
              f"max |logit - eager| {info['max_abs_diff']:.2g} on the check batches)")
    return 0
