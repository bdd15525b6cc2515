"""The GPU check's dry run (bench/gpu_check.py without CUDA): every phase's code runs on the CPU
at tiny sizes, skips what needs a GPU cleanly, and writes the JSON and markdown report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_dry_run_completes_and_reports(tmp_path):
    pytest.importorskip("pytorchvideo", reason="the bench pairs need pytorchvideo (test extra)")
    pytest.importorskip("pytest_benchmark", reason="the bench needs pytest-benchmark (test extra)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "AVSF_CACHE": str(tmp_path / "cache"),
           "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "report"
    p = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry-run", "--work", str(tmp_path / "work"),
                        "--out", str(out), "--phases", "synth,bench,train"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    summary = json.loads((out / "gpu_check.json").read_text())
    assert p.returncode == 0, {k: v["output_tail"] for k, v in summary["phases"].items()}
    assert summary["dry_run"] is True and summary["env"]["cuda"] is False
    assert {k: v["status"] for k, v in summary["phases"].items()} == {"synth": "ok", "bench": "ok", "train": "ok"}
    # every model group of the CUDA bench ran its code (on the CPU) with both implementations
    groups = {g["group"] for g in summary["model_groups"]}
    assert groups == {f"tiny-{m}-cuda-{p}" for m in ("eval", "train") for p in ("fp32", "bf16", "bf16-cl3d")}
    assert all(g["speedup"] and g["avsf_tflops"] is not None for g in summary["model_groups"])
    assert summary["data_clips_per_s"].get("reference-cpu")  # dali-gpu skipped: no GPU
    assert "dali-gpu" not in summary["data_clips_per_s"]
    train = summary["train"]
    assert train["epoch"]["clips_per_s"] > 0 and 0 <= train["epoch"]["data_wait_share"] <= 1
    assert train["loader_alone_clips_per_s"] > 0 and train["model_step_alone_clips_per_s"] > 0
    md = (out / "gpu_check.md").read_text()
    assert "dry run" in md and "| tiny-train-cuda-bf16-cl3d |" in md and "## Targets (issue 11)" in md
    assert summary["targets"]["DALI GPU >= 200 clips/s"] == "not measured"
