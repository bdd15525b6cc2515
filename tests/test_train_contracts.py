"""What studies need from the trainer: predictions.json (contract 3), convergence and early
stopping (contract 6), the train row's throughput fields (contract 5), and data that depends
only on (seed, epoch, step), so every variant of a study sees the same clips and negatives."""

import math

import pytest
import torch

import _train_fakes as F
from avsf.config import build_config
from avsf.run import RunDir
from avsf.train import train as _train
from avsf.train.convergence import plateaued


def train(cfg, out, *, factories=F.TOYS, **kw):
    return _train(cfg, out, progress=False, factories=factories, **kw)


def test_predictions_json_holds_video_level_scores_in_manifest_order(tmp_path):
    result = train(F.toy_config(), tmp_path / "run")
    pred = RunDir(tmp_path / "run").read_predictions()
    n = F.N_CLIPS["test"]
    assert pred["split"] == "test" and pred["classes"] == [f"c{i}" for i in range(F.NUM_CLASSES)]
    assert pred["index"] == list(range(n)) and pred["label"] == [i % F.NUM_CLASSES for i in range(n)]
    assert len(pred["scores"]) == n and all(len(s) == F.NUM_CLASSES for s in pred["scores"])
    for row in pred["scores"]:
        assert sum(row) == pytest.approx(1.0, abs=1e-4)  # softmax mean over the 2 views
        assert all(round(v, 5) == v for v in row)
    correct = [max(range(F.NUM_CLASSES), key=s.__getitem__) == y for s, y in zip(pred["scores"], pred["label"])]
    assert sum(correct) / n == pytest.approx(result["top1"])


def test_plateau_rule():
    assert not plateaued([0.5, 0.6, 0.7], 3, 0.02)  # not more than k evaluations
    assert plateaued([0.5, 0.8, 0.79, 0.81, 0.80], 3, 0.02)  # best of last 3 (0.81) - best before (0.8) <= 0.02
    assert not plateaued([0.5, 0.6, 0.7, 0.75, 0.8], 3, 0.02)  # still gaining 0.2
    assert plateaued([0.9, 0.5, 0.5], 2, 0.0)  # the last k are worse than before: no gain
    assert not plateaued([0.5, 0.6], 1, 0.05)


def test_convergence_is_recorded_and_early_stop_ends_the_run_at_the_first_plateau(tmp_path):
    full = train(F.toy_config(**{"train.plateau_window": 10}), tmp_path / "full")
    assert (full["converged"], full["stopped_epoch"], full["epochs"]) == (0, 3, 3)
    assert 1 <= full["best_epoch"] <= 3
    # tol 1.0: any two evaluations count as a plateau; min_epochs 3 holds the stop until epoch 3
    cfg = F.toy_config(**{"train.epochs": 6, "train.early_stop": True, "train.plateau_window": 1,
                          "train.plateau_tol": 1.0, "train.min_epochs": 3})
    r = train(cfg, tmp_path / "stop")
    assert (r["converged"], r["stopped_epoch"], r["epochs"]) == (1, 3, 6)
    rows = RunDir(tmp_path / "stop").read_metrics()
    assert [m["epoch"] for m in rows if m["split"] == "train"] == [1, 2, 3]

    class Stop(Exception):
        pass

    def killed_after_the_decision(epoch, metrics):
        if epoch == 3:
            raise Stop  # after epoch 3's checkpoint, which holds the decision

    with pytest.raises(Stop):
        train(cfg, tmp_path / "again", on_epoch=killed_after_the_decision)
    again = train(cfg, tmp_path / "again")  # resumes straight into the test
    assert again["stopped_epoch"] == 3 and again["top1"] == r["top1"]
    assert len(RunDir(tmp_path / "again").read_metrics()) == 6


def test_train_rows_record_throughput_data_wait_and_memory(tmp_path):
    train(F.toy_config(**{"train.epochs": 1}), tmp_path / "run")
    row = next(m for m in RunDir(tmp_path / "run").read_metrics() if m["split"] == "train")
    assert row["clips_per_s"] > 0 and math.isfinite(row["clips_per_s"])
    assert 0.0 <= row["data_wait_share"] <= 1.0
    assert row["peak_mem_mb"] > 1.0  # the process's peak RSS on the CPU


def _recording(seen):
    def wrap(m):
        fwd = m.forward

        def forward(batch):
            if m.training:
                seen.append((batch["index"].tolist(), batch.get("audio_negative", torch.zeros(0)).flatten().tolist()))
            return fwd(batch)

        m.forward = forward
        return m

    return wrap


def test_every_variant_sees_the_same_batches_and_avs_negatives(tmp_path):
    """Paired comparisons: the order of clips and the AVS negatives depend on (seed, epoch, step)
    only, never on the model's own settings or its use of the global RNG."""
    a, b = [], []
    train(F.toy_config(**{"model.drop_pathway": 0.0}), tmp_path / "a", factories=F.factories(wrap_model=_recording(a)))
    train(F.toy_config(**{"model.drop_pathway": 0.8, "model.dropout": 0.1, "train.base_lr": 0.05}), tmp_path / "b",
          factories=F.factories(wrap_model=_recording(b)))
    assert a == b and len(a) == 18
    c = []
    train(F.toy_config(**{"train.seed": 1}), tmp_path / "c", factories=F.factories(wrap_model=_recording(c)))
    assert [neg for _, neg in c] != [neg for _, neg in a]  # another seed: other negatives


@pytest.mark.slow
def test_the_real_loader_draws_the_same_clips_for_every_variant(tmp_path):
    from avsf.data import build_loader

    base = {"data.loader": "reference", "model.num_classes": 0}
    variants = [{}, {"model.drop_pathway": 0.0}, {"model.fusion_stages": ["res2"]}, {"model.avs_layers": []},
                {"model.pathways": "slowfast"}]
    specs = []
    for v in variants:
        cfg = build_config(scale="tiny", overrides={**base, **v})
        for epoch in (0, 1):
            loader = build_loader(cfg, "train", "train", epoch=epoch, with_shifted_audio=bool(cfg.model.avs_layers))
            specs.append([(s.row, s.frames, s.resize, s.crop, s.flip, s.audio_start) for s in loader.specs()])
    per_epoch = [specs[i::2] for i in (0, 1)]
    for same_epoch in per_epoch:
        assert all(s == same_epoch[0] for s in same_epoch)
    assert per_epoch[0][0] != per_epoch[1][0]  # a new epoch, a new order


def test_tensorboard_scalars_are_the_metrics_rows(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(F.toy_config(**{"train.tensorboard": True}), tmp_path / "run")
    run = RunDir(tmp_path / "run")
    acc = EventAccumulator(str(run.tensorboard_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/top1", "train/data_wait_share", "train/clips_per_s", "val/top1"} <= tags
    rows = run.read_metrics()
    for split, key in (("train", "loss"), ("train", "lr"), ("val", "top1")):
        want = [(m["epoch"], m[key]) for m in rows if m["split"] == split]
        got = [(e.step, e.value) for e in acc.Scalars(f"{split}/{key}")]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)  # stored as float32
    assert not (tmp_path / "plain").exists()
    train(F.toy_config(**{"train.epochs": 1}), tmp_path / "plain")
    assert not RunDir(tmp_path / "plain").tensorboard_dir.exists()  # off by default


def test_num_classes_follows_the_data_at_every_scale_unless_set(tmp_path):
    from avsf.train import resolve_config

    for scale in ("tiny", "small", "paper"):
        assert build_config(scale=scale).model.num_classes == 0, scale
    cfg = build_config(scale="paper", overrides={"train.epochs": 1, "train.warmup_epochs": 0.5})
    assert train(cfg, tmp_path / "run")["num_classes"] == F.NUM_CLASSES  # not a 400-way head
    assert build_config(scale="paper", overrides={"model.num_classes": 400}).model.num_classes == 400
    charades = resolve_config(variant="table4/avslowfast-r101-nl", scale="paper")
    assert charades.model.num_classes == 157  # a variant that sets it keeps it


def test_clips_moved_off_the_gpu_decoder_are_counted_per_epoch_and_run(tmp_path):
    from dataclasses import replace

    def loader(cfg, split, mode, **kw):
        ld = F.TOYS.loader(cfg, split, mode, **kw)
        ld.cpu_fallback_clips, ld.pyav_fallback_clips = (3, 1) if split == "train" else (0, 0)
        return ld

    result = train(F.toy_config(), tmp_path / "run", factories=replace(F.TOYS, loader=loader))
    rows = [r for r in F.metric_rows(tmp_path / "run") if r["split"] == "train"]
    assert [(r["cpu_fallback_clips"], r["pyav_fallback_clips"]) for r in rows] == [(3, 1)] * 3
    assert (result["cpu_fallback_clips"], result["pyav_fallback_clips"]) == (9, 3)
