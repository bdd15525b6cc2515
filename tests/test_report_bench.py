"""bench/render.py: speed-up ratios with intervals, and the comparison of two saved runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import render


def _entry(group, impl, times, **extra):
    t = np.asarray(times, dtype=float)
    return {"group": group, "name": f"test_x[{impl}-{group}]", "fullname": f"bench/test_x.py::test_x[{impl}-{group}]",
            "extra_info": {"impl": impl, **extra},
            "stats": {"data": t.tolist(), "median": float(np.median(t)), "min": float(t.min()), "max": float(t.max()),
                      "q1": float(np.percentile(t, 25)), "q3": float(np.percentile(t, 75)), "rounds": len(t),
                      "mean": float(t.mean()), "stddev": float(t.std())}}


def _run(scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    noisy = lambda m: (m * scale * (1 + 0.02 * rng.standard_normal(15))).tolist()  # noqa: E731
    return {"datetime": "2026-11-27T00:00:00", "commit_info": {"id": "abcdef1234567"}, "machine_info": {},
            "benchmarks": [
                _entry("small-eval", "avsf", noisy(0.10), batch_size=8, interleaved_speedup=1.45),
                _entry("small-eval", "pytorchvideo", noisy(0.15), batch_size=8),
                _entry("data-small-train-cpu", "dali-cpu", noisy(0.5), clips_per_s=60.0),
                _entry("data-small-train-cpu", "reference-cpu", noisy(1.0), clips_per_s=30.0),
            ]}


def test_speedups_are_ratios_with_intervals():
    items = {it["group"]: it for it in render.speedups(_run())}
    ev = items["small-eval"]
    assert ev["ratio"] == pytest.approx(1.5, rel=0.03) and ev["low"] < ev["ratio"] < ev["high"]
    assert ev["high"] - ev["low"] < 0.2 and ev["interleaved"] == 1.45
    assert items["data-small-train-cpu"]["ratio"] == pytest.approx(2.0, rel=0.03)
    assert items["data-small-train-cpu"]["what"] == "DALI CPU / reference loader"


def test_render_writes_the_ratio_figure(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps(_run()))
    md = render.render(tmp_path)
    text = md.read_text()
    assert "![speed-ups](bench.png)" in text and "95 % bootstrap intervals" in text
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_flags_a_slower_run(tmp_path, monkeypatch):
    base, now = tmp_path / "base.json", tmp_path / ".benchmarks" / "Linux-x" / "0002_now.json"
    now.parent.mkdir(parents=True)
    base.write_text(json.dumps(_run(seed=1)))
    now.write_text(json.dumps(_run(scale=1.3, seed=2)))  # every benchmark 30 % slower
    monkeypatch.chdir(tmp_path)
    assert render.latest_run() == Path(".benchmarks/Linux-x/0002_now.json")
    assert render.main(["--compare", str(base), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "compare.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| test_x")]
    assert len(rows) == 4 and all("**slower**" in r for r in rows)
    ratio = float(rows[0].split(" | ")[3].split("x")[0])
    assert ratio == pytest.approx(1 / 1.3, abs=0.02) and (tmp_path / "out" / "compare.png").exists()
    (tmp_path / "same.json").write_text(json.dumps(_run(seed=3)))
    render.main(["--compare", str(base), str(tmp_path / "same.json"), "--out", str(tmp_path / "o2")])
    assert "**slower**" not in (tmp_path / "o2" / "compare.md").read_text()


def test_compare_of_unrelated_runs_is_an_error(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_run()))
    b.write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(SystemExit, match="share no benchmark"):
        render.compare(a, b, tmp_path / "out")
