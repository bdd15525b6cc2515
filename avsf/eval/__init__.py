"""Evaluation: multi-view testing of a finished run, metrics, per-class comparisons."""

from avsf.eval.evaluate import compare_runs, evaluate, parse_views

__all__ = ["evaluate", "compare_runs", "parse_views"]
