"""Classification metrics on score matrices: top-k, mAP, per-class and per-group accuracy,
and the aggregation of multi-view test scores into one score per video."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) bool: is the label among the k highest scores (k clipped to the class count)."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == labels.view(-1, 1)).any(dim=1)


def accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    if scores.shape[0] == 0:
        return float("nan")
    return topk_correct(scores, labels, k).double().mean().item()


def multilabel_topk(scores: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Share of samples whose k highest-scoring classes contain a positive class."""
    if scores.shape[0] == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (targets.gather(1, top) > 0.5).any(dim=1).double().mean().item()


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """AP of one class: mean precision at the rank of each positive (NaN without positives)."""
    positives = targets > 0.5
    n_pos = int(positives.sum())
    if n_pos == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    hits = positives[order].float()
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float32)
    return float((precision * hits).sum() / n_pos)


def per_class_ap(scores: torch.Tensor, targets: torch.Tensor) -> list[float]:
    return [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP over the classes that have at least one positive (Charades-style)."""
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


def verb_noun_metrics(
    verb_scores: torch.Tensor, noun_scores: torch.Tensor, verb: torch.Tensor, noun: torch.Tensor
) -> dict[str, float]:
    """EPIC-style: verb, noun and action (both right) top-1/top-5; `top1`/`top5` = action."""
    v1, n1 = topk_correct(verb_scores, verb, 1), topk_correct(noun_scores, noun, 1)
    v5, n5 = topk_correct(verb_scores, verb, 5), topk_correct(noun_scores, noun, 5)
    return {
        "top1": (v1 & n1).double().mean().item(),
        "top5": (v5 & n5).double().mean().item(),
        "top1_verb": v1.double().mean().item(),
        "top5_verb": v5.double().mean().item(),
        "top1_noun": n1.double().mean().item(),
        "top5_noun": n5.double().mean().item(),
    }
