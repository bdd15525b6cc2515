"""Metrics and multi-view aggregation on hand-made scores."""

import math

import pytest
import torch

from avsf.eval import metrics as M
from avsf.eval.inference import score


def test_topk_and_group_accuracy():
    s = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    y = torch.tensor([0, 1, 1, 2])
    assert M.accuracy(s, y, 1) == pytest.approx(0.5)
    assert M.accuracy(s, y, 2) == pytest.approx(1.0)
    g = M.group_top1(s, y, {"visual": [0], "audio": [1, 2]})
    assert g == {"top1_visual": 1.0, "top1_audio": pytest.approx(1 / 3)}
    pc = M.per_class_accuracy(s, y, 4)
    assert pc[:3] == [1.0, 0.0, 1.0] and math.isnan(pc[3])


def test_average_precision():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert M.average_precision(scores, targets) == pytest.approx((1 + 2 / 3) / 2)
    S = torch.stack([scores, scores.flip(0)], 1)
    T = torch.stack([targets, torch.zeros(4)], 1)  # class 1 has no positive: left out of mAP
    assert M.mean_average_precision(S, T) == pytest.approx((1 + 2 / 3) / 2)


def test_multi_view_softmax_average():
    index = torch.tensor([0, 0, 1, 1, 1])  # index 1's second view was padded twice (DDP)
    view = torch.tensor([0, 1, 0, 1, 1])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0], [1.0, 0.0]])
    uniq, agg = M.aggregate_views(index, view, logits)
    p = torch.softmax(logits, 1)
    assert torch.equal(uniq, torch.tensor([0, 1]))
    assert torch.allclose(agg[0], (p[0] + p[1]) / 2)
    assert torch.allclose(agg[1], (p[2] + p[3]) / 2)


def test_multilabel_sigmoid_and_temporal_max_pool():
    # 2 temporal x 2 spatial views of one video: mean over spatial, max over temporal
    index = torch.zeros(4, dtype=torch.long)
    view = torch.tensor([0, 1, 2, 3])  # t * 2 + s
    logits = torch.tensor([[0.0, 4.0], [2.0, 0.0], [-4.0, 0.0], [-4.0, 0.0]])
    _, agg = M.aggregate_views(index, view, logits, spatial_views=2, multi_label=True)
    s = torch.sigmoid(logits)
    want = torch.maximum((s[0] + s[1]) / 2, (s[2] + s[3]) / 2)
    assert torch.allclose(agg[0], want)


def test_score_reports_per_group_and_per_class():
    pred = {"index": torch.tensor([0, 0, 1, 1]), "view": torch.tensor([0, 1, 0, 1]),
            "logits": torch.tensor([[3.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 1.0]]),
            "label": torch.tensor([0, 0, 1, 1])}
    m, pc = score(pred, groups={"visual": [0], "audio": [1]}, class_names=["a", "b"])
    assert m["top1"] == 0.5 and m["top1_visual"] == 1.0 and m["top1_audio"] == 0.0 and m["clips"] == 2
    assert pc["accuracy"] == [1.0, 0.0] and pc["classes"] == ["a", "b"]


def test_verb_noun_metrics():
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    n = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    m = M.verb_noun_metrics(v, n, torch.tensor([0, 0]), torch.tensor([1, 0]))
    assert m["top1_verb"] == 1.0 and m["top1_noun"] == 0.5 and m["top1"] == 0.5
