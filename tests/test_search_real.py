"""`avsf search` end to end with the real trainer and FLOP counter at tiny scale (CLI, report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("avsf.flops", reason="the FLOP counter has not landed")
pytest.importorskip("avsf.model", reason="the model has not landed")

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "studies" / "search_pd_beta.toml"


def avsf(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "avsf", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_real_search_cli_and_report(tmp_path):
    """One real tiny trial through the CLI (a tiny training run takes about a minute on the
    2-core CPU, so continuation and concurrency are tested with a fake trainer elsewhere)."""
    out = tmp_path / "runs" / "search_pd_beta"
    summary = json.loads(avsf(
        "search", str(SPEC), "--scale", "tiny", "--out", str(out), "--json", "--trials", "1",
        "--set", "train.epochs=1", "--set", "train.max_train_clips=8", "--set", "eval.temporal_views=1",
    ).stdout.strip().splitlines()[-1])
    assert summary["study_name"] == "search_pd_beta" and summary["ran"] == [0]
    assert summary["n_complete"] == 1 and len(summary["best_trials"]) == 1, summary
    study = optuna.load_study(study_name="search_pd_beta", storage=f"sqlite:///{out / 'optuna.db'}")
    (t,) = study.trials
    run = out / "trial0"
    result = json.loads((run / "result.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["drop_pathway"] == pytest.approx(t.params["drop_pathway"])
    assert cfg["model"]["beta_a"] == pytest.approx(eval(t.params["beta_a"]))  # "1/8" -> 0.125
    assert cfg["scale"] == "tiny" and cfg["train"]["epochs"] == 1
    assert t.values[0] == pytest.approx(result["val_top1"])
    assert t.values[1] == pytest.approx(result["gflops"], rel=1e-6)  # one FLOP counter
    assert sorted(t.user_attrs["val_top1_history"]) == [pytest.approx(result["val_top1"])]
    # The pre-training count (budget check) agrees with the trainer's.
    from avsf.study.search import _default_flops, load_search

    spec = load_search(SPEC)
    pre = _default_flops(spec.config_for("tiny", t.params))
    assert pre == pytest.approx(result["gflops"], rel=1e-6)

    from avsf.report.search import write_search_report

    rep = tmp_path / "reports"
    write_search_report(out, rep)
    for f in ("pareto.png", "history.png", "best_trials.tex", "best_trials.csv", "summary.md"):
        assert (rep / f).exists(), f
