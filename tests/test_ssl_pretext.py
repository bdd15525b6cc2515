"""Pretext tasks (avsf.train.pretext): ROT's turns and loss, the label-free "pretext" objective,
its config rules, and pretraining runs with the toy trainer (no label anywhere)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F_

import _train_fakes as F
from avsf.config import ConfigError
from avsf.train import train
from avsf.train.objectives import auxiliaries_for, objective_for
from avsf.train.pretext import (
    evaluate_pretext,
    pretext_correct,
    rot_correct,
    rot_loss,
    rotation_targets,
    with_rotation,
)

LABEL_FREE = {"train.objective": "pretext", "data.label_free": True}
PRETEXT = {**LABEL_FREE, "model.rot_head": True, "train.rot_weight": 1.0}


def _batch(n=6, h=4):
    g = torch.Generator().manual_seed(0)
    slow = torch.randn(n, 3, 2, h, h, generator=g)
    fast = torch.randn(n, 3, 4, h, h, generator=g)
    return {"slow": slow, "fast": fast, "audio": torch.randn(n, 1, 8, 4, generator=g), "index": torch.arange(n)}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_turns_are_a_function_of_the_step_generator_and_cover_all_four():
    a = rotation_targets(400, _gen(17))
    assert torch.equal(a, rotation_targets(400, _gen(17)))  # a resumed run draws the same turns
    assert not torch.equal(a, rotation_targets(400, _gen(18)))  # the next step draws others
    assert a.dtype == torch.int64 and set(a.tolist()) == {0, 1, 2, 3}
    assert (torch.bincount(a, minlength=4) > 60).all()
    # independent of AVS's draws from the same generator seed (hard-negative mask: torch.rand)
    g = _gen(17)
    avs_draw = torch.rand(400, generator=g)
    assert not torch.equal((avs_draw * 4).long(), a)


def test_with_rotation_turns_both_visual_pathways_per_clip_and_keeps_the_batch():
    batch = _batch()
    before = {k: v.clone() for k, v in batch.items()}
    out = with_rotation(batch, 0.3, F.toy_config(**PRETEXT), _gen(5))
    k = out["rot_target"]
    assert torch.equal(k, rotation_targets(6, _gen(5)))
    for i in range(6):
        for key in ("slow", "fast"):
            assert torch.equal(out[key][i], torch.rot90(batch[key][i], int(k[i]), dims=(-2, -1)))
    assert out["audio"] is batch["audio"]  # audio is not turned
    for key, v in before.items():
        assert torch.equal(batch[key], v)  # the caller's batch is untouched
    assert "rot_target" not in batch


def test_rot_loss_is_weighted_cross_entropy_and_correct_counts_the_right_turns():
    cfg = F.toy_config(**{**PRETEXT, "train.rot_weight": 0.5})
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0]])
    batch = {"rot_target": torch.tensor([0, 1, 3]), "slow": torch.zeros(3, 3, 1, 2, 2)}
    out = {"rot_logits": logits}
    assert rot_loss(out, batch, cfg).item() == pytest.approx(0.5 * F_.cross_entropy(logits, batch["rot_target"]).item())
    right, total = rot_correct(out, batch)
    assert (right.item(), total.item()) == (2, 3)
    assert pretext_correct(out, batch).item() == pytest.approx(2.0)  # 2/3 of 3 clips (ROT the only task scored)


def test_objective_and_auxiliaries_follow_the_config():
    assert objective_for(F.toy_config()).name == "softmax"
    pre = F.toy_config(**PRETEXT)
    assert objective_for(pre).name == "pretext" and not objective_for(pre).reads_labels
    assert [a.name for a in auxiliaries_for(pre)] == ["avs", "rot"]
    assert [a.name for a in auxiliaries_for(F.toy_config(**PRETEXT, **{"train.avs_weight": 0.0}))] == ["rot"]
    # the linear protocol trains the classifier only: no auxiliary loss has anything to train
    assert auxiliaries_for(F.toy_config(**{"train.freeze": "all-but-head", "model.rot_head": True,
                                           "train.rot_weight": 1.0})) == []


@pytest.mark.parametrize("sets, key, words", [
    ({"train.rot_weight": 1.0}, "train.rot_weight", "model.rot_head = true"),
    ({**LABEL_FREE, "train.avs_weight": 0.0}, "train.objective", "no pretext loss"),
    ({**LABEL_FREE, "model.pathways": "slowfast"}, "train.objective", "no pretext loss"),
    ({**LABEL_FREE, "train.freeze": "all-but-head"}, "train.freeze", "learn nothing"),
    ({**LABEL_FREE, "data.label_fraction": 0.1}, "data.label_fraction", "reads no labels"),
    ({"train.objective": "pretext"}, "data.label_free", "set data.label_free = true"),
    ({"train.objective": "labels-please"}, "train.objective", "task, softmax"),
    ({"train.freeze": "all"}, "train.freeze", "none, all-but-head"),
    ({"data.label_fraction": 0.0}, "data.label_fraction", "(0, 1]"),
    ({"data.label_fraction": 1.5}, "data.label_fraction", "(0, 1]"),
])
def test_config_rules_name_the_key(sets, key, words):
    with pytest.raises(ConfigError) as e:
        F.toy_config(**sets)
    assert str(e.value).startswith(key) and words in str(e.value)


@pytest.mark.parametrize("objective", ["task", "softmax"])
def test_a_labelled_objective_on_label_free_data_is_refused_before_any_write(tmp_path, objective):
    cfg = F.toy_config(**{"data.label_free": True, "train.objective": objective})
    with pytest.raises(ConfigError, match=r"^data.label_free: True is not allowed; .* learns from labels"):
        train(cfg, tmp_path / "run", progress=False, factories=F.TOYS)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) in ([], [".lock"])


def test_pretraining_reads_no_label_and_learns_from_the_pretext_losses_alone(tmp_path):
    """The toy dataset yields no `label` at all: any read of one would be a KeyError."""
    cfg = F.toy_config(**PRETEXT, **{"train.epochs": 2})
    result = train(cfg, tmp_path / "pre", progress=False, factories=F.TOYS)
    for key in ("pretext_top1", "rot_top1", "avs_top1"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["pretext_top1"] == pytest.approx((result["rot_top1"] + result["avs_top1"]) / 2)
    assert "top1" not in result and result["best_epoch"] >= 1
    assert not (tmp_path / "pre" / "predictions.json").exists()  # no classes scored, no predictions
    assert not (tmp_path / "pre" / "per_class.json").exists()
    rows = [json.loads(x) for x in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    for r in train_rows:  # no task loss: the loss is the pretext losses' sum
        assert r["loss"] == pytest.approx(r["avs_loss"] + r["rot_loss"], rel=1e-6)
    assert [r["pretext_top1"] for r in rows if r["split"] == "val"]


def test_rot_learns_the_turns_on_the_toy_data(tmp_path):
    cfg = F.toy_config(**PRETEXT, **{"train.avs_weight": 0.0, "train.epochs": 6, "train.base_lr": 0.5})
    result = train(cfg, tmp_path / "rot", progress=False, factories=F.TOYS)
    assert result["rot_top1"] > 0.9  # chance is 0.25
    assert "avs_top1" not in result


def test_pretraining_resumes_exactly_after_an_interruption(tmp_path):
    cfg = F.toy_config(**PRETEXT, **{"train.epochs": 3, "train.checkpoint_every_steps": 2})
    toys = F.TOYS
    straight = train(cfg, tmp_path / "a", progress=False, factories=toys)

    def stop(epoch, metrics):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", progress=False, factories=toys, on_epoch=stop)
    resumed = train(cfg, tmp_path / "b", progress=False, factories=toys)
    volatile = {"train_time_s", "test_time_s", "provenance"}
    assert {k: v for k, v in resumed.items() if k not in volatile} == \
        {k: v for k, v in straight.items() if k not in volatile}
    assert F.metric_rows(tmp_path / "b") == F.metric_rows(tmp_path / "a")


def test_pretext_scores_are_fixed_and_leave_the_model_in_eval_mode():
    """Validation draws the same turns each time (keyed by seed and batch), runs every layer in
    evaluation mode and still has the model score the AVS pairs."""
    from avsf.distributed import setup

    cfg = F.toy_config(**PRETEXT)
    model = F.ToyModel(4, rot_head=True)
    info = setup()
    loader = F.ToyLoader("val", "test", 8, labels=False)
    model.train()
    stats = model.bn.running_mean.clone()
    a = evaluate_pretext(model, loader, info, cfg)
    b = evaluate_pretext(model, loader, info, cfg)
    assert a.metrics == b.metrics and set(a.metrics) == {"avs_top1", "rot_top1", "pretext_top1", "clips"}
    assert a.metrics["clips"] == 16 and not model.training
    assert 0.0 <= a.metrics["avs_top1"] <= 1.0  # the pairs were scored (not NaN)
    assert torch.equal(model.bn.running_mean, stats)  # BN in eval mode throughout
    assert a.per_class == {} and a.predictions == {}


@pytest.mark.slow
def test_pretraining_killed_at_a_mid_epoch_checkpoint_resumes_to_the_same_result(tmp_path):
    """The real model and data at the tiny scale, AVS+ROT pretraining: SIGKILL right after a
    mid-epoch checkpoint (observed from outside), then the same command again = a run never killed."""
    import os
    import signal
    import subprocess
    import sys

    sets = ["train.objective=pretext", "data.label_free=true", "model.rot_head=true", "train.rot_weight=1",
            "train.num_threads=1", "train.deterministic=true", "train.epochs=2", "train.checkpoint_every_steps=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")

    def command(out):
        argv = [sys.executable, "-m", "avsf", "train", "--config", os.devnull, "--scale", "tiny", "--no-progress",
                "--json", "--out", str(out)]
        return argv + [x for s in sets for x in ("--set", s)]

    pipes = dict(env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    straight = subprocess.Popen(command(tmp_path / "a"), **pipes)
    victim = subprocess.Popen(command(tmp_path / "b"), **pipes)
    state = F.kill_at_a_mid_epoch_checkpoint(victim, tmp_path / "b")
    assert victim.returncode == -signal.SIGKILL and state["batch"] > 0
    assert not (tmp_path / "b" / "result.json").exists()
    _, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err[-3000:]
    resumed = subprocess.run(command(tmp_path / "b"), capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def result(run):
        r = json.loads((run / "result.json").read_text())
        return {k: v for k, v in r.items() if k not in ("train_time_s", "test_time_s", "provenance")}

    assert result(tmp_path / "b") == result(tmp_path / "a") and "rot_top1" in result(tmp_path / "a")
    assert F.metric_rows(tmp_path / "b") == F.metric_rows(tmp_path / "a")


@pytest.mark.slow
def test_a_dataset_whose_labels_are_all_invalid_pretrains_fine(tmp_path, monkeypatch):
    """The real loader and model: the tiny benchmark's clips with every label replaced by text
    and no class list. Pretraining (label-free) runs; a supervised run on it is refused."""
    import csv

    from avsf.config import build_config
    from avsf.data import dataset_info

    monkeypatch.setenv("AVSF_CACHE", str(tmp_path / "cache"))
    source = dataset_info(build_config(scale="tiny")).root
    data = tmp_path / "nolabels"
    data.mkdir()
    for split in ("train", "val", "test"):
        (data / split).symlink_to(source / split)
        with open(source / f"{split}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        with open(data / f"{split}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({**r, "label": "no label here"} for r in rows)
    sets = {**PRETEXT, "data.dataset": str(data), "train.epochs": 1, "train.num_threads": 1}
    result = train(build_config(scale="tiny", overrides=sets), tmp_path / "pre", progress=False)
    assert 0.0 <= result["pretext_top1"] <= 1.0 and result["num_classes"] == 1  # no class list: a 1-way head
    with pytest.raises(Exception, match="label"):
        train(build_config(scale="tiny", overrides={"data.dataset": str(data), "train.epochs": 1}), tmp_path / "sup",
              progress=False)
