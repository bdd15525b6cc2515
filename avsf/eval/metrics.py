"""Classification and detection metrics on score matrices: top-k, average precision and mAP
(single- and multi-label, frame-level detection), EPIC verb/noun/action accuracy, per-class and
per-group accuracy, and the aggregation of multi-view test scores into one score per video.

Average precision follows `sklearn.metrics.average_precision_score` (tied scores form one
threshold, so the result never depends on the order of ties); the report's bootstrap
(`avsf.stats`) calls the same function with many clip weightings at once. Detection mAP follows
the AVA / PASCAL VOC evaluator (`frame_map`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from avsf.boxes import box_iou


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) bool: is the label among the k highest scores (k clipped to the class count)."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == labels.view(-1, 1)).any(dim=1)


def accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    if scores.shape[0] == 0:
        return float("nan")
    return topk_correct(scores, labels, k).double().mean().item()


def multilabel_topk_correct(scores: torch.Tensor, targets: torch.Tensor, k: int = 1) -> torch.Tensor:
    """(N,) bool: do the sample's k highest-scoring classes contain a positive class."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (targets.gather(1, top) > 0.5).any(dim=1)


def multilabel_topk(scores: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Share of samples whose k highest-scoring classes contain a positive class."""
    if scores.shape[0] == 0:
        return float("nan")
    return multilabel_topk_correct(scores, targets, k).double().mean().item()


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def average_precision(scores: Any, targets: Any, sample_weight: Any = None) -> Any:
    """AP of one class: sum over distinct score thresholds t of (R_t - R_t-1) * P_t.

    This is `sklearn.metrics.average_precision_score` (no interpolation): samples with equal
    scores form one threshold, so (.9, .5, .5, .1) with labels (1, 1, 0, 0) or (1, 0, 1, 0)
    both give 0.833. NaN when the class has no positive (weight). `sample_weight` is None, one
    weighting (N,) -> a float, or B weightings (B, N) -> a (B,) array (the bootstrap's clip
    counts; a weight of k counts the sample k times).
    """
    s, y = _numpy(scores).ravel(), _numpy(targets).ravel() > 0.5
    single = sample_weight is None or np.ndim(sample_weight) == 1
    w = np.ones((1, len(s))) if sample_weight is None else np.atleast_2d(_numpy(sample_weight))
    if w.shape[1] != len(s):
        raise ValueError(f"sample_weight has {w.shape[1]} columns for {len(s)} scores")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    pos = np.flatnonzero(y)
    if pos.size == 0:
        ap = np.full(len(w), np.nan)
        return float(ap[0]) if single else ap
    # a threshold = a run of equal scores; only the runs holding a positive add to the sum
    run_end = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    end_of_pos = run_end[np.searchsorted(run_end, pos)]
    last = np.r_[end_of_pos[1:] != end_of_pos[:-1], True]  # the last positive of each run
    ws = w[:, order]
    tp = np.cumsum(ws[:, pos], axis=1)[:, last]
    seen = np.cumsum(ws, axis=1, out=ws)[:, end_of_pos[last]]
    n_pos = tp[:, -1]
    gained = np.diff(tp, axis=1, prepend=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, tp / np.where(seen > 0, seen, 1.0), 0.0)
        ap = (gained * precision).sum(axis=1) / n_pos
    ap = np.where(n_pos > 0, ap, np.nan)
    return float(ap[0]) if single else ap


def per_class_ap(scores: torch.Tensor, targets: torch.Tensor) -> list[float]:
    return [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP over classes (multi-label, Charades): the mean AP of the classes with at least one
    positive. A class without positives has no defined AP and is left out, as the Charades
    evaluator (AP NaN, mean of the rest) and PySlowFast's `get_map` (drops all-zero columns) do.
    NaN when no class has a positive."""
    aps = [a for a in per_class_ap(scores, targets) if not math.isnan(a)]
    return sum(aps) / len(aps) if aps else float("nan")


def per_class_accuracy(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Top-1 accuracy of each class over its own samples (NaN for a class without samples)."""
    correct = topk_correct(scores, labels, 1).double()
    out = []
    for c in range(num_classes):
        sel = labels == c
        out.append(correct[sel].mean().item() if sel.any() else float("nan"))
    return out


def group_top1(scores: torch.Tensor, labels: torch.Tensor, groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """`top1_<group>`: top-1 over the samples whose label is one of the group's classes."""
    correct = topk_correct(scores, labels, 1).double()
    out = {}
    for name, classes in groups.items():
        sel = torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))
        if sel.any():
            out[f"top1_{name}"] = correct[sel].mean().item()
    return out
def aggregate_views(
    index: torch.Tensor,
    view: torch.Tensor | None,
    scores: torch.Tensor,
    *,
    spatial_views: int = 1,
    multi_label: bool = False,
    temporal_pool: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One score row per video from its views.

    Single-label: the mean of the softmax scores over all views (SlowFast's protocol).
    Multi-label: sigmoid, mean over spatial views, then max over temporal views (temporal
    max-pooling, A.6). `temporal_pool` "mean" / "max" forces either pooling for both kinds
    (`eval.video_pool`; "auto" = the above). `scores` are raw logits;
    `view = temporal_idx * spatial_views + spatial_idx`.
    A view seen twice (distributed padding) counts once. Returns (sorted unique indices, scores).
    """
    if temporal_pool not in ("auto", "mean", "max"):
        raise ValueError(f"temporal_pool: '{temporal_pool}' is not allowed; choose one of: auto, mean, max")
    pool_max = temporal_pool == "max" or (temporal_pool == "auto" and multi_label)
    probs = torch.sigmoid(scores.float()) if multi_label else torch.softmax(scores.float(), dim=1)
    if view is None:
        view = torch.zeros_like(index)
    uniq, inverse = torch.unique(index, return_inverse=True)
    n, c = len(uniq), scores.shape[1]
    # Deduplicate (index, view) pairs first.
    key = inverse.to(torch.int64) * (int(view.max()) + 1 if len(view) else 1) + view.to(torch.int64)
    _, first = _first_occurrence(key)
    inverse, view, probs = inverse[first], view[first], probs[first]
    if not pool_max:
        total = torch.zeros(n, c).index_add_(0, inverse, probs)
        count = torch.zeros(n).index_add_(0, inverse, torch.ones(len(inverse)))
        return uniq, total / count.clamp(min=1).unsqueeze(1)
    temporal = (view // max(spatial_views, 1)).to(torch.int64)
    n_t = int(temporal.max()) + 1 if len(temporal) else 1
    slot = inverse * n_t + temporal
    total = torch.zeros(n * n_t, c).index_add_(0, slot, probs)
    count = torch.zeros(n * n_t).index_add_(0, slot, torch.ones(len(slot)))
    mean = (total / count.clamp(min=1).unsqueeze(1)).view(n, n_t, c)
    mean = mean.masked_fill((count.view(n, n_t) == 0).unsqueeze(2), float("-inf"))
    return uniq, mean.max(dim=1).values


def _first_occurrence(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    uniq, inv = torch.unique(key, return_inverse=True)
    first = torch.full((len(uniq),), len(key), dtype=torch.int64)
    first.scatter_reduce_(0, inv, torch.arange(len(key)), reduce="amin")
    return uniq, first.sort().values


def classification_metrics(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    groups: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, float]:
    """top1, top5 (+ mAP for multi-label (N, C) targets; + top1_<group> for single-label)."""
    if labels.dim() == 2:
        return {
            "top1": multilabel_topk(scores, labels, 1),
            "top5": multilabel_topk(scores, labels, 5),
            "mAP": mean_average_precision(scores, labels),
        }
    out = {"top1": accuracy(scores, labels, 1), "top5": accuracy(scores, labels, 5)}
    if groups:
        out.update(group_top1(scores, labels, groups))
    return out


# ----------------------------------------------------------------------------- EPIC verb / noun / action

_ACTION_CHUNK = 4096  # clips per block: V x N pair scores of a block stay small in memory


def action_topk_correct(
    verb_scores: torch.Tensor, noun_scores: torch.Tensor, verb: torch.Tensor, noun: torch.Tensor, k: int
) -> torch.Tensor:
    """(N,) bool: is the true (verb, noun) pair among the k highest-scoring pairs.

    A pair's score is P(verb) * P(noun), the outer product of the two heads' class
    probabilities (softmax, view-averaged, as `aggregate_views` gives them), ranked over all
    verb x noun pairs as EPIC-Kitchens' action evaluation does; the true pair's rank, not
    "verb in the verb top-k and noun in the noun top-k".
    """
    n_verb, n_noun = verb_scores.shape[1], noun_scores.shape[1]
    target = verb.long() * n_noun + noun.long()
    out = []
    for lo in range(0, verb_scores.shape[0], _ACTION_CHUNK):
        v, n = verb_scores[lo : lo + _ACTION_CHUNK].float(), noun_scores[lo : lo + _ACTION_CHUNK].float()
        pairs = (v.unsqueeze(2) * n.unsqueeze(1)).reshape(len(v), n_verb * n_noun)
        out.append(topk_correct(pairs, target[lo : lo + _ACTION_CHUNK], k))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def verb_noun_metrics(
    verb_scores: torch.Tensor, noun_scores: torch.Tensor, verb: torch.Tensor, noun: torch.Tensor
) -> dict[str, float]:
    """EPIC-style verb, noun and action top-1/top-5; `top1`/`top5` = action (pair ranking)."""
    if verb_scores.shape[0] == 0:
        return {k: float("nan") for k in ("top1", "top5", "top1_verb", "top5_verb", "top1_noun", "top5_noun")}
    mean = lambda t: t.double().mean().item()  # noqa: E731
    return {
        "top1": mean(action_topk_correct(verb_scores, noun_scores, verb, noun, 1)),
        "top5": mean(action_topk_correct(verb_scores, noun_scores, verb, noun, 5)),
        "top1_verb": mean(topk_correct(verb_scores, verb, 1)),
        "top5_verb": mean(topk_correct(verb_scores, verb, 5)),
        "top1_noun": mean(topk_correct(noun_scores, noun, 1)),
        "top5_noun": mean(topk_correct(noun_scores, noun, 5)),
    }


# ----------------------------------------------------------------------------- detection (AVA)


def voc_average_precision(scores: np.ndarray, is_tp: np.ndarray, n_gt: int) -> float:
    """PASCAL VOC (2010+) / AVA AP: the area under the precision-recall curve with precision made
    monotonically non-increasing, over detections sorted by score (ties keep their input order)."""
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.asarray(is_tp, dtype=np.float64)[order]
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(1.0 - tp)
    precision = np.r_[0.0, tp_cum / np.maximum(tp_cum + fp_cum, 1e-12), 0.0]
    recall = np.r_[0.0, tp_cum / n_gt, 1.0]
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(((recall[steps] - recall[steps - 1]) * precision[steps]).sum())


def _match_keyframe(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """True positives of one keyframe and class: detections in score order, each taking the ground
    truth box it overlaps most; a hit on a box already taken is a false positive (as in VOC/AVA)."""
    order = np.argsort(-det_scores, kind="stable")
    tp = np.zeros(len(det_boxes), dtype=bool)
    if len(gt_boxes) == 0:
        return tp
    iou = box_iou(det_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i in order:
        j = int(np.argmax(iou[i]))
        if iou[i, j] >= iou_threshold and not taken[j]:
            tp[i] = taken[j] = True
    return tp


def frame_map(
    detections: Sequence[tuple[Hashable, Sequence[float], int, float]],
    groundtruth: Sequence[tuple[Hashable, Sequence[float], int]],
    *,
    num_classes: int | None = None,
    iou_threshold: float = 0.5,
) -> tuple[float, list[float]]:
    """Frame-level detection mAP (AVA protocol, IoU 0.5): (mAP, per-class AP).

    `detections` are (keyframe key, (x1, y1, x2, y2), class, score) and `groundtruth` are
    (keyframe key, box, class); a person with several actions is one box per action, as in AVA's
    CSV. Per class, each keyframe's detections are matched greedily in score order
    (`_match_keyframe`); then all detections of the class are ranked by score and scored with
    `voc_average_precision`. Classes without ground truth have AP NaN and are left out of the
    mean (the AVA evaluator skips them too).
    """
    classes = {int(c) for _, _, c in groundtruth} | {int(c) for _, _, c, _ in detections}
    n = num_classes if num_classes is not None else (max(classes) + 1 if classes else 0)
    bad = sorted(c for c in classes if not 0 <= c < n)
    if bad:
        raise ValueError(f"frame_map: class {bad[0]} is not allowed; classes are 0..{n - 1} (num_classes={n})")
    gt: dict[tuple[int, Hashable], list] = {}
    for key, box, c in groundtruth:
        gt.setdefault((int(c), key), []).append(box)
    dets: dict[tuple[int, Hashable], list] = {}
    for key, box, c, score in detections:
        dets.setdefault((int(c), key), []).append((box, float(score)))
    scores: list[list[float]] = [[] for _ in range(n)]
    hits: list[list[bool]] = [[] for _ in range(n)]
    for (c, key), found in dets.items():
        boxes = np.array([b for b, _ in found], dtype=np.float64)
        s = np.array([x for _, x in found], dtype=np.float64)
        tp = _match_keyframe(boxes, s, np.array(gt.get((c, key), []), dtype=np.float64).reshape(-1, 4), iou_threshold)
        scores[c] += s.tolist()
        hits[c] += tp.tolist()
    n_gt = [0] * n
    for (c, _key), boxes in gt.items():
        n_gt[c] += len(boxes)
    aps = [voc_average_precision(np.array(scores[c]), np.array(hits[c], dtype=bool), n_gt[c]) for c in range(n)]
    valid = [a for a in aps if not math.isnan(a)]
    return (sum(valid) / len(valid) if valid else float("nan")), aps
