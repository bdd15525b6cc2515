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


def score(pred: dict[str, torch.Tensor], *, dataset: Any, split: str, spatial_views: int = 1) -> tuple:
    """(metrics, per-class table, predictions.json record) of one split's collected boxes."""
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
