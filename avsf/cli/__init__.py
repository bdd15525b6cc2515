"""The `avsf` command. Each subcommand lives in its own module with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order `avsf --help` lists them: data -> model -> train -> study -> report.
SUBCOMMANDS = ("data", "flops", "train", "eval", "study", "search", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avsf",
        description="Audiovisual SlowFast Networks: models, data, training, ablation studies, reports.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"avsf.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from avsf.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"avsf {args.command}: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avsf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
