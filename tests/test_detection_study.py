"""studies/ava.toml end to end at the tiny scale, in process (what `nox -s study_ava -- --scale tiny
--seeds 1` runs): the synthetic detection split, both Table 7 variants trained and tested, the
detection predictions.json, and the report with its keyframe bootstrap and Fig. A.1-style gains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsf.study import run_study
from avsf.study.spec import load_study

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_ava_study_runs_at_tiny_scale_and_reports(tmp_path, monkeypatch):
    from avsf.report import write_report

    monkeypatch.setenv("AVSF_CACHE", str(tmp_path / "cache"))
    spec = load_study(ROOT / "studies" / "ava.toml")
    assert [v.row for v in spec.variants] == ["table7/slowfast-r50", "table7/avslowfast-r50"]
    out = tmp_path / "runs" / "ava"
    outcome = run_study(spec, out, scale="tiny", seeds=1, overrides=["data.loader=reference"], progress=False,
                        log=lambda m: None)
    assert outcome.ok and sorted(outcome.done) == [("avslowfast", 0), ("slowfast", 0)]
    for variant in ("slowfast", "avslowfast"):
        run = out / variant / "seed0"
        result = json.loads((run / "result.json").read_text())
        assert 0.0 <= result["mAP"] <= 1.0 and result["clips"] == 6  # 2 test videos x 3 keyframes
        assert {"mAP_visual", "gflops"} <= set(result)
        config = json.loads((run / "config.json").read_text())
        assert config["model"]["head"] == "detection" and config["model"]["num_classes"] == 6
        pred = json.loads((run / "predictions.json").read_text())
        assert pred["task"] == "detection" and len(pred["keyframes"]) == len(pred["index"]) == 6
        assert len(pred["detections"]["scores"][0]) == 6
        val = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
        assert val and "mAP" in val[-1]

    files = write_report(out, tmp_path / "reports" / "ava")
    assert {"ava.tex", "summary.md", "per_class_gain.png", "stats.csv"} <= {p.name for p in files}
    md = (tmp_path / "reports" / "ava" / "summary.md").read_text()
    assert "ranks first with mAP" in md and "95 % interval" in md
    assert "mAP audio" in md and "Per-class test frame AP (IoU 0.5)" in md
