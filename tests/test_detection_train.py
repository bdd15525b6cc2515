"""Detection objective (loss, correct, count) and frame-level scoring on hand-made tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from avsf.config import build_config
from avsf.data.detection import BoxAnnotations, Keyframe
from avsf.data.manifest import write_manifest
from avsf.eval import detection as E
from avsf.eval.inference import scoring_for
from avsf.train.detection import box_correct, box_count, box_loss
from avsf.train.objectives import objective_for


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _boxes_batch():
    """B = 2 clips, K = 2 boxes each; valid boxes at flat positions 0 and 3."""
    labels = torch.zeros(2, 2, 2)
    labels[0, 0] = torch.tensor([1.0, 0.0])
    labels[1, 1] = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[True, False], [False, True]])
    out = {"box_logits": torch.tensor([[2.0, -1.0], [0.0, 3.0]], requires_grad=True), "box_index": torch.tensor([0, 3])}
    return out, {"box_labels": labels, "box_mask": mask}


def test_detection_loss_is_the_mean_bce_over_valid_boxes_by_hand():
    out, batch = _boxes_batch()
    # targets (1, 0) and (1, 0): softplus(-x) for a positive, softplus(x) for a negative
    expected = (_softplus(-2.0) + _softplus(-1.0) + _softplus(0.0) + _softplus(3.0)) / 4
    loss = box_loss(out, batch)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert out["box_logits"].grad is not None
    assert box_correct(out, batch).item() == 1  # box 0's top class is its own; box 3's (class 1) is not
    assert box_count(batch).item() == 2


def test_detection_loss_pads_a_wider_head_and_survives_no_boxes():
    out, batch = _boxes_batch()
    wide = {**out, "box_logits": torch.cat([out["box_logits"].detach(), torch.tensor([[-5.0], [-5.0]])], dim=1)}
    expected = (_softplus(-2.0) + _softplus(-1.0) + _softplus(-5.0) + _softplus(0.0) + _softplus(3.0)
                + _softplus(-5.0)) / 6  # the extra class is a negative everywhere
    assert box_loss(wide, batch).item() == pytest.approx(expected, rel=1e-6)
    narrow = {**out, "box_logits": out["box_logits"][:, :1]}
    with pytest.raises(ValueError, match="box_labels have 2 classes but the head has 1"):
        box_loss(narrow, batch)
    empty = {"box_logits": torch.zeros(0, 2, requires_grad=True), "box_index": torch.zeros(0, dtype=torch.int64)}
    loss = box_loss(empty, batch)
    assert loss.item() == 0.0 and loss.requires_grad
    assert box_correct(empty, batch).item() == 0


def test_the_detection_head_trains_on_its_registered_objective():
    cfg = build_config(scale="tiny", overrides={"model.head": "detection"})
    obj = objective_for(cfg)
    assert obj.loss is box_loss and obj.metric == "mAP" and obj.size is box_count


# ----------------------------------------------------------------------------- scoring
A, B, C = (0.1, 0.1, 0.4, 0.4), (0.5, 0.5, 0.9, 0.9), (0.2, 0.2, 0.6, 0.6)


@dataclass
class _Dataset:
    root: Path
    annotations: Any
    class_names: list
    groups: dict
    task: str = "detection"


def _dataset(tmp_path: Path) -> _Dataset:
    """Keyframe row 0: persons A (class 0) and B (classes 0, 1); row 1: person C (class 1)."""
    rows = [{"path": "v.webm", "audio": "", "label": lab, "duration": 4, "fps": 16, "keyframe": t, "video_id": "v",
             "timestamp": t, "split": "test"} for t, lab in ((1, "0;1;"), (2, "1;"))]
    write_manifest(tmp_path / "manifest.csv", rows)
    truth = {("v", 1.0): Keyframe(np.array([A, B]), [[0], [0, 1]]), ("v", 2.0): Keyframe(np.array([C]), [[1]])}
    ann = BoxAnnotations(truth, 2, build_config(scale="tiny"))
    return _Dataset(tmp_path, ann, ["c0", "c1"], {"g": [1]})


def _pred() -> dict[str, torch.Tensor]:
    """Box A seen in two views (visible 1.0 and 0.5), B and C once."""
    return {
        "clip_row": torch.tensor([0, 0, 1]),
        "box_row": torch.tensor([0, 0, 0, 1]), "box_k": torch.tensor([0, 0, 1, 0]),
        "box_view": torch.tensor([0, 1, 0, 0]), "box_visible": torch.tensor([1.0, 0.5, 1.0, 1.0]),
        "box_scores": torch.tensor([[0.9, 0.2], [0.6, 0.8], [0.3, 0.7], [0.5, 0.6]]),
        "box_labels": torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]),
    }


def test_frame_map_of_a_split_by_hand(tmp_path):
    metrics, per_class, record = E.score(_pred(), dataset=_dataset(tmp_path), split="test")
    # A: (0.9 * 1 + 0.6 * 0.5) / 1.5 = 0.8 and (0.2 + 0.4) / 1.5 = 0.4; B (0.3, 0.7); C (0.5, 0.6).
    # class 0, 2 truths (A, B): A 0.8 hit, C 0.5 miss, B 0.3 hit -> AP = 0.5 * 1 + 0.5 * 2/3
    # class 1, 2 truths (B, C): B 0.7 hit, C 0.6 hit, A 0.4 miss -> AP = 1
    assert per_class["accuracy"] == pytest.approx([5 / 6, 1.0])
    assert metrics["mAP"] == pytest.approx(11 / 12) and metrics["mAP_g"] == pytest.approx(1.0)
    assert metrics["top1"] == 1.0 and metrics["boxes"] == 3 and metrics["clips"] == 2
    assert per_class["count"] == [2, 2] and per_class["metric"] == "frame AP at IoU 0.5"
    assert record["task"] == "detection" and record["index"] == [0, 1]
    assert record["detections"]["index"] == [0, 0, 1]
    assert record["detections"]["boxes"][1] == list(B) and record["detections"]["scores"][0] == [0.8, 0.4]
    assert record["keyframes"][1] == {"video_id": "v", "timestamp": 2.0, "boxes": [list(C)], "labels": [[1]]}


def test_a_keyframe_without_a_scored_box_counts_its_truth_as_missed(tmp_path):
    pred = {k: v[[0, 2]] if k.startswith("box_") else v for k, v in _pred().items()}  # no box of row 1 scored
    metrics, per_class, _ = E.score(pred, dataset=_dataset(tmp_path), split="test")
    # class 1: B 0.7 hit, A 0.2 miss; C never scored -> recall stops at 1/2: AP = 0.5
    assert per_class["accuracy"][1] == pytest.approx(0.5)


def test_collect_keeps_each_valid_box_with_its_keyframe_and_view():
    out, batch = _boxes_batch()
    batch.update(index=torch.tensor([7, 9]), view=torch.tensor([0, 2]), box_visible=torch.tensor([[1.0, 0], [0, 0.5]]))
    kept = E.collect(batch, {k: v.detach() for k, v in out.items()})
    assert kept["box_row"].tolist() == [7, 9] and kept["box_k"].tolist() == [0, 1]
    assert kept["box_view"].tolist() == [0, 2] and kept["box_visible"].tolist() == [1.0, 0.5]
    assert torch.allclose(kept["box_scores"][0], torch.sigmoid(torch.tensor([2.0, -1.0])))
    assert kept["clip_row"].tolist() == [7, 9]
    assert scoring_for(_Dataset(Path("."), None, [], {})).collect is E.collect


def test_keyframe_bootstrap_statistic_reproduces_frame_map(tmp_path):
    from avsf.eval.metrics import frame_map

    _, per_class, record = E.score(_pred(), dataset=_dataset(tmp_path), split="test")
    frames = np.array(record["index"])
    stat = E.frame_map_stat([[record, record]], frames)  # 1 variant, 2 seeds
    ones = stat(np.ones((1, 2)))
    assert ones.shape == (1, 2, 1) and ones[0, 0, 0] == pytest.approx(11 / 12)
    groups = E.frame_map_stat([[record]], frames, class_sets=[[0], [1], [0, 1]])(np.ones((1, 2)))
    assert groups[0, :, 0, 0] == pytest.approx([5 / 6, 1.0, 11 / 12])
    # keyframe 0 drawn twice, keyframe 1 once: frame_map of the data with keyframe 0 repeated
    dets = []
    for key, row in (("a", 0), ("b", 0), ("c", 1)):
        for r, box, scores in zip(record["detections"]["index"], record["detections"]["boxes"],
                                  record["detections"]["scores"]):
            dets += [(key, box, c, s) for c, s in enumerate(scores) if r == row]
    truth = [(key, box, c) for key, row in (("a", 0), ("b", 0), ("c", 1))
             for box, labels in zip(record["keyframes"][row]["boxes"], record["keyframes"][row]["labels"])
             for c in labels]
    expected, _ = frame_map(dets, truth, num_classes=2)
    assert stat(np.array([[2.0, 1.0]]))[0, 0, 0] == pytest.approx(expected)
    assert math.isnan(E.frame_map_stat([[record]], frames, class_sets=[[1]])(np.array([[0.0, 0.0]]))[0, 0, 0, 0])
