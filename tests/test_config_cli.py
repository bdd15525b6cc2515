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


OWNED = ("data", "study", "search", "report")


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    """(path, parser, action) for every action, subcommands included."""
    for a in parser._actions:
        yield path, parser, a
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _walk(sp, (*path, name))


@pytest.mark.parametrize("command", OWNED)
def test_every_subcommand_and_option_has_help(command):
    parser = build_parser([command])
    missing = []
    for path, p, a in _walk(parser, ()):
        if path[:1] != (command,) or isinstance(a, argparse._HelpAction):
            continue
        if isinstance(a, argparse._SubParsersAction):
            listed = {c.dest: c.help for c in a._choices_actions}
            missing += [f"{' '.join(path)} {n}: no help" for n in a.choices if not listed.get(n)]
            missing += [f"{' '.join(path)} {n}: no description" for n, sp in a.choices.items() if not sp.description]
        elif a.help is None:
            missing.append(f"{' '.join(path)} {a.option_strings or a.dest}: no help")
    assert not missing, missing


@pytest.mark.parametrize("argv", [["study", "run", "s.toml", "--no-progress"], ["search", "s.toml", "--no-progress"],
                                  ["data", "synth", "--out", "x", "--no-progress"],
                                  ["data", "prepare", "m.csv", "--out", "x", "--no-progress"]])
def test_one_progress_flag_name(argv):
    assert build_parser(argv).parse_args(argv).no_progress is True


def test_quiet_is_a_hidden_alias_on_study_run(capsys):
    argv = ["study", "run", "s.toml", "--quiet"]
    assert build_parser(argv).parse_args(argv).no_progress is True
    with pytest.raises(SystemExit):
        build_parser(["study", "run", "--help"]).parse_args(["study", "run", "--help"])
    out = capsys.readouterr().out
    assert "--no-progress" in out and "--quiet" not in out


def test_counts_must_be_positive(capsys):
    for argv, opt in ([["study", "run", "s.toml", "--seeds", "0"], "--seeds"], [["search", "s.toml", "--trials", "-1"],
                      "--trials"], [["data", "bench", "--batches", "0"], "--batches"]):
        with pytest.raises(SystemExit):
            build_parser(argv).parse_args(argv)
        assert f"argument {opt}: " in capsys.readouterr().err


def test_study_list_names_the_paper_place(capsys):
    from avsf.cli import main

    assert main(["study", "list", str(ROOT / "studies")]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert " Sec. 3.4 " in lines["audio_kernels"] and "Table Sec." not in lines["audio_kernels"]
    assert " Table 5c " in lines["droppathway"] and " Table A.3 " in lines["audio_only"]


def test_search_summary_prints_accuracy_in_percent():
    from avsf.study.search import format_summary

    summary = {"study_name": "s", "storage": "sqlite:///x", "n_complete": 1, "n_pruned": 0, "n_fail": 0,
               "n_running": 0, "ran": [0], "objectives": ["val_top1:maximize", "gflops:minimize"],
               "best_trials": [{"number": 0, "params": {"pd": 0.5}, "values": [0.4567, 0.3], "run_dir": "r/trial0"}]}
    assert "-> val_top1 45.7%, gflops 0.300" in format_summary(summary)


def test_a_closed_pipe_ends_quietly(monkeypatch):
    """`avsf study list | head -1`: the reader is gone; avsf stops without a traceback."""
    from avsf.cli import main

    read_end, write_end = os.pipe()
    os.close(read_end)
    stdout = os.fdopen(write_end, "w", buffering=1)  # line-buffered: the first line meets the closed pipe
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(["study", "list", str(ROOT / "studies")]) == 141
    finally:
        stdout.close()
