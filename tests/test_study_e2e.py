"""One real end-to-end study at the tiny scale: the real trainer, interrupted and resumed, then reported."""

from __future__ import annotations

import json

import pytest

from avsf.study import load_study_dir, run_study
from avsf.study.spec import study_from_dict

pytestmark = pytest.mark.slow

STUDY = {
    "name": "e2e",
    "title": "DropPathway, tiny",
    "paper_table": "5c",
    "metric": "top1",
    "row_header": "$P_d$",
    "base": {"model.pathways": "avslowfast"},
    "variant": [
        {"name": "pd0", "label": "-", "set": {"model.drop_pathway": 0.0}, "paper": {"top1": 75.2, "top5": 91.8}},
        {"name": "pd0.8", "label": "0.8", "set": {"model.drop_pathway": 0.8}, "paper": {"top1": 77.0, "top5": 92.7}},
    ],
    "scale": {"tiny": {"seeds": 1, "set": {"train.epochs": 2}}},
    "default_scale": "tiny",
}


def test_real_study_interrupted_resumed_and_reported(tmp_path, monkeypatch):
    from avsf.report import write_report
    from avsf.train import train

    monkeypatch.setenv("AVSF_CACHE", str(tmp_path / "cache"))
    spec = study_from_dict(STUDY, source="e2e.toml")
    out = tmp_path / "runs" / "e2e"
    overrides = None

    def interrupted(cfg, out_dir, *, on_epoch=None, progress=True):
        def hook(epoch, metrics):
            on_epoch(epoch, metrics)
            if "/pd0.8/" in cfg.name and epoch == 1:
                raise KeyboardInterrupt  # as if ^C after the first epoch's checkpoint

        return train(cfg, out_dir, on_epoch=hook, progress=progress)

    with pytest.raises(KeyboardInterrupt):
        run_study(spec, out, overrides=overrides, train_fn=interrupted, progress=False, log=lambda m: None)
    states = {r.variant: r.state for r in load_study_dir(out).runs}
    assert states == {"pd0": "done", "pd0.8": "partial"}
    assert (out / "pd0.8" / "seed0" / "checkpoints" / "last.pt").exists()
    finished = (out / "pd0" / "seed0" / "result.json").stat().st_mtime_ns

    calls = []

    def counting(cfg, out_dir, **kw):
        calls.append(cfg.name)
        return train(cfg, out_dir, **kw)

    outcome = run_study(spec, out, overrides=overrides, train_fn=counting, progress=False, log=lambda m: None)
    assert outcome.ok and outcome.skipped == [("pd0", 0)] and outcome.done == [("pd0.8", 0)]
    assert calls == ["e2e/pd0.8/seed0"]
    assert (out / "pd0" / "seed0" / "result.json").stat().st_mtime_ns == finished
    lines = [json.loads(x) for x in (out / "pd0.8" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines if m["split"] == "train"] == [1, 2]  # resumed, not restarted
    result = json.loads((out / "pd0.8" / "seed0" / "result.json").read_text())
    for key in ("top1", "gflops", "epochs"):
        assert key in result

    files = write_report(out, tmp_path / "reports" / "e2e")
    names = {p.name for p in files}
    assert {"e2e.tex", "e2e.csv", "summary.md", "metric.png", "learning_curves.png", "per_class_gain.png"} <= names
    md = (tmp_path / "reports" / "e2e" / "summary.md").read_text()
    # the trainer writes predictions.json (contract 3): the winner comes with a bootstrap interval
    assert "ranks first with top-1" in md and "95 % interval" in md and (tmp_path / "reports" / "e2e" / "stats.csv").exists()
