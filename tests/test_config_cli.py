"""The `avsf` command line: help without torch, one flag vocabulary, help text everywhere."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avsf.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(*argv: str) -> set[str]:
    """Modules `python -m avsf ARGV` imports (from -X importtime), after checking it exits 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "avsf", *argv], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: avsf" in proc.stdout
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("argv", [["--help"], ["study", "--help"], ["search", "--help"], ["report", "--help"],
                                  ["data", "--help"], ["data", "prepare", "--help"], ["train", "--help"]])
def test_help_does_not_import_torch(argv):
    mods = _imported_modules(*argv)
    assert "argparse" in mods  # the parse worked: the timing lines were read
    heavy = sorted(m for m in mods if m.split(".")[0] in ("torch", "optuna", "numpy", "matplotlib"))
    assert not heavy, heavy


def test_only_the_selected_subcommand_is_loaded():
    parser = build_parser(["report", "runs/x"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)
    assert any(a.dest == "run_dirs" for a in sub.choices["report"]._actions)  # the real parser
    assert not any(a.dest == "sets" for a in sub.choices["train"]._actions)  # a name-only stub
    listing = {a.dest: a.help for a in sub._choices_actions}
    assert listing == COMMANDS  # one help text per command, for loaded and stub alike
    assert build_parser(["report", "x"]).parse_args(["report", "x"]).run_dirs == [Path("x")]
