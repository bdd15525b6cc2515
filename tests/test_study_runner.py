"""The study runner: every variant x seed, skips finished runs, resumes interrupted ones.

Uses a fake trainer that honours the run-folder contract of docs/architecture.md, so these
tests take milliseconds; test_study_e2e.py runs the real trainer once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from avsf.config import ConfigError
from avsf.study import format_status, load_study, load_study_dir, run_study
from avsf.study.spec import study_from_dict

CLASSES = [f"class{i}" for i in range(6)]
GROUPS = {"visual": [0, 1], "audio": [2, 3], "sync": [4, 5]}


def _write(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def fake_numbers(cfg) -> dict[str, float]:
    """Deterministic, variant-dependent 'accuracy': higher Pd is better, audio helps audio classes."""
    m = cfg.model
    seed = cfg.train.seed
    audio = 0.0 if m.pathways == "slowfast" else 1.0
    base = 50.0 + 20.0 * m.drop_pathway + 5.0 * audio * (m.pathways != "audio") + 0.7 * seed
    pct = {
        "top1": base,
        "top5": min(100.0, base + 20.0),
        "val_top1": base - 1.0,
        "top1_visual": base + 5.0 - 30.0 * (m.pathways == "audio"),
        "top1_audio": base - 10.0 + 25.0 * audio,
        "top1_sync": base - 5.0 + 10.0 * audio,
    }
    return {k: v / 100.0 for k, v in pct.items()}  # fractions, as the real trainer writes them


class FakeTrainer:
    """Writes a run folder per the contract; can be told to raise KeyboardInterrupt or fail."""

    def __init__(self, interrupt_after_epochs: int | None = None, fail_variant: str | None = None):
        self.interrupt_after_epochs = interrupt_after_epochs
        self.fail_variant = fail_variant
        self.epochs_trained = 0
        self.calls: list[str] = []

    def __call__(self, cfg, out_dir, *, on_epoch=None, progress=True):
        out = Path(out_dir)
        self.calls.append(cfg.name)
        if (out / "result.json").exists():
            return json.loads((out / "result.json").read_text())
        if self.fail_variant and f"/{self.fail_variant}/" in cfg.name:
            raise RuntimeError("synthetic failure for the test")
        out.mkdir(parents=True, exist_ok=True)
        (out / "checkpoints").mkdir(exist_ok=True)
        _write(out / "config.json", cfg.to_dict())
        ckpt = out / "checkpoints" / "last.pt"
        start = json.loads(ckpt.read_text())["epoch"] + 1 if ckpt.exists() else 0
        nums = fake_numbers(cfg)
        epochs = cfg.train.epochs
        for epoch in range(start, epochs):
            if self.interrupt_after_epochs is not None and self.epochs_trained >= self.interrupt_after_epochs:
                raise KeyboardInterrupt
            frac = (epoch + 1) / epochs
            train_error = 1.0 - nums["top1"] * frac
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"epoch": epoch + 1, "step": epoch, "split": "train", "loss": 2.0 / (epoch + 1),
                                    "top1": 1.0 - train_error, "train_error": train_error, "lr": 0.1}) + "\n")
                val = {"epoch": epoch + 1, "step": epoch, "split": "val", "loss": 2.5 / (epoch + 1),
                       "top1": nums["val_top1"] * frac}
                for g in GROUPS:
                    val[f"top1_{g}"] = nums[f"top1_{g}"] * frac
                f.write(json.dumps(val) + "\n")
            _write(ckpt, {"epoch": epoch})
            self.epochs_trained += 1
            if on_epoch:
                on_epoch(epoch + 1, val)
        acc = []
        for c in range(len(CLASSES)):
            g = next(k for k, v in GROUPS.items() if c in v)
            acc.append(nums[f"top1_{g}"] + c / 100.0)
        _write(out / "per_class.json", {"classes": CLASSES, "groups": GROUPS, "accuracy": acc})
        pathways = cfg.model.pathways
        result = {
            **nums,
            "gflops": {"slowfast": 0.40, "audio": 0.10, "avslowfast": 0.52}.get(pathways, 0.5) + cfg.model.beta_a / 10,
            "params_m": 1.5,
            "epochs": epochs,
            "train_time_s": 1.0,
        }
        _write(out / "result.json", result)
        return result


STUDY = {
    "name": "pdtest",
    "title": "DropPathway test",
    "paper_table": "5c",
    "metric": "top1",
    "row_header": "$P_d$",
    "base": {"model": {"pathways": "avslowfast"}},
    "variant": [
        {"name": "pd0", "label": "-", "set": {"model.drop_pathway": 0.0}, "paper": {"top1": 75.2, "top5": 91.8}},
        {"name": "pd0.5", "label": "0.5", "set": {"model.drop_pathway": 0.5}, "paper": {"top1": 76.7, "top5": 92.7}},
        {"name": "pd0.8", "label": "0.8", "set": {"model.drop_pathway": 0.8}, "paper": {"top1": 77.0, "top5": 92.7}},
    ],
    "scale": {"tiny": {"seeds": 2, "set": {"train.epochs": 3}}},
    "default_scale": "tiny",
}


def make_spec(**changes):
    tree = json.loads(json.dumps(STUDY))
    tree.update(changes)
    return study_from_dict(tree, source="test.toml")


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("result.json")}


def test_runs_every_variant_and_seed(tmp_path):
    spec = make_spec()
    trainer = FakeTrainer()
    out = run_study(spec, tmp_path / "pdtest", train_fn=trainer, log=lambda m: None)
    assert out.ok and len(out.done) == 6 and not out.skipped
    for v in ("pd0", "pd0.5", "pd0.8"):
        for s in (0, 1):
            run = tmp_path / "pdtest" / v / f"seed{s}"
            assert (run / "result.json").exists()
            cfg = json.loads((run / "config.json").read_text())
            assert cfg["train"]["seed"] == s
            assert cfg["train"]["epochs"] == 3  # the study's [scale.tiny] set
            assert cfg["model"]["drop_pathway"] == spec.variant(v).set["model.drop_pathway"]
            assert cfg["scale"] == "tiny"
    meta = json.loads((tmp_path / "pdtest" / "study.json").read_text())
    assert meta["scale"] == "tiny" and meta["seeds"] == [0, 1]
    assert [v["name"] for v in meta["spec"]["variants"]] == ["pd0", "pd0.5", "pd0.8"]


def test_finished_runs_are_skipped_and_untouched(tmp_path):
    spec = make_spec()
    run_study(spec, tmp_path / "s", train_fn=FakeTrainer(), log=lambda m: None)
    before = _mtimes(tmp_path / "s")
    trainer = FakeTrainer()
    out = run_study(spec, tmp_path / "s", train_fn=trainer, log=lambda m: None)
    assert trainer.calls == []  # not even asked
    assert len(out.skipped) == 6 and not out.done
    assert _mtimes(tmp_path / "s") == before


def test_interrupted_study_finishes_only_the_missing_runs(tmp_path):
    spec = make_spec()
    # 3 epochs per run: the interrupt lands inside the third run (pd0.5 seed0) after 1 epoch.
    first = FakeTrainer(interrupt_after_epochs=7)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "s", train_fn=first, log=lambda m: None)
    rec = load_study_dir(tmp_path / "s")
    states = {(r.variant, r.seed): r.state for r in rec.runs}
    assert states[("pd0", 0)] == "done" and states[("pd0", 1)] == "done"
    assert states[("pd0.5", 0)] == "partial"
    assert states[("pd0.8", 1)] == "pending"
    finished = _mtimes(tmp_path / "s")

    second = FakeTrainer()
    out = run_study(spec, tmp_path / "s", train_fn=second, log=lambda m: None)
    assert out.ok
    assert sorted(out.skipped) == [("pd0", 0), ("pd0", 1)]
    assert len(out.done) == 4
    # the partial run resumed from its checkpoint: 2 epochs, not 3; 3 fresh runs x 3 epochs
    assert second.epochs_trained == 2 + 3 * 3
    after = _mtimes(tmp_path / "s")
    for path, t in finished.items():
        assert after[path] == t  # a finished result is never rewritten
    assert {r.state for r in load_study_dir(tmp_path / "s").runs} == {"done"}
    # the resumed run's metrics have one train line per epoch, no duplicates
    lines = [json.loads(x) for x in (tmp_path / "s" / "pd0.5" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines if m["split"] == "train"] == [1, 2, 3]


def test_failing_run_is_recorded_and_the_study_goes_on(tmp_path):
    spec = make_spec()
    out = run_study(spec, tmp_path / "s", train_fn=FakeTrainer(fail_variant="pd0.5"), log=lambda m: None)
    assert not out.ok
    assert sorted((v, s) for v, s, _ in out.failed) == [("pd0.5", 0), ("pd0.5", 1)]
    assert len(out.done) == 4
    failed = json.loads((tmp_path / "s" / "pd0.5" / "seed0" / "failed.json").read_text())
    assert "synthetic failure" in failed["error"]
    text = format_status(tmp_path / "s")
    assert "failed" in text and "4 done" in text
    # fixed: the rerun clears the failure
    out2 = run_study(spec, tmp_path / "s", train_fn=FakeTrainer(), log=lambda m: None)
    assert out2.ok and len(out2.done) == 2
    assert not (tmp_path / "s" / "pd0.5" / "seed0" / "failed.json").exists()


def test_seeds_and_variant_subset(tmp_path):
    spec = make_spec()
    out = run_study(spec, tmp_path / "s", seeds=1, variants=["pd0.8"], train_fn=FakeTrainer(), log=lambda m: None)
    assert out.done == [("pd0.8", 0)]
    text = format_status(tmp_path / "s")
    assert "pd0.8" in text and "pending" in text


def test_overrides_apply_to_every_run(tmp_path):
    spec = make_spec()
    run_study(spec, tmp_path / "s", seeds=1, overrides=["train.epochs=1"], train_fn=FakeTrainer(), log=lambda m: None)
    cfg = json.loads((tmp_path / "s" / "pd0" / "seed0" / "config.json").read_text())
    assert cfg["train"]["epochs"] == 1


def test_a_folder_with_a_different_setup_is_refused(tmp_path):
    spec = make_spec()
    run_study(spec, tmp_path / "s", seeds=1, train_fn=FakeTrainer(), log=lambda m: None)
    before = _mtimes(tmp_path / "s")
    with pytest.raises(ConfigError, match="different config.*train.epochs"):
        run_study(spec, tmp_path / "s", seeds=1, overrides=["train.epochs=5"], train_fn=FakeTrainer(), log=lambda m: None)
    assert _mtimes(tmp_path / "s") == before


def test_progress_names_variant_seed_and_eta(tmp_path):
    spec = make_spec()
    lines: list[str] = []
    run_study(spec, tmp_path / "s", train_fn=FakeTrainer(), log=lines.append)
    text = "\n".join(lines)
    assert "[1/6] pd0 seed0: starting (study ETA unknown)" in text
    assert "[2/6] pd0 seed1: starting (study ETA" in text and "ETA unknown)" not in lines[3]
    assert "pd0.8 seed1 epoch 3/3" in text and "run ETA" in text


def test_cli_run_status_and_exit_code(tmp_path, monkeypatch, capsys):
    import avsf.study.runner as runner
    from avsf.cli import main

    study_file = tmp_path / "pdtest.toml"
    study_file.write_text(
        """
name = "pdtest"
title = "t"
metric = "top1"
[base]
model.pathways = "avslowfast"
[[variant]]
name = "pd0"
set = { model.drop_pathway = 0.0 }
[[variant]]
name = "pd0.8"
set = { model.drop_pathway = 0.8 }
[scale.tiny]
seeds = 1
set = { train.epochs = 1 }
"""
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "_default_train", lambda: FakeTrainer(fail_variant="pd0"))
    assert main(["study", "run", str(study_file), "--scale", "tiny"]) == 1  # one run failed
    monkeypatch.setattr(runner, "_default_train", lambda: FakeTrainer())
    assert main(["study", "run", str(study_file), "--scale", "tiny"]) == 0
    capsys.readouterr()
    assert main(["study", "status", str(study_file)]) == 0
    out = capsys.readouterr().out
    assert "pd0.8" in out and "2 done, 0 partial, 0 failed, 0 pending" in out
    assert main(["study", "run", str(study_file), "--scale", "tiny", "--dry-run"]) == 0
    assert "done" in capsys.readouterr().out


def test_shipped_studies_plan(tmp_path):
    spec = load_study(Path(__file__).resolve().parents[1] / "studies" / "droppathway.toml")
    from avsf.study import plan_study

    plan = plan_study(spec, tmp_path)
    assert len(plan) == len(spec.variants) * spec.scales["small"].seeds
    assert {p.cfg.scale for p in plan} == {"small"}


def test_a_resumed_study_with_a_where_key_changed_passes_the_runner_and_the_trainer_alike(tmp_path):
    """One "same run" rule (avsf.run.config_diff): `--set data.num_threads=1` on a resumed study
    used to pass the runner's check and then fail in the trainer's."""
    import _train_fakes as F
    from avsf.train import train

    def toy_train(cfg, out_dir, *, on_epoch=None, progress=True):
        return train(cfg, out_dir, on_epoch=on_epoch, progress=progress, factories=F.TOYS)

    def interrupted(cfg, out_dir, *, on_epoch=None, progress=True):
        def hook(epoch, metrics):
            raise KeyboardInterrupt  # ^C after the first epoch's checkpoint

        return toy_train(cfg, out_dir, on_epoch=hook, progress=progress)

    spec = make_spec()
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "s", seeds=1, train_fn=interrupted, log=lambda m: None)
    with pytest.raises(ConfigError, match="train.base_lr"):
        run_study(spec, tmp_path / "s", seeds=1, overrides=["train.base_lr=0.5"], train_fn=toy_train,
                  log=lambda m: None)
    out = run_study(spec, tmp_path / "s", seeds=1, overrides=["data.num_threads=1"], train_fn=toy_train,
                    log=lambda m: None)
    assert out.ok and len(out.done) == 3
