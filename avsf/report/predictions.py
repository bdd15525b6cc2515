"""A run's test predictions (predictions.json, run-folder contract 3), read and checked, and the
per-clip outcomes the report's statistics are computed from.

    {"split": "test", "classes": [...], "index": [int],          # manifest rows, one per clip
     "label": [int] | [[0/1, ...]], "scores": [[float]]}          # single- / multi-label
    # verb-noun datasets (EPIC): "verb", "noun", "verb_scores", "noun_scores" instead
    # detection: "task": "detection", one "index" per keyframe, "keyframes", "detections"
    # (docs/architecture.md); its statistics resample keyframes (avsf.eval.detection)

Scores are class probabilities after view aggregation. A file that breaks the contract is an
error naming the file, the key and what is wrong, raised before any report file is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avsf.config import ConfigError

PREDICTIONS_FILE = "predictions.json"


class ReportError(ConfigError):
    """A study folder cannot be reported as it is; the message names the file and the key.
    (A ConfigError, so `avsf` reports it as bad input, exit 2, like every other one.)"""


@dataclass
class Predictions:
    path: Path
    kind: str  # "single", "multi", "verb_noun" or "detection"
    index: np.ndarray  # (N,) manifest rows
    classes: list[str]
    label: np.ndarray | None = None  # (N,) int or (N, C) 0/1
    scores: np.ndarray | None = None  # (N, C)
    verb: np.ndarray | None = None
    noun: np.ndarray | None = None
    verb_scores: np.ndarray | None = None
    noun_scores: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def take(self, rows: np.ndarray) -> Predictions:
        """The clips at positions `rows` (to align runs on common manifest rows)."""
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return Predictions(self.path, self.kind, self.index[rows], self.classes, pick(self.label), pick(self.scores),
                           pick(self.verb), pick(self.noun), pick(self.verb_scores), pick(self.noun_scores), self.extra)


def _array(obj: dict, key: str, path: Path, dtype, ndim: int, n: int | None = None) -> np.ndarray:
    if key not in obj:
        raise ReportError(f"{path}: key '{key}' is missing (contract 3: predictions.json)")
    try:
        arr = np.asarray(obj[key], dtype=dtype)
    except (TypeError, ValueError):
        raise ReportError(f"{path}: key '{key}' must be a rectangular array of numbers") from None
    if arr.ndim != ndim:
        raise ReportError(f"{path}: key '{key}' has {arr.ndim} dimensions; {ndim} are allowed here")
    if n is not None and len(arr) != n:
        raise ReportError(f"{path}: key '{key}' has {len(arr)} rows; 'index' has {n} (one per test clip)")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise ReportError(f"{path}: key '{key}' row {row} holds a NaN or infinite score; finite numbers only")
    return arr


def _labels_in_range(labels: np.ndarray, n_classes: int, key: str, path: Path) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        raise ReportError(f"{path}: key '{key}' row {int(bad[0])} is {int(labels[bad[0]])}; "
                          f"allowed are 0..{n_classes - 1} (one per score column)")


def parse_predictions(obj: Any, path: Path) -> Predictions:
    if not isinstance(obj, dict):
        raise ReportError(f"{path}: must hold a JSON object, got {type(obj).__name__}")
    index = _array(obj, "index", path, np.int64, 1)
    n = len(index)
    if len(np.unique(index)) != n:
        raise ReportError(f"{path}: key 'index' repeats a manifest row; one entry per test clip is allowed")
    classes = [str(c) for c in obj.get("classes") or []]
    if obj.get("task") == "detection":  # boxes per keyframe (avsf.eval.detection): resampled by keyframe
        from avsf.eval.detection import record_problem

        problem = record_problem(obj)
        if problem:
            raise ReportError(f"{path}: {problem} (contract 3, detection)")
        return Predictions(path, "detection", index, classes, extra={"record": obj})
    if "verb_scores" in obj:
        vs = _array(obj, "verb_scores", path, np.float64, 2, n)
        ns = _array(obj, "noun_scores", path, np.float64, 2, n)
        verb, noun = _array(obj, "verb", path, np.int64, 1, n), _array(obj, "noun", path, np.int64, 1, n)
        _labels_in_range(verb, vs.shape[1], "verb", path)
        _labels_in_range(noun, ns.shape[1], "noun", path)
        return Predictions(path, "verb_noun", index, classes, verb=verb, noun=noun, verb_scores=vs, noun_scores=ns)
    scores = _array(obj, "scores", path, np.float64, 2, n)
    raw = obj.get("label")
    multi = isinstance(raw, list) and bool(raw) and isinstance(raw[0], list)
    label = _array(obj, "label", path, np.float64 if multi else np.int64, 2 if multi else 1, n)
    if multi:
        if label.shape[1] != scores.shape[1]:
            raise ReportError(f"{path}: key 'label' has {label.shape[1]} columns; 'scores' has {scores.shape[1]}")
        if not np.isin(label, (0.0, 1.0)).all():
            raise ReportError(f"{path}: key 'label' holds a value other than 0 or 1 (multi-hot rows)")
    else:
        _labels_in_range(label, scores.shape[1], "label", path)
    if classes and len(classes) != scores.shape[1]:
        raise ReportError(f"{path}: key 'classes' names {len(classes)} classes; 'scores' has {scores.shape[1]} columns")
    return Predictions(path, "multi" if multi else "single", index, classes, label=label, scores=scores)


def read_predictions(run_path: str | Path) -> Predictions | None:
    """predictions.json of one run folder (through `avsf.run.RunDir`); None when the run has
    none (runs of older avsf); a damaged file is an error naming it."""
    from avsf.run import RunDir

    run = RunDir(run_path)
    path = run.file(PREDICTIONS_FILE)
    if not path.exists():
        return None
    obj = run.read_predictions()
    if obj is None:
        raise ReportError(f"{path}: not valid JSON; rerun `avsf eval` on the run to write it again")
    return parse_predictions(obj, path)


# ----------------------------------------------------------------------------- per-clip outcomes


def _topk(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    import torch

    from avsf.eval.metrics import topk_correct

    return topk_correct(torch.from_numpy(scores), torch.from_numpy(labels), k).numpy()


def outcome(pred: Predictions, key: str) -> np.ndarray | None:
    """(N,) per-clip value whose mean over clips is result key `key` (top1, top5, top1_verb,
    ... ; group keys use `group_mask` on top1); None when the key is not a per-clip mean (mAP)
    or does not apply to this kind of prediction."""
    import torch

    from avsf.eval import metrics as M

    t = torch.from_numpy
    k = 5 if key.startswith("top5") else 1
    if pred.kind == "verb_noun":
        if key in ("top1", "top5"):
            return M.action_topk_correct(t(pred.verb_scores), t(pred.noun_scores), t(pred.verb), t(pred.noun),
                                         k).numpy().astype(float)
        head = key.split("_")[1] if "_" in key else ""  # top1_noun and its groups (top1_noun_audio)
        if head in ("verb", "noun"):
            return _topk(getattr(pred, f"{head}_scores"), getattr(pred, head), k).astype(float)
        return None
    if pred.kind == "multi":
        if key in ("top1", "top5"):
            return M.multilabel_topk_correct(t(pred.scores), t(pred.label), k).numpy().astype(float)
        return None
    if key in ("top1", "top5") or key.startswith("top1_"):
        return _topk(pred.scores, pred.label, k).astype(float)
    return None


def group_mask(pred: Predictions, members: list[Any], head: str = "") -> np.ndarray:
    """(N,) 1 for the clips whose label is one of a group's classes (indices or class names);
    verb-noun predictions: whose verb or noun (`head`, the group name's first word) is."""
    idx = [m if isinstance(m, int) else pred.classes.index(m) for m in members
           if isinstance(m, int) or m in pred.classes]
    labels = getattr(pred, head) if pred.kind == "verb_noun" and head in ("verb", "noun") else pred.label
    return np.isin(labels, idx).astype(float)


def confusion(pred: Predictions) -> np.ndarray | None:
    """(C, C) counts, rows = true class, columns = predicted (single-label runs only)."""
    if pred.kind != "single":
        return None
    c = pred.scores.shape[1]
    out = np.zeros((c, c), dtype=np.int64)
    np.add.at(out, (pred.label, pred.scores.argmax(axis=1)), 1)
    return out
