"""Metrics and multi-view aggregation on hand-made scores."""

import math

import numpy as np
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


@pytest.mark.parametrize("labels", [[1, 1, 0, 0], [1, 0, 1, 0]])
def test_average_precision_does_not_depend_on_the_order_of_ties(labels):
    scores = torch.tensor([0.9, 0.5, 0.5, 0.1])
    # by hand: thresholds .9 (P 1, R 1/2) and .5 (P 2/3, R 1): 1/2 * 1 + 1/2 * 2/3
    assert M.average_precision(scores, torch.tensor(labels, dtype=torch.float32)) == pytest.approx(5 / 6)


def test_average_precision_matches_sklearn_with_ties_and_weights():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        s = rng.integers(0, 6, n) / 5.0  # few distinct values: many ties
        y = rng.random(n) < 0.4
        if not y.any():
            y[0] = True
        w = rng.integers(0, 4, (3, n)).astype(float)
        w[:, np.flatnonzero(y)[0]] += 1  # every weighting keeps a positive
        assert M.average_precision(s, y) == pytest.approx(average_precision_score(y, s))
        batch = M.average_precision(s, y, w)
        for b in range(3):
            assert batch[b] == pytest.approx(average_precision_score(y, s, sample_weight=w[b]))
    assert math.isnan(M.average_precision([0.3, 0.2], [0, 0]))
    with pytest.raises(ValueError, match="sample_weight has 3 columns for 2 scores"):
        M.average_precision([0.3, 0.2], [1, 0], np.ones(3))


def test_charades_map_leaves_out_classes_without_positives():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.5, 0.2, 0.4], [0.5, 0.3, 0.3], [0.1, 0.4, 0.2]])
    targets = torch.tensor([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]], dtype=torch.float32)
    aps = M.per_class_ap(scores, targets)
    assert aps[0] == pytest.approx(5 / 6) and math.isnan(aps[1])
    assert aps[2] == pytest.approx((1 / 2 + 2 / 4) / 2)  # positives at ranks 2 and 4
    assert M.mean_average_precision(scores, targets) == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert math.isnan(M.mean_average_precision(scores, torch.zeros(4, 3)))


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


def test_action_top5_ranks_verb_noun_pairs():
    # A pair in the pair top-5 always has its verb and noun in their top-5 (every better noun
    # makes a better pair with the same verb); the converse fails: both heads right within
    # their top-5, the pair itself ranked 6th.
    verb = torch.tensor([[0.3, 0.2, 0.2, 0.1, 0.1, 0.1]])
    noun = torch.tensor([[0.3, 0.2, 0.2, 0.1, 0.1, 0.1]])
    assert M.topk_correct(verb, torch.tensor([1]), 5)[0] and M.topk_correct(noun, torch.tensor([1]), 5)[0]
    # pair (1, 1) = 0.04; above it: (0,0) .09, (0,1) .06, (0,2) .06, (1,0) .06, (2,0) .06: rank 6
    assert not bool(M.action_topk_correct(verb, noun, torch.tensor([1]), torch.tensor([1]), 5)[0])
    m = M.verb_noun_metrics(verb, noun, torch.tensor([1]), torch.tensor([1]))
    assert m["top5_verb"] == 1.0 and m["top5_noun"] == 1.0 and m["top5"] == 0.0


def test_action_accuracy_in_chunks_equals_one_block(monkeypatch):
    g = torch.Generator().manual_seed(0)
    v, n = torch.rand(50, 7, generator=g).softmax(1), torch.rand(50, 9, generator=g).softmax(1)
    yv, yn = torch.randint(0, 7, (50,), generator=g), torch.randint(0, 9, (50,), generator=g)
    whole = M.action_topk_correct(v, n, yv, yn, 5)
    monkeypatch.setattr(M, "_ACTION_CHUNK", 8)
    assert torch.equal(M.action_topk_correct(v, n, yv, yn, 5), whole)


# ----------------------------------------------------------------------------- detection mAP (AVA)

GT_A = ((0.0, 0.0, 10.0, 10.0), (20.0, 0.0, 30.0, 10.0))


def test_detection_ap_by_hand():
    key = ("vid", 902)
    gt = [(key, GT_A[0], 0), (key, GT_A[1], 0)]
    dets = [
        (key, (0.0, 0.0, 10.0, 8.0), 0, 0.9),  # IoU 0.8 with the first box: TP
        (key, (40.0, 0.0, 50.0, 10.0), 0, 0.8),  # overlaps nothing: FP
        (key, (20.0, 0.0, 30.0, 5.0), 0, 0.7),  # IoU exactly 0.5 with the second box: TP (>= 0.5)
    ]
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; made monotone: 1 up to recall 1/2, 2/3 to 1
    m, aps = M.frame_map(dets, gt)
    assert aps == [pytest.approx(0.5 * 1 + 0.5 * 2 / 3)] and m == pytest.approx(5 / 6)


def test_detection_duplicates_other_keyframes_and_classes():
    k1, k2 = ("v", 1), ("v", 2)
    gt = [(k1, GT_A[0], 0), (k2, GT_A[0], 0), (k1, GT_A[0], 2)]
    dets = [
        (k1, GT_A[0], 0, 0.9),  # TP
        (k1, (0.0, 0.0, 10.0, 9.0), 0, 0.8),  # the same person again: its best box is taken -> FP
        (k2, (20.0, 0.0, 30.0, 10.0), 0, 0.7),  # right class, wrong place at keyframe 2: FP
        (k1, GT_A[0], 1, 0.95),  # class 1 has no ground truth: AP NaN, left out of the mean
        (k1, GT_A[0], 2, 0.2),  # class 2: one TP
    ]
    m, aps = M.frame_map(dets, gt, num_classes=3)
    # class 0: TP, FP, FP over 2 gt boxes -> recall 1/2 at precision 1, never more: AP 1/2
    assert aps[0] == pytest.approx(0.5) and math.isnan(aps[1]) and aps[2] == pytest.approx(1.0)
    assert m == pytest.approx(0.75)


def test_detection_best_box_taken_is_a_false_positive_as_in_the_ava_evaluator():
    key = "k"
    gt = [(key, (0.0, 0.0, 10.0, 10.0), 0), (key, (2.0, 0.0, 12.0, 10.0), 0)]
    # both detections overlap both boxes >= 0.5 but their best match is the first box: VOC/AVA
    # count the second as a false positive rather than moving it to the other box
    dets = [(key, (0.0, 0.0, 10.0, 10.0), 0, 0.9), (key, (0.5, 0.0, 10.5, 10.0), 0, 0.8)]
    _, aps = M.frame_map(dets, gt)
    assert aps[0] == pytest.approx(0.5)


def test_detection_bad_class_is_named():
    with pytest.raises(ValueError, match="class 3 is not allowed; classes are 0..1"):
        M.frame_map([("k", GT_A[0], 3, 0.5)], [("k", GT_A[0], 0)], num_classes=2)


def test_box_iou():
    iou = M.box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3], [5, 5, 6, 6], [0, 0, 2, 2]]))
    assert iou.tolist() == [[pytest.approx(1 / 7), 0.0, 1.0]]
