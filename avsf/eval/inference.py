"""Run a model over a split and score it: single-view validation and multi-view testing.

Shared by the trainer (per-epoch validation, final test) and `avsf eval`. Under torchrun each
process scores its shard; the predictions are gathered so every process sees the same metrics.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from avsf.eval import metrics as M


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and v.dim() == 5 and v.is_floating_point():
                v = v.contiguous(memory_format=torch.channels_last_3d)
        out[k] = v
    return out


def autocast_context(device: torch.device, precision: str):
    """`train.precision`: "auto" and "bf16" autocast to bf16 on CUDA; everything stays fp32
    elsewhere (the CPU path has no bf16 autocast here) and under "fp32"."""
    if precision in ("auto", "bf16") and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


_KEEP_IN = ("index", "view", "label", "verb", "noun")
_KEEP_OUT = ("logits", "verb_logits", "noun_logits")


def collect_clips(batch: dict, out: dict) -> dict[str, torch.Tensor]:
    """A classification batch's rows to keep: index, view, labels (from the batch) and logits."""
    kept = {k: batch[k].detach().cpu() for k in _KEEP_IN if k in batch}
    kept.update({k: out[k].detach().float().cpu() for k in _KEEP_OUT if k in out})
    return kept


@torch.no_grad()
def predict(model, loader, *, device, precision="fp32", channels_last=False, progress=False, desc="eval",
            collect: Callable[[dict, dict], dict[str, torch.Tensor]] = collect_clips) -> dict:
    """What `collect(batch, outputs)` keeps of every batch the loader yields (default: each clip's
    raw logits and labels), on the CPU, concatenated per key."""
    from tqdm import tqdm

    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
               disable=not (progress and sys.stderr.isatty()))
    for batch in loader:
        x = to_device(batch, device, channels_last)
        with autocast_context(device, precision):
            out = model(x)
        for k, v in collect(batch, out).items():
            parts.setdefault(k, []).append(v)
        bar.update(1)
    bar.close()
    return {k: torch.cat(v) for k, v in parts.items()}


def merge_predictions(parts: list[dict]) -> dict:
    keys = set().union(*(p.keys() for p in parts))
    return {k: torch.cat([p[k] for p in parts if k in p]) for k in keys}


def _first_rows(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    uniq, inv = torch.unique(index, return_inverse=True)
    first = torch.full((len(uniq),), len(index), dtype=torch.int64)
    first.scatter_reduce_(0, inv, torch.arange(len(index)), reduce="amin")
    return uniq, first


def aggregate(pred: dict, *, spatial_views: int = 1, multi_label: bool = False) -> dict[str, torch.Tensor]:
    """Video-level scores and labels from per-view predictions (`metrics.aggregate_views`), one
    row per video in index (manifest row) order: `index` plus `scores`/`label`, or
    `verb_scores`/`noun_scores`/`verb`/`noun`."""
    if "index" not in pred or len(pred["index"]) == 0:
        raise RuntimeError("the loader yielded no clips to evaluate")
    index, view = pred["index"], pred.get("view")
    uniq, first = _first_rows(index)
    out = {"index": uniq}
    if "verb_logits" in pred:
        _, out["verb_scores"] = M.aggregate_views(index, view, pred["verb_logits"], spatial_views=spatial_views)
        _, out["noun_scores"] = M.aggregate_views(index, view, pred["noun_logits"], spatial_views=spatial_views)
        out["verb"], out["noun"] = pred["verb"][first], pred["noun"][first]
        return out
    _, out["scores"] = M.aggregate_views(index, view, pred["logits"], spatial_views=spatial_views,
                                         multi_label=multi_label)
    out["label"] = pred["label"][first]
    return out


def score(pred: dict, *, spatial_views: int = 1, multi_label: bool = False, groups=None,
          class_names=None) -> tuple[dict[str, float], dict[str, Any]]:
    """Video-level metrics from per-view predictions, and the per-class table."""
    return score_videos(aggregate(pred, spatial_views=spatial_views, multi_label=multi_label), groups=groups,
                        class_names=class_names)


def score_videos(videos: dict, *, groups=None, class_names=None) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics and the per-class table of `aggregate`'s video-level scores."""
    per_class: dict[str, Any] = {"classes": list(class_names or []), "groups": {k: list(v) for k, v in (groups or {}).items()}}
    if "verb_scores" in videos:
        vs, ns, verb, noun = videos["verb_scores"], videos["noun_scores"], videos["verb"], videos["noun"]
        metrics = M.verb_noun_metrics(vs, ns, verb, noun)
        per_class["metric"] = "verb top-1 accuracy"
        per_class["accuracy"] = M.per_class_accuracy(vs, verb, vs.shape[1])
        per_class["noun_accuracy"] = M.per_class_accuracy(ns, noun, ns.shape[1])
        return metrics, per_class
    scores, labels = videos["scores"], videos["label"]
    metrics = M.classification_metrics(scores, labels, groups=None if labels.dim() == 2 else groups)
    if labels.dim() == 2:
        per_class["metric"] = "average precision"
        per_class["accuracy"] = M.per_class_ap(scores, labels)
    else:
        per_class["metric"] = "top-1 accuracy"
        per_class["accuracy"] = M.per_class_accuracy(scores, labels, scores.shape[1])
        per_class["count"] = [int((labels == c).sum()) for c in range(scores.shape[1])]
    metrics["clips"] = len(videos["index"])
    return metrics, per_class


def _rounded(t: torch.Tensor) -> list:
    return [[round(float(x), 5) for x in row] for row in t.tolist()]


def predictions_record(videos: dict, *, split: str, class_names=None) -> dict[str, Any]:
    """predictions.json (PLAN contract 3): one entry per clip in manifest row order, scores
    after view aggregation, floats rounded to 5 decimals."""
    out: dict[str, Any] = {"split": split, "classes": list(class_names or []), "index": videos["index"].tolist()}
    if "verb_scores" in videos:
        out.update(verb=videos["verb"].tolist(), noun=videos["noun"].tolist(),
                   verb_scores=_rounded(videos["verb_scores"]), noun_scores=_rounded(videos["noun_scores"]))
        return out
    label = videos["label"]
    out["label"] = (label > 0.5).int().tolist() if label.dim() == 2 else label.tolist()
    out["scores"] = _rounded(videos["scores"])
    return out


@dataclass
class SplitScores:
    metrics: dict[str, float]
    per_class: dict[str, Any]
    predictions: dict[str, Any]  # predictions.json's record
    failed: int  # clips the loader could not decode (all processes)


def score_clips(pred: dict, *, dataset: Any, split: str, spatial_views: int = 1) -> tuple:
    """Classification: (metrics, per-class table, predictions.json record) from per-view logits."""
    videos = aggregate(pred, spatial_views=spatial_views, multi_label=bool(getattr(dataset, "multi_label", False)))
    names = getattr(dataset, "class_names", None)
    metrics, per_class = score_videos(videos, groups=getattr(dataset, "groups", None), class_names=names)
    return metrics, per_class, predictions_record(videos, split=split, class_names=names)


@dataclass(frozen=True)
class Scoring:
    """How a task's test predictions are kept per batch and scored per split: `collect(batch,
    outputs)` -> tensors to concatenate; `score(pred, dataset=, split=, spatial_views=)` ->
    (metrics, per-class table, predictions.json record)."""

    collect: Callable[[dict, dict], dict[str, torch.Tensor]]
    score: Callable[..., tuple[dict[str, float], dict[str, Any], dict[str, Any]]]


SCORINGS: dict[str, Scoring] = {"classification": Scoring(collect_clips, score_clips)}
"""Task (the dataset description's `task`) -> its scoring; detection registers below."""


def scoring_for(dataset: Any) -> Scoring:
    task = getattr(dataset, "task", "classification")
    if task not in SCORINGS:
        raise KeyError(f"no scoring registered for the dataset's task '{task}' (registered: {', '.join(SCORINGS)})")
    return SCORINGS[task]


def evaluate_split(model, loader, dist_info, *, dataset, split: str, precision: str = "fp32",
                   channels_last: bool = False, spatial_views: int = 1, progress: bool = False,
                   desc: str | None = None) -> SplitScores:
    """Score `model` on what `loader` yields (this process's shard; every process gets the
    metrics of all shards). `dataset` describes the classes (`multi_label`, `groups`, `class_names`)."""
    from avsf import distributed as D

    scoring = scoring_for(dataset)
    pred = predict(model, loader, device=dist_info.device, precision=precision, channels_last=channels_last,
                   progress=progress and dist_info.main, desc=desc or split, collect=scoring.collect)
    failed = int(D.all_reduce_sum([float(getattr(loader, "failed", 0))], dist_info)[0])
    pred = merge_predictions(D.gather_objects(pred, dist_info))
    metrics, per_class, record = scoring.score(pred, dataset=dataset, split=split, spatial_views=spatial_views)
    return SplitScores(metrics, per_class, record, failed)


def _register_detection() -> None:
    from avsf.eval import detection

    SCORINGS["detection"] = Scoring(detection.collect, detection.score)


_register_detection()
