"""The `avsf` command.

Each subcommand lives in its own module with a `register(subparsers)`. The list below is
the one place that names them, with the one-line help `avsf --help` prints; a subcommand's
module (which may import torch) is imported only when that subcommand is selected, so
`avsf --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Order is the order `avsf --help` lists them: data -> model -> train -> study -> report.
COMMANDS: dict[str, str] = {
    "data": "synthetic benchmark, dataset preparation, loader preview and benchmark",
    "flops": "GFLOPs / params / per-pathway share of a variant (fvcore, one clip)",
    "train": "train one variant into a run folder (resumes it; a finished run is not redone)",
    "eval": "multi-view test of a run; per-class differences between two runs",
    "study": "run a declarative ablation study (studies/*.toml); resumable",
    "search": "Optuna search over config fields (val top-1 vs GFLOPs), one run folder per trial",
    "report": "LaTeX table, CSV, figures and summary.md from a study (or search) folder",
    "convert": "pytorchvideo / PySlowFast weights as an avsf checkpoint, with a report of what mapped",
    "export": "a run's model as TorchScript, ONNX or a torch.export program, checked against eager",
}


def _selected(argv: list[str]) -> str | None:
    """The subcommand argv names (its first non-option word), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


class _Listed:
    """What a module's `register` receives: its `add_parser` gets the help text of COMMANDS."""

    def __init__(self, sub: argparse._SubParsersAction) -> None:
        self.sub = sub

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        kwargs["help"] = COMMANDS[name]
        return self.sub.add_parser(name, **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full options of the subcommand `argv` selects; the others are
    listed by name and help only. Without `argv` every subcommand's module is loaded."""
    parser = argparse.ArgumentParser(
        prog="avsf",
        description="Audiovisual SlowFast Networks: models, data, training, ablation studies, reports.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = _selected(argv) if argv is not None else None
    for name, help_text in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(f"avsf.cli.{name}").register(_Listed(sub))
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    from avsf.config import ConfigError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"avsf {args.command}: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avsf {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`avsf study list | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
