"""argparse pieces every `avsf` subcommand shares, so flags read the same everywhere.

- `add_progress_flag(parser)`: `--no-progress` (the one name for "no bars, no per-step lines").
- `add_set_option(parser)`: the repeatable `--set KEY=VALUE` config override.
- `add_scale_option(parser)`: `--scale tiny|small|paper`.
- `positive_int`, `non_negative_int`, `positive_float`, `non_negative_ms`: argparse types whose errors
  name the value and the range.

Importing this module is cheap (no torch): `avsf --help` builds every parser.
"""

from __future__ import annotations

import argparse

SCALE_CHOICES = ("tiny", "small", "paper")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; must be an integer >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def _float_where(requirement: str, ok):
    """An argparse float type: a number for which `ok(value)` holds (NaN never does), else an
    error naming the value and `requirement`."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; must be {requirement}")
        return value

    parse.__name__ = requirement
    return parse


positive_float = _float_where("a number > 0", lambda v: v > 0)
non_negative_ms = _float_where("milliseconds >= 0", lambda v: v >= 0)


def add_progress_flag(parser: argparse.ArgumentParser, *, deprecated: tuple[str, ...] = ()) -> None:
    """`--no-progress` (dest `no_progress`); `deprecated` names are hidden aliases of it."""
    parser.add_argument("--no-progress", dest="no_progress", action="store_true",
                        help="no progress bars or per-step lines (for logs and batch jobs)")
    for name in deprecated:
        parser.add_argument(name, dest="no_progress", action="store_true", help=argparse.SUPPRESS)


def add_set_option(parser: argparse.ArgumentParser, *, dest: str = "overrides", applies_to: str = "the run") -> None:
    """The repeatable `--set KEY=VALUE` (a list of strings in `dest`, [] when absent)."""
    parser.add_argument("--set", dest=dest, action="append", default=[], metavar="KEY=VALUE",
                        help=f"config override applied to {applies_to}, e.g. --set train.epochs=2 (repeatable)")


def add_scale_option(parser: argparse.ArgumentParser, *, default: str | None = None, default_text: str = "") -> None:
    parser.add_argument("--scale", choices=SCALE_CHOICES, default=default,
                        help="sizes: tiny (seconds), small (minutes on a 2-core CPU), paper (the authors' recipe)"
                        + (f"; default: {default_text or default}" if default_text or default else ""))
