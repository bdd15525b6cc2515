"""Run a model over a split and score it: single-view validation and multi-view testing.

Shared by the trainer (per-epoch validation, final test) and `avsf eval`. Under torchrun each
process scores its shard; the predictions are gathered so every process sees the same metrics.
"""

from __future__ import annotations

import contextlib
import math
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


def views_of_videos(pred: dict, videos: list[str], *, spatial_views: int = 1) -> dict:
    """Multi-label clips cut from one video (Charades' annotated spans: rows sharing the manifest's
    `video` id) become temporal views of that video, so `aggregate` pools them with the video's own
    clips (`eval.video_pool`: max, A.6). A video is reported under its first manifest row, its label
    is the union of its clips' labels. Rows without an id (or all ids distinct) are left as they are."""
    index = pred["index"]
    rows = sorted(set(index.tolist()))
    vid = {r: (videos[r] if r < len(videos) else "") or f"row{r}" for r in rows}
    if len(set(vid.values())) == len(rows):
        return pred
    first: dict[str, int] = {}  # video -> its first row
    clips: dict[str, int] = {}  # video -> clips seen so far
    clip_of: dict[int, int] = {}  # row -> its rank among the clips of its video
    for r in rows:
        first.setdefault(vid[r], r)
        clip_of[r] = clips.get(vid[r], 0)
        clips[vid[r]] = clip_of[r] + 1
    video_row = torch.tensor([first[vid[int(i)]] for i in index], dtype=torch.int64)
    clip = torch.tensor([clip_of[int(i)] for i in index], dtype=torch.int64)
    # clip k of a video: its views become the video's temporal views k * T .. k * T + T - 1
    s = max(spatial_views, 1)
    view = pred.get("view", torch.zeros_like(index))
    n_t = int((view // s).max()) + 1 if len(view) else 1
    out = dict(pred, index=video_row, view=(clip * n_t + view // s) * s + view % s)
    label = pred["label"].float()
    union = torch.zeros(int(video_row.max()) + 1, label.shape[1]).scatter_reduce_(
        0, video_row[:, None].expand(-1, label.shape[1]), label, "amax")
    out["label"] = union[video_row]
    return out


def aggregate(pred: dict, *, spatial_views: int = 1, multi_label: bool = False,
              video_pool: str = "auto") -> dict[str, torch.Tensor]:
    """Video-level scores and labels from per-view predictions (`metrics.aggregate_views`, its
    temporal pooling = `eval.video_pool`), one row per video in index (manifest row) order:
    `index` plus `scores`/`label`, or `verb_scores`/`noun_scores`/`verb`/`noun`."""
    if "index" not in pred or len(pred["index"]) == 0:
        raise RuntimeError("the loader yielded no clips to evaluate")
    index, view = pred["index"], pred.get("view")
    uniq, first = _first_rows(index)
    out = {"index": uniq}
    kw = {"spatial_views": spatial_views, "temporal_pool": video_pool}
    if "verb_logits" in pred:
        _, out["verb_scores"] = M.aggregate_views(index, view, pred["verb_logits"], **kw)
        _, out["noun_scores"] = M.aggregate_views(index, view, pred["noun_logits"], **kw)
        out["verb"], out["noun"] = pred["verb"][first], pred["noun"][first]
        return out
    _, out["scores"] = M.aggregate_views(index, view, pred["logits"], multi_label=multi_label, **kw)
    out["label"] = pred["label"][first]
    return out


def score(pred: dict, *, spatial_views: int = 1, multi_label: bool = False, video_pool: str = "auto", groups=None,
          class_names=None) -> tuple[dict[str, float], dict[str, Any]]:
    """Video-level metrics from per-view predictions, and the per-class table."""
    return score_videos(aggregate(pred, spatial_views=spatial_views, multi_label=multi_label, video_pool=video_pool),
                        groups=groups, class_names=class_names)


def _head_groups(groups, head: str) -> dict[str, list[int]]:
    """The groups of one head of a verb-noun dataset: "noun_audio" -> {"noun_audio": [...]} for head "noun"."""
    return {k: list(v) for k, v in (groups or {}).items() if k.startswith(head + "_")}


def _verb_noun_scores(videos: dict, groups, per_class: dict[str, Any],
                      verb_names) -> tuple[dict[str, float], dict[str, Any]]:
    """EPIC: verb / noun / action top-1/top-5, `top1_<group>` of the head a group is named after
    ("noun_audio": noun top-1 over the clips whose noun is in it); per class: nouns (where sound
    helps, Sec. 4.1), verbs beside them."""
    vs, ns, verb, noun = videos["verb_scores"], videos["noun_scores"], videos["verb"], videos["noun"]
    metrics = M.verb_noun_metrics(vs, ns, verb, noun)
    metrics.update(M.group_top1(vs, verb, _head_groups(groups, "verb")))
    metrics.update(M.group_top1(ns, noun, _head_groups(groups, "noun")))
    per_class["metric"] = "noun top-1 accuracy"
    per_class["accuracy"] = M.per_class_accuracy(ns, noun, ns.shape[1])
    per_class["count"] = [int((noun == c).sum()) for c in range(ns.shape[1])]
    per_class["verb_classes"] = list(verb_names or [])
    per_class["verb_accuracy"] = M.per_class_accuracy(vs, verb, vs.shape[1])
    metrics["clips"] = len(videos["index"])
    return metrics, per_class


def score_videos(videos: dict, *, groups=None, class_names=None,
                 verb_names=None) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics and the per-class table of `aggregate`'s video-level scores. Verb-noun data:
    `class_names` are the nouns, `verb_names` the verbs."""
    per_class: dict[str, Any] = {"classes": list(class_names or []), "groups": {k: list(v) for k, v in (groups or {}).items()}}
    if "verb_scores" in videos:
        return _verb_noun_scores(videos, groups, per_class, verb_names)
    scores, labels = videos["scores"], videos["label"]
    metrics = M.classification_metrics(scores, labels, groups=None if labels.dim() == 2 else groups)
    if labels.dim() == 2:
        per_class["metric"] = "average precision"
        per_class["accuracy"] = M.per_class_ap(scores, labels)
        metrics.update(group_map(per_class["accuracy"], groups))
    else:
        per_class["metric"] = "top-1 accuracy"
        per_class["accuracy"] = M.per_class_accuracy(scores, labels, scores.shape[1])
        per_class["count"] = [int((labels == c).sum()) for c in range(scores.shape[1])]
    metrics["clips"] = len(videos["index"])
    return metrics, per_class


def group_map(aps: list[float], groups) -> dict[str, float]:
    """`mAP_<group>`: the mean AP of a group's classes that have positives (multi-label data)."""
    out = {}
    for name, classes in (groups or {}).items():
        vals = [aps[c] for c in classes if 0 <= c < len(aps) and not math.isnan(aps[c])]
        if vals:
            out[f"mAP_{name}"] = sum(vals) / len(vals)
    return out


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


def score_clips(pred: dict, *, dataset: Any, split: str, spatial_views: int = 1, video_pool: str = "auto",
                videos: list[str] | None = None) -> tuple:
    """Classification: (metrics, per-class table, predictions.json record) from per-view logits.
    `video_pool` pools a video's temporal clips (eval.video_pool); `videos` (the rows' `video` ids)
    pool multi-label clips cut from one video into it (`views_of_videos`). Verb-noun data: the
    per-class table and the record name the nouns (`dataset.noun_names`)."""
    multi = bool(getattr(dataset, "multi_label", False))
    if multi and videos and "label" in pred:
        pred = views_of_videos(pred, videos, spatial_views=spatial_views)
    scored = aggregate(pred, spatial_views=spatial_views, multi_label=multi, video_pool=video_pool)
    names = getattr(dataset, "class_names", None)
    if "verb_scores" in scored:
        names = getattr(dataset, "noun_names", None) or None
    metrics, per_class = score_videos(scored, groups=getattr(dataset, "groups", None), class_names=names,
                                      verb_names=getattr(dataset, "verb_names", None))
    return metrics, per_class, predictions_record(scored, split=split, class_names=names)


@dataclass(frozen=True)
class Scoring:
    """How a task's test predictions are kept per batch and scored per split: `collect(batch,
    outputs)` -> tensors to concatenate; `score(pred, dataset=, split=, spatial_views=, video_pool=,
    videos=)` -> (metrics, per-class table, predictions.json record); `video_pool` is eval.video_pool,
    `videos` the split's manifest `video` ids (row order; "" where a row has none)."""

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
                   channels_last: bool = False, spatial_views: int = 1, video_pool: str = "auto",
                   progress: bool = False, desc: str | None = None) -> SplitScores:
    """Score `model` on what `loader` yields (this process's shard; every process gets the
    metrics of all shards). `dataset` describes the classes (`multi_label`, `groups`, `class_names`;
    verb-noun data: `noun_names`, `verb_names`)."""
    from avsf import distributed as D

    scoring = scoring_for(dataset)
    pred = predict(model, loader, device=dist_info.device, precision=precision, channels_last=channels_last,
                   progress=progress and dist_info.main, desc=desc or split, collect=scoring.collect)
    failed = int(D.all_reduce_sum([float(getattr(loader, "failed", 0))], dist_info)[0])
    pred = merge_predictions(D.gather_objects(pred, dist_info))
    metrics, per_class, record = scoring.score(pred, dataset=dataset, split=split, spatial_views=spatial_views,
                                               video_pool=video_pool,
                                               videos=[getattr(r, "video", "") for r in getattr(loader, "rows", [])])
    return SplitScores(metrics, per_class, record, failed)


def _register_detection() -> None:
    from avsf.eval import detection

    SCORINGS["detection"] = Scoring(detection.collect, detection.score)


_register_detection()
