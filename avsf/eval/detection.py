"""Scoring a detection model (AVA protocol): frame-level mAP at IoU 0.5 over the classes.

Per test batch (`collect`) every scored box keeps its keyframe (manifest row), its position k in
the keyframe's box list, the view, its visible share of the crop and its class probabilities
(sigmoid of `box_logits`). Per split (`score`) each box's probabilities are the visible-share
weighted mean over the views that show it (`box_mask`: >= MIN_VISIBLE of it inside the crop);
its box is the one the loader read for that keyframe (normalised to the frame), ground truth or
`eval.detected_boxes`. Then `avsf.eval.metrics.frame_map` matches them against the keyframes'
ground truth: mAP, per-class AP (per_class.json), the mAP of each class group (`mAP_<group>`),
`top1` (scored boxes whose top class is one of theirs) and the detection predictions.json
(docs/architecture.md, contract 3 for detection).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

IOU_THRESHOLD = 0.5  # AVA's frame-level protocol


def collect(batch: dict[str, Any], out: dict[str, Any]) -> dict[str, torch.Tensor]:
    """One row per scored box (keyframe row, k, view, visible share, probabilities, labels), and
    the keyframe row of every clip (a keyframe without a scored box still has ground truth)."""
    index = out["box_index"].cpu()
    k = batch["box_mask"].shape[1]
    b, pos = index // k, index % k
    view = batch["view"][b] if "view" in batch else torch.zeros_like(b)
    return {
        "clip_row": batch["index"], "box_row": batch["index"][b], "box_k": pos, "box_view": view,
        "box_visible": batch["box_visible"].flatten()[index].float(),
        "box_scores": torch.sigmoid(out["box_logits"].float()).cpu(),
        "box_labels": batch["box_labels"].flatten(0, 1)[index].float(),
    }


def aggregate_boxes(pred: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """One entry per (keyframe row, k): visible-share weighted mean of its views' probabilities."""
    rows, ks = pred["box_row"].numpy(), pred["box_k"].numpy()
    keys, inverse = np.unique(np.stack([rows, ks], axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    w = pred["box_visible"].numpy().astype(np.float64)
    scores = np.zeros((len(keys), pred["box_scores"].shape[1]))
    np.add.at(scores, inverse, pred["box_scores"].numpy() * w[:, None])
    total = np.bincount(inverse, weights=w, minlength=len(keys))
    labels = np.zeros((len(keys), pred["box_labels"].shape[1]))
    labels[inverse] = pred["box_labels"].numpy()
    return {"row": keys[:, 0], "k": keys[:, 1], "scores": scores / np.maximum(total, 1e-12)[:, None], "labels": labels}


def _split_rows(dataset: Any, split: str) -> list:
    from avsf.data import load_rows

    return load_rows(dataset.root, split)


def _groundtruth(rows: list, wanted: np.ndarray, annotations: Any) -> tuple[list, list[dict]]:
    """frame_map's ground truth (keyframe row, box, class) of the keyframes in `wanted`, and the
    predictions.json entries of those keyframes."""
    truth, frames = [], []
    for r in wanted.tolist():
        kf = annotations.truth(rows[r])
        video, t = annotations.key(rows[r])
        frames.append({"video_id": video, "timestamp": t, "boxes": _rounded(kf.boxes), "labels": kf.labels})
        truth += [(r, box, c) for box, labels in zip(kf.boxes.tolist(), kf.labels) for c in labels]
    return truth, frames


def score(pred: dict[str, torch.Tensor], *, dataset: Any, split: str, spatial_views: int = 1, video_pool: str = "auto",
          videos: list[str] | None = None) -> tuple:
    """(metrics, per-class table, predictions.json record) of one split's collected boxes. Each
    keyframe is scored from its one clip (detection runs with eval.temporal_views = 1), so
    `video_pool` and `videos` (the classification scoring's video-level pooling) do not apply."""
    from avsf.eval.metrics import frame_map

    if "clip_row" not in pred or len(pred["box_row"]) == 0:
        raise RuntimeError(f"split '{split}': the model scored no box (the loader yielded no clips, or every "
                           "keyframe's boxes fell outside its crops)")
    ann, rows = dataset.annotations, _split_rows(dataset, split)
    boxes = aggregate_boxes(pred)
    wanted = np.unique(pred["clip_row"].numpy())
    truth, frames = _groundtruth(rows, wanted, ann)
    given = {r: ann.inputs(rows[r], "test")[0] for r in wanted.tolist()}
    det_boxes = np.stack([given[r][k] for r, k in zip(boxes["row"].tolist(), boxes["k"].tolist())])
    n_classes = boxes["scores"].shape[1]
    detections = [(r, box, c, s) for r, box, row_scores in zip(boxes["row"].tolist(), det_boxes.tolist(),
                                                                boxes["scores"].tolist())
                  for c, s in enumerate(row_scores)]
    mean_ap, aps = frame_map(detections, truth, num_classes=n_classes, iou_threshold=IOU_THRESHOLD)
    top = boxes["scores"].argmax(axis=1)
    metrics = {"mAP": mean_ap, "top1": float(boxes["labels"][np.arange(len(top)), top].mean()),
               "boxes": len(top), "clips": len(wanted)}
    names = list(getattr(dataset, "class_names", None) or [str(c) for c in range(n_classes)])
    groups = {g: list(v) for g, v in (getattr(dataset, "groups", None) or {}).items()}
    for g, members in groups.items():
        vals = [aps[c] for c in members if c < n_classes and not math.isnan(aps[c])]
        if vals:
            metrics[f"mAP_{g}"] = float(np.mean(vals))
    per_class = {"classes": names, "groups": groups, "metric": f"frame AP at IoU {IOU_THRESHOLD:g}",
                 "accuracy": [None if math.isnan(a) else a for a in aps],
                 "count": [sum(c in labels for f in frames for labels in f["labels"]) for c in range(n_classes)]}
    record = {"split": split, "task": "detection", "classes": names, "iou_threshold": IOU_THRESHOLD,
              "index": wanted.tolist(), "keyframes": frames,
              "detections": {"index": boxes["row"].tolist(), "boxes": _rounded(det_boxes),
                             "scores": _rounded(boxes["scores"])}}
    return metrics, per_class, record


def _rounded(a: np.ndarray) -> list:
    return [[round(float(x), 5) for x in row] for row in np.asarray(a).tolist()]


# ----------------------------------------------------------------------------- keyframe bootstrap
class ClassHits:
    """One run's detections of one class, ranked by score as `metrics.voc_average_precision`
    ranks them: whether each matched a ground-truth box of its keyframe (`metrics._match_keyframe`,
    IoU 0.5), which keyframe it belongs to, and the class's ground-truth boxes per keyframe."""

    def __init__(self, scores: np.ndarray, hits: np.ndarray, frames: np.ndarray, truths: np.ndarray):
        order = np.argsort(-scores, kind="stable")
        self.hits, self.frames, self.truths = hits[order].astype(np.float64), frames[order], truths

    def average_precision(self, weights: np.ndarray) -> np.ndarray:
        """(b,) VOC AP under keyframe weights (b, N) (how often each keyframe is drawn): every
        detection and ground-truth box counts as often as its keyframe. All-ones weights give
        `metrics.frame_map`'s AP; NaN where no ground truth is drawn."""
        w = weights[:, self.frames]
        hit = w * self.hits
        tp, seen = np.cumsum(hit, axis=1), np.cumsum(w, axis=1)
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        truths = weights @ self.truths
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(truths > 0, (hit * best_after).sum(axis=1) / truths, np.nan)


def class_hits(record: dict[str, Any], keyframes: np.ndarray) -> list[ClassHits]:
    """Per class, the hits of a detection predictions.json record on the keyframes `keyframes`
    (manifest rows; their order is the weights' column order)."""
    from avsf.eval.metrics import _match_keyframe

    n_classes = len(record["detections"]["scores"][0]) if record["detections"]["scores"] else len(record["classes"])
    where = {int(r): i for i, r in enumerate(keyframes)}
    truth = {int(r): f for r, f in zip(record["index"], record["keyframes"])}
    det_rows = np.asarray(record["detections"]["index"], dtype=np.int64)
    det_boxes = np.asarray(record["detections"]["boxes"], dtype=np.float64).reshape(-1, 4)
    det_scores = np.asarray(record["detections"]["scores"], dtype=np.float64).reshape(len(det_rows), n_classes)
    per_class: list[tuple[list, list, list]] = [([], [], []) for _ in range(n_classes)]
    truths = np.zeros((len(keyframes), n_classes))
    for row, i in where.items():
        frame = truth[row]
        mine = det_rows == row
        for c in range(n_classes):
            gt = np.array([b for b, labels in zip(frame["boxes"], frame["labels"]) if c in labels]).reshape(-1, 4)
            truths[i, c] = len(gt)
            scores, hits, frames = per_class[c]
            scores += det_scores[mine, c].tolist()
            hits += _match_keyframe(det_boxes[mine], det_scores[mine, c], gt, IOU_THRESHOLD).tolist()
            frames += [i] * int(mine.sum())
    return [ClassHits(np.array(s), np.array(h, dtype=bool), np.array(f, dtype=np.int64), truths[:, c])
            for c, (s, h, f) in enumerate(per_class)]


def frame_map_stat(records: list[list[dict[str, Any]]], keyframes: np.ndarray,
                   class_sets: list[list[int]] | None = None):
    """A bootstrap statistic (avsf.stats: keyframe weights (b, N) -> (V, S, b), or (V, G, S, b)
    with `class_sets`): frame mAP of V variants x S seeds of detection predictions.json records,
    over all classes or the mean AP of each class set (a class group; one class)."""
    hits = [[class_hits(rec, keyframes) for rec in seeds] for seeds in records]

    def stat(weights: np.ndarray) -> np.ndarray:
        out = []
        for seeds in hits:
            per_seed = []
            for classes in seeds:
                aps = np.stack([h.average_precision(weights) for h in classes])  # (C, b)
                sets = class_sets if class_sets is not None else [list(range(len(classes)))]
                with np.errstate(invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a set with no drawn truth: NaN
                    per_seed.append(np.stack([np.nanmean(aps[s], axis=0) for s in sets]))
            out.append(np.stack(per_seed, axis=1))  # (G, S, b)
        values = np.stack(out)
        return values[:, 0] if class_sets is None else values

    return stat


def record_problem(obj: dict[str, Any]) -> str | None:
    """What breaks the detection predictions.json layout (docs/architecture.md), or None."""
    n = len(obj.get("index") or [])
    frames, dets = obj.get("keyframes"), obj.get("detections")
    if not isinstance(frames, list) or len(frames) != n:
        return f"key 'keyframes' must list one entry per keyframe of 'index' ({n})"
    if any(not isinstance(f, dict) or len(f.get("boxes", [])) != len(f.get("labels", [])) for f in frames):
        return "key 'keyframes': every entry needs 'boxes' and 'labels' of equal length"
    if not isinstance(dets, dict) or not all(isinstance(dets.get(k), list) for k in ("index", "boxes", "scores")):
        return "key 'detections' must hold the lists 'index', 'boxes' and 'scores'"
    if not len(dets["index"]) == len(dets["boxes"]) == len(dets["scores"]):
        return "key 'detections': 'index', 'boxes' and 'scores' must have one entry per detected box"
    if not set(dets["index"]) <= set(obj["index"]):
        return "key 'detections': an 'index' names a keyframe that 'index' does not list"
    widths = {len(s) for s in dets["scores"]}
    classes = len(obj.get("classes") or []) or next(iter(widths), 0)
    if widths - {classes}:
        return f"key 'detections': 'scores' rows must have one column per class ({classes})"
    return None


def detection_statistic(records: list[list[dict[str, Any]]], keyframes: np.ndarray, key: str,
                        groups: dict[str, list[int]], class_sets: list[list[int]] | None = None):
    """The report's statistic of result key `key` over keyframe draws: "mAP" (over all classes,
    or per class set in `class_sets`, e.g. one class each) or "mAP_<group>"; KeyError otherwise."""
    if key == "mAP":
        return frame_map_stat(records, keyframes, class_sets)
    if key.startswith("mAP_") and key[4:] in groups and class_sets is None:
        one = frame_map_stat(records, keyframes, [list(groups[key[4:]])])
        return lambda weights: one(weights)[:, 0]
    raise KeyError(f"'{key}' is not a detection test metric these predictions can resample; they cover mAP and "
                   f"mAP_<group> ({', '.join(f'mAP_{g}' for g in groups) or 'no groups'})")
