"""Detection (AVA-style, per-box) and rotation (ROT pretext) heads, and rotate_clip."""

from __future__ import annotations

import pytest
import torch

from avsf.config import ConfigError, build_config
from avsf.flops import count
from avsf.model import build_model
from avsf.model.heads import DETECTION_STRIDE
from avsf.model.pretext import rotate_clip
from _model_batches import batch_for
from _model_batches import tiny as _tiny


def tiny(**overrides):
    return _tiny(5, **overrides)


def clips(cfg, h=32, w=48):
    return batch_for(cfg, h=h, w=w)


def with_boxes(batch):
    boxes = torch.tensor([[[0, 0, 20, 30], [16, 4, 47, 31], [0, 0, 1, 1]],
                          [[1, 2, 30, 20], [0, 0, 0, 0], [8, 8, 40, 24]]], dtype=torch.float)
    mask = torch.tensor([[True, True, False], [True, False, True]])
    return {**batch, "boxes": boxes, "box_mask": mask}


def test_detection_gives_one_row_per_valid_box_and_its_flat_index():
    cfg = tiny(**{"model.head": "detection"})
    out = build_model(cfg).eval()(with_boxes(clips(cfg)))
    assert out["box_logits"].shape == (4, 5) and "logits" not in out
    assert out["box_index"].tolist() == [0, 1, 3, 5]  # b * K + k of the valid boxes
    labels = torch.arange(6.0).view(2, 3, 1)
    assert labels.flatten(0, 1)[out["box_index"]].squeeze(1).tolist() == [0.0, 1.0, 3.0, 5.0]


def test_detection_backbone_keeps_res5_at_one_sixteenth_with_dilation():
    cfg = tiny(**{"model.head": "detection"})
    model = build_model(cfg)
    conv = model.slow.stages[3][0].b[0]
    assert conv.stride == (1, 1, 1) and conv.dilation == (1, 2, 2) and conv.padding == (0, 2, 2)
    seen = {}
    model.slow.stages[3].register_forward_hook(lambda m, i, o: seen.update(res5=o.shape))
    with torch.no_grad():
        model.eval()(with_boxes(clips(cfg, h=64, w=96)))
    assert seen["res5"][-2:] == (64 // DETECTION_STRIDE, 96 // DETECTION_STRIDE)


def test_each_box_reads_its_own_region_and_the_clips_audio():
    cfg = tiny(**{"model.head": "detection", "model.zero_init_last_bn": False, "model.dropout": 0.0})
    model = build_model(cfg).eval()
    batch = with_boxes(clips(cfg))
    with torch.no_grad():
        base = model(batch)["box_logits"]
        moved = batch["boxes"].clone()
        moved[0, 0] = torch.tensor([24.0, 10.0, 47.0, 31.0])
        other = model({**batch, "boxes": moved})["box_logits"]
        assert not torch.allclose(other[0], base[0]) and torch.allclose(other[1:], base[1:])
        louder = model({**batch, "audio": batch["audio"] * 3})["box_logits"]
    assert not torch.allclose(louder, base)  # audio enters (laterals and pooled audio per box)


def test_detection_trains_and_counts_flops_on_non_square_clips():
    cfg = tiny(**{"model.head": "detection"})
    model = build_model(cfg).train()
    out = model(with_boxes(clips(cfg)))
    out["box_logits"].sum().backward()
    assert model.head.fc.weight.grad is not None
    assert count(cfg, input_size=(32, 48)).gflops > count(tiny(), input_size=(32, 48)).gflops


def test_detection_and_rotation_need_the_visual_pathways():
    for sets in ({"model.head": "detection", "model.pathways": "audio"},
                 {"model.rot_head": True, "model.pathways": "late-ensemble"}):
        with pytest.raises(ConfigError, match="model.head|model.rot_head"):
            build_config(scale="tiny", overrides=sets)


def test_rotation_head_predicts_four_ways_beside_the_class_logits():
    cfg = tiny(**{"model.rot_head": True})
    out = build_model(cfg).eval()(clips(cfg, h=32, w=32))
    assert out["rot_logits"].shape == (2, 4) and out["logits"].shape == (2, 5)
    assert "rot_logits" not in build_model(tiny()).eval()(clips(cfg, h=32, w=32))
    cfg = tiny(**{"model.rot_head": True, "model.pathways": "slowfast"})
    assert build_model(cfg).eval()(clips(cfg, h=32, w=32))["rot_logits"].shape == (2, 4)


def test_rotate_clip_turns_both_visual_pathways_and_nothing_else():
    batch = {"slow": torch.arange(2 * 4.0).view(1, 1, 2, 2, 2).repeat(2, 1, 1, 1, 1),
             "fast": torch.randn(2, 1, 4, 2, 2), "audio": torch.randn(2, 1, 8, 4), "label": torch.tensor([1, 2])}
    snapshot = {k: v.clone() for k, v in batch.items()}
    turned = rotate_clip(batch, 1)
    assert torch.equal(turned["slow"][0, 0, 0], torch.tensor([[1.0, 3.0], [0.0, 2.0]]))  # 90 deg counter-clockwise
    assert torch.equal(turned["fast"], torch.rot90(batch["fast"], 1, dims=(-2, -1)))
    assert turned["audio"] is batch["audio"] and turned["label"] is batch["label"]
    assert all(torch.equal(batch[k], snapshot[k]) for k in batch)  # the input is untouched
    assert torch.equal(rotate_clip(batch, 4)["slow"], batch["slow"])
    per_clip = rotate_clip(batch, torch.tensor([0, 2]))
    assert torch.equal(per_clip["slow"][0], batch["slow"][0])
    assert torch.equal(per_clip["slow"][1], torch.rot90(batch["slow"][1], 2, dims=(-2, -1)))


def test_rotate_clip_refuses_what_cannot_be_one_batch():
    wide = {"slow": torch.zeros(2, 3, 2, 4, 6), "fast": torch.zeros(2, 3, 4, 4, 6)}
    assert rotate_clip(wide, 1)["slow"].shape == (2, 3, 2, 6, 4)  # one turn for all: fine
    assert rotate_clip(wide, torch.tensor([0, 2]))["slow"].shape == (2, 3, 2, 4, 6)
    with pytest.raises(ValueError, match="square"):
        rotate_clip(wide, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one rotation per clip"):
        rotate_clip(wide, torch.tensor([0, 1, 2]))


def test_the_detection_objective_reads_the_labels_of_the_scored_boxes():
    from avsf.train.objectives import objective_for

    cfg = build_config(scale="tiny", overrides={"model.num_classes": 5, "model.head": "detection"})
    batch = with_boxes(clips(cfg.model))
    labels = torch.zeros(2, 3, 5)
    labels[0, 0, 1] = labels[0, 1, 2] = labels[1, 0, 3] = labels[1, 2, 4] = 1.0
    labels[0, 2, 0] = 1.0  # a masked box's label is never read
    batch["box_labels"] = labels
    out = build_model(cfg.model).train()(batch)
    objective = objective_for(cfg)
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        out["box_logits"], torch.stack([labels[0, 0], labels[0, 1], labels[1, 0], labels[1, 2]]))
    assert objective.loss(out, batch, cfg).item() == pytest.approx(want.item())
    assert objective.size(batch) == 4 and 0 <= int(objective.correct(out, batch)) <= 4
