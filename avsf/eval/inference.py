"""Run a model over a split and score it: single-view validation and multi-view testing.

Shared by the trainer (per-epoch validation, final test) and `avsf eval`. Under torchrun each
process scores its shard; the predictions are gathered so every process sees the same metrics.
"""

from __future__ import annotations

import contextlib
import math
import sys
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
    """bf16 autocast on CUDA; a no-op elsewhere (the CPU path stays fp32)."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


_KEEP_IN = ("index", "view", "label", "verb", "noun")
_KEEP_OUT = ("logits", "verb_logits", "noun_logits")


@torch.no_grad()
def predict(model, loader, *, device, precision="fp32", channels_last=False, progress=False, desc="eval") -> dict:
    """Raw logits and labels of every clip the loader yields, on the CPU, concatenated."""
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
        for k in _KEEP_IN:
            if k in batch:
                parts.setdefault(k, []).append(batch[k].detach().cpu())
        for k in _KEEP_OUT:
            if k in out:
                parts.setdefault(k, []).append(out[k].detach().float().cpu())
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


def score(pred: dict, *, spatial_views: int = 1, multi_label: bool = False, groups=None,
          class_names=None) -> tuple[dict[str, float], dict[str, Any]]:
    """Video-level metrics from per-view predictions, and the per-class table.

    Views of one video (same `index`) are aggregated first (`metrics.aggregate_views`).
    """
    if "index" not in pred or len(pred["index"]) == 0:
        raise RuntimeError("the loader yielded no clips to evaluate")
    index, view = pred["index"], pred.get("view")
    uniq, first = _first_rows(index)
    per_class: dict[str, Any] = {"classes": list(class_names or []), "groups": {k: list(v) for k, v in (groups or {}).items()}}
    if "verb_logits" in pred:
        _, vs = M.aggregate_views(index, view, pred["verb_logits"], spatial_views=spatial_views)
        _, ns = M.aggregate_views(index, view, pred["noun_logits"], spatial_views=spatial_views)
        verb, noun = pred["verb"][first], pred["noun"][first]
        metrics = M.verb_noun_metrics(vs, ns, verb, noun)
        per_class["metric"] = "verb top-1 accuracy"
        per_class["accuracy"] = M.per_class_accuracy(vs, verb, vs.shape[1])
        per_class["noun_accuracy"] = M.per_class_accuracy(ns, noun, ns.shape[1])
        return metrics, per_class
    _, scores = M.aggregate_views(index, view, pred["logits"], spatial_views=spatial_views, multi_label=multi_label)
    labels = pred["label"][first]
    metrics = M.classification_metrics(scores, labels, groups=None if labels.dim() == 2 else groups)
    if labels.dim() == 2:
        per_class["metric"] = "average precision"
        per_class["accuracy"] = M.per_class_ap(scores, labels)
    else:
        per_class["metric"] = "top-1 accuracy"
        per_class["accuracy"] = M.per_class_accuracy(scores, labels, scores.shape[1])
        per_class["count"] = [int((labels == c).sum()) for c in range(scores.shape[1])]
    metrics["clips"] = len(uniq)
    return metrics, per_class


def nan_to_none(obj):
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, list):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    return obj


def evaluate_split(model, cfg, split: str, mode: str, dist_info, *, progress=False, desc=None):
    """(metrics, per_class, failed clips) of `model` on `split` (all processes' shards)."""
    from avsf.train import distributed as D
    from avsf.train import loop

    info = loop._dataset_info(cfg)
    if mode == "val":  # per-epoch validation: one centre view per clip (the loader's test mode, 1x1)
        import copy

        cfg = copy.deepcopy(cfg)
        cfg.eval.temporal_views, cfg.eval.spatial_views = 1, 1
        mode = "test"
    loader = loop._build_loader(cfg, split, mode, shard_id=dist_info.rank, num_shards=dist_info.world)
    pred = predict(model, loader, device=dist_info.device, precision=cfg.train.precision,
                   channels_last=cfg.train.channels_last and dist_info.device.type == "cuda",
                   progress=progress and dist_info.main, desc=desc or split)
    failed = int(D.all_reduce_sum([float(getattr(loader, "failed", 0))], dist_info)[0])
    pred = merge_predictions(D.gather_objects(pred, dist_info))
    spatial = cfg.eval.spatial_views if mode == "test" else 1
    metrics, per_class = score(pred, spatial_views=spatial, multi_label=bool(getattr(info, "multi_label", False)),
                               groups=getattr(info, "groups", None), class_names=getattr(info, "class_names", None))
    return metrics, per_class, failed
