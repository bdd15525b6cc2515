"""Scoring the paper's other tasks: video-level pooling of clip scores (eval.video_pool), EPIC's
verb / noun / action accuracy with noun groups, and mAP per class group, on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from avsf.config import ConfigError, build_config
from avsf.eval import inference as I
from avsf.eval import metrics as M

LOGIT = torch.logit  # scores given as probabilities below, turned into the logits the model returns


def _two_clip_video():
    """One video (index 0), two temporal clips x one crop; sigmoid scores 0.9/0.1 and 0.3/0.5."""
    index, view = torch.tensor([0, 0]), torch.tensor([0, 1])
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.5]])
    return index, view, LOGIT(probs)


def test_multilabel_video_score_is_the_max_or_the_mean_of_its_clips():
    index, view, logits = _two_clip_video()
    _, auto = M.aggregate_views(index, view, logits, multi_label=True)
    _, mx = M.aggregate_views(index, view, logits, multi_label=True, temporal_pool="max")
    _, mean = M.aggregate_views(index, view, logits, multi_label=True, temporal_pool="mean")
    assert torch.allclose(auto, torch.tensor([[0.9, 0.5]])) and torch.equal(auto, mx)  # A.6: temporal max
    assert torch.allclose(mean, torch.tensor([[0.6, 0.3]]))


def test_spatial_crops_are_averaged_before_the_temporal_max():
    # two clips x two crops: crop mean per clip (0.5, 0.8), then the max over clips
    index, view = torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 3])
    probs = torch.tensor([[0.2], [0.8], [0.7], [0.9]])
    _, s = M.aggregate_views(index, view, LOGIT(probs), spatial_views=2, multi_label=True, temporal_pool="max")
    assert torch.allclose(s, torch.tensor([[0.8]]))
    _, s = M.aggregate_views(index, view, LOGIT(probs), spatial_views=2, multi_label=True, temporal_pool="mean")
    assert torch.allclose(s, torch.tensor([[0.65]]))


def test_single_label_max_pool_takes_the_most_confident_clip():
    index, view = torch.tensor([0, 0]), torch.tensor([0, 1])
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]))
    _, mean = M.aggregate_views(index, view, logits)
    _, mx = M.aggregate_views(index, view, logits, temporal_pool="max")
    assert torch.allclose(mean, torch.tensor([[0.4, 0.2, 0.4]]))
    assert torch.allclose(mx, torch.tensor([[0.7, 0.2, 0.7]]))


def test_video_pool_is_validated_with_the_allowed_values():
    assert build_config(scale="tiny", overrides={"eval.video_pool": "mean"}).eval.video_pool == "mean"
    with pytest.raises(ConfigError, match=r"eval.video_pool.*'median'.*auto, mean, max"):
        build_config(scale="tiny", overrides={"eval.video_pool": "median"})
    with pytest.raises(ValueError, match="temporal_pool: 'median' is not allowed"):
        M.aggregate_views(*_two_clip_video(), temporal_pool="median")


def test_inference_pools_as_configured():
    index, view, logits = _two_clip_video()
    pred = {"index": index, "view": view, "logits": logits, "label": torch.tensor([[1.0, 0.0], [1.0, 0.0]])}
    assert torch.allclose(I.aggregate(pred, multi_label=True)["scores"], torch.tensor([[0.9, 0.5]]))
    assert torch.allclose(I.aggregate(pred, multi_label=True, video_pool="mean")["scores"], torch.tensor([[0.6, 0.3]]))


def _epic_videos():
    """Three clips, 2 verbs x 3 nouns; noun 0 is seen, nouns 1 and 2 heard (noun_visual / noun_audio).

    clip 0: verb 0, noun 1; verb (.6, .4) x noun (.1, .5, .4): its pair (0,1) .30 ranks first
    clip 1: verb 1, noun 2; verb (.7, .3) x noun (.2, .3, .5): (0,2) .35 > (0,1) .21 > its (1,2) .15
    clip 2: verb 0, noun 0; verb (.9, .1) x noun (.2, .7, .1): (0,1) .63 > its (0,0) .18
    """
    vs = torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.9, 0.1]])
    ns = torch.tensor([[0.1, 0.5, 0.4], [0.2, 0.3, 0.5], [0.2, 0.7, 0.1]])
    return {"index": torch.arange(3), "verb_scores": vs, "noun_scores": ns, "verb": torch.tensor([0, 1, 0]),
            "noun": torch.tensor([1, 2, 0])}


def test_epic_scores_verbs_nouns_actions_and_noun_groups_by_hand():
    groups = {"noun_visual": [0], "noun_audio": [1, 2]}
    m, per_class = I.score_videos(_epic_videos(), groups=groups, class_names=["pan", "kettle", "tap"],
                                  verb_names=["cut", "wash"])
    assert m["top1"] == pytest.approx(1 / 3)  # only clip 0's best pair is its own
    assert m["top5"] == pytest.approx(1.0)
    assert m["top1_verb"] == pytest.approx(2 / 3) and m["top1_noun"] == pytest.approx(2 / 3)
    assert m["top1_noun_audio"] == pytest.approx(1.0)  # clips 0 and 1: nouns 1 and 2 right
    assert m["top1_noun_visual"] == pytest.approx(0.0)  # clip 2: noun 0 taken for 1
    assert m["clips"] == 3 and "top1_visual" not in m
    assert per_class["metric"] == "noun top-1 accuracy" and per_class["classes"] == ["pan", "kettle", "tap"]
    assert per_class["accuracy"] == [0.0, 1.0, 1.0] and per_class["count"] == [1, 1, 1]
    assert per_class["verb_classes"] == ["cut", "wash"] and per_class["verb_accuracy"] == [1.0, 0.0]


def test_action_by_pair_ranking_differs_from_both_heads_in_their_top_k():
    # verb 1 and noun 2 are both in their heads' top-3, but 3 pairs beat (1, 2): at top-3 it is out
    vs, ns = torch.tensor([[0.55, 0.45]]), torch.tensor([[0.5, 0.1, 0.4]])
    pairs = (vs.T * ns).flatten()  # (0,0) .275 (0,2) .22 (1,0) .225 (1,2) .18 (0,1) .055 (1,1) .045
    assert int((pairs > pairs[1 * 3 + 2]).sum()) == 3
    assert not bool(M.action_topk_correct(vs, ns, torch.tensor([1]), torch.tensor([2]), 3)[0])
    assert bool(M.action_topk_correct(vs, ns, torch.tensor([1]), torch.tensor([2]), 4)[0])


def test_map_per_class_group_by_hand():
    # class 0: positives ranked 1st and 3rd -> AP (1 + 2/3) / 2; class 1: ranked 1st -> 1; class 2: no positive
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.5, 0.2, 0.3], [0.4, 0.1, 0.2]])
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    m, per_class = I.score_videos({"index": torch.arange(3), "scores": scores, "label": labels},
                                  groups={"visual": [0, 2], "audio": [1]})
    ap0 = (1 + 2 / 3) / 2
    assert per_class["accuracy"][:2] == pytest.approx([ap0, 1.0]) and math.isnan(per_class["accuracy"][2])
    assert m["mAP"] == pytest.approx((ap0 + 1) / 2)
    assert m["mAP_visual"] == pytest.approx(ap0)  # class 2 has no positive: left out, as in the mAP
    assert m["mAP_audio"] == pytest.approx(1.0)
    assert I.group_map([float("nan")], {"g": [0]}) == {}


def test_clips_cut_from_one_video_pool_into_it():
    # rows 0 and 2 are spans of video "a" (2 temporal views each), row 1 is video "b"; multi-label
    index = torch.tensor([0, 0, 1, 1, 2, 2])
    view = torch.tensor([0, 1, 0, 1, 0, 1])
    probs = torch.tensor([[0.2, 0.1], [0.6, 0.1], [0.3, 0.3], [0.1, 0.9], [0.1, 0.8], [0.4, 0.2]])
    label = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    pred = {"index": index, "view": view, "logits": LOGIT(probs), "label": label}
    pooled = I.views_of_videos(pred, ["a", "b", "a"])
    v = I.aggregate(pooled, multi_label=True)
    assert v["index"].tolist() == [0, 1]  # video "a" under its first row
    assert torch.allclose(v["scores"], torch.tensor([[0.6, 0.8], [0.3, 0.9]]))  # max over all 4 clips of "a"
    assert v["label"].tolist() == [[1.0, 1.0], [0.0, 1.0]]  # the union of its spans' labels
    m = I.aggregate(I.views_of_videos(pred, ["a", "b", "a"]), multi_label=True, video_pool="mean")
    assert torch.allclose(m["scores"][0], torch.tensor([0.325, 0.3]))
    assert I.views_of_videos(pred, ["a", "b", "c"]) is pred and I.views_of_videos(pred, []) is pred
