"""AVA-style action detection data: the AVA CSV layout, `avsf data prepare --format ava`, and the
person boxes of each clip mapped through its resize, crop and flip (PLAN contract 10).

Source layout (AVA v2.x, https://research.google.com/ava/download.html), CSV without header:

    video_id, timestamp, x1, y1, x2, y2, action_id, person_id

one row per (person, action) at 1 fps keyframes; boxes normalised to [0, 1] of the frame,
timestamps in seconds of the video file (AVA's movies: 902..1798). A label map
(`ava_action_list_v2.2.pbtxt`: `label { name: "..." label_id: N label_type: ... }`, or v2.1's
`item { name: "..." id: N }`) names the classes; rows of other actions are left out (AVA
evaluates 60 of its 80 actions), counted per action in report.json.

Loader-ready layout (what `prepare_ava` writes; docs/detection.md):

    manifest.csv  one row per keyframe: path,audio,label,duration,fps,has_audio,height,width,
                  keyframe,video_id,timestamp,split   (label = the keyframe's actions, "3;7;");
                  train.csv, val.csv, ...: the same rows per split
    boxes.csv     video_id,timestamp,x1,y1,x2,y2,label,person_id   (label = class index)
    classes.json  {"classes": [...], "groups": {label_type: [class indices]}, "task": "detection",
                   "action_ids": [AVA id of each class]}
    report.json   kept keyframes and boxes; every row left out with file, row and reason

Batches (`BoxAnnotations.fields`): `boxes` (B, K, 4) float32 x1, y1, x2, y2 in the crop's pixels,
`box_mask` (B, K) bool, `box_labels` (B, K, C) float32 multi-hot and `box_visible` (B, K) float32
(the share of each box inside the crop), K = the most boxes of a clip in the batch.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsf.data.manifest import ManifestError, Row, write_manifest

MIN_VISIBLE = 0.25
"""A box counts in a clip (`box_mask`) when at least this share of it lies inside the crop: a
person cut down to a sliver shows too little of the action to be classified or trained on."""

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
BOX_COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "label", "person_id")


@dataclass(frozen=True)
class PersonBox:
    """One row of an AVA CSV: a person's box and one of its actions at one keyframe."""

    video_id: str
    timestamp: float
    box: tuple[float, float, float, float]
    action: int
    person: str
    file: str  # where it was read, for reports
    row: int  # its line there


@dataclass
class Problem:
    file: str
    row: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "row": self.row, "reason": self.reason}


# ----------------------------------------------------------------------------- reading AVA files
def _number(text: str, what: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return x


def parse_box(cells: list[str]) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 normalised; ValueError saying what is wrong (outside [0, 1], degenerate)."""
    x1, y1, x2, y2 = (_number(c, name) for c, name in zip(cells, ("x1", "y1", "x2", "y2")))
    outside = [f"{n}={v:g}" for n, v in zip(("x1", "y1", "x2", "y2"), (x1, y1, x2, y2)) if not 0.0 <= v <= 1.0]
    if outside:
        raise ValueError(f"box outside [0, 1] ({', '.join(outside)}); AVA boxes are normalised to the frame")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"degenerate box ({x1:g}, {y1:g}, {x2:g}, {y2:g}): wants x1 < x2 and y1 < y2")
    return x1, y1, x2, y2


def _parse_row(cells: list[str], file: str, line: int) -> PersonBox:
    if len(cells) not in (7, 8):
        raise ValueError(f"{len(cells)} columns; AVA rows have 7 or 8 (video_id, timestamp, x1, y1, x2, y2, "
                         "action_id[, person_id])")
    video = cells[0].strip()
    if not video:
        raise ValueError("empty video_id")
    t = _number(cells[1], "timestamp")
    if t < 0:
        raise ValueError(f"timestamp {t:g} is negative")
    box = parse_box(cells[2:6])
    try:
        action = int(cells[6])
    except ValueError:
        raise ValueError(f"action_id {cells[6]!r} is not an integer") from None
    if action < 1:
        raise ValueError(f"action_id {action} is not allowed; AVA action ids start at 1")
    return PersonBox(video, t, box, action, cells[7].strip() if len(cells) == 8 else "", file, line)


def read_ava_csv(path: str | Path) -> tuple[list[PersonBox], list[Problem]]:
    """The rows of one AVA annotation CSV, and every broken row (bad numbers, boxes outside
    [0, 1] or degenerate, wrong column count) with its line and the reason; broken rows are
    left out. A missing file is a ManifestError."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: AVA annotation CSV not found")
    rows, problems = [], []
    with open(path, newline="") as f:
        for line, cells in enumerate(csv.reader(f), start=1):
            if not cells or (line == 1 and cells[0].strip().lower() == "video_id"):  # blank line, header
                continue
            try:
                rows.append(_parse_row([c.strip() for c in cells], str(path), line))
            except ValueError as e:
                problems.append(Problem(str(path), line, str(e)))
    return rows, problems


@dataclass(frozen=True)
class LabelMap:
    """Classes in label-id order: their AVA action ids, names and groups (label_type)."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    types: tuple[str, ...]

    def index(self) -> dict[int, int]:
        return {a: i for i, a in enumerate(self.ids)}

    def groups(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, t in enumerate(self.types):
            if t:
                out.setdefault(t, []).append(i)
        return out


def read_label_map(path: str | Path) -> LabelMap:
    """AVA's pbtxt action list (v2.2 `label {name label_id label_type}` or v2.1 `item {name id}`)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: label map not found")
    entries = []
    for k, block in enumerate(re.findall(r"\{([^}]*)\}", path.read_text())):
        name = re.search(r'name:\s*"([^"]*)"', block)
        ident = re.search(r"\b(?:label_id|id):\s*(\d+)", block)
        kind = re.search(r"label_type:\s*(\w+)", block)
        if not name or not ident:
            raise ManifestError(f"{path}: entry {k + 1} needs name and label_id (or id): {block.strip()!r}")
        entries.append((int(ident.group(1)), name.group(1), kind.group(1) if kind else ""))
    if not entries:
        raise ManifestError(f"{path}: no `label {{ name: ... label_id: ... }}` entries")
    ids = [e[0] for e in entries]
    if len(set(ids)) != len(ids):
        raise ManifestError(f"{path}: a label_id appears twice")
    entries.sort()
    return LabelMap(tuple(e[0] for e in entries), tuple(e[1] for e in entries), tuple(e[2] for e in entries))


def write_label_map(path: Path, names: list[str], types: list[str]) -> None:
    """AVA v2.2's pbtxt layout, label ids 1..C in class order."""
    path.write_text("".join(f'label {{\n  name: "{n}"\n  label_id: {i + 1}\n  label_type: {t}\n}}\n'
                            for i, (n, t) in enumerate(zip(names, types))))


def find_video(video_root: Path, video_id: str) -> Path | None:
    """`video_root/<video_id>.<ext>` for the usual containers (AVA's files: .mkv, .mp4, .webm)."""
    for ext in VIDEO_EXTENSIONS:
        p = video_root / f"{video_id}{ext}"
        if p.is_file():
            return p
    return None


# ----------------------------------------------------------------------------- prepare --format ava
@dataclass
class _Sources:
    """The AVA rows kept per split, what was left out, and the classes."""

    boxes: dict[str, list[PersonBox]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    excluded: dict[int, int] = field(default_factory=dict)  # action id -> rows not in the label map
    labels: LabelMap | None = None


def _read_sources(csvs: list[tuple[Path, str]], label_map: LabelMap | None) -> _Sources:
    src = _Sources()
    for path, split in csvs:
        rows, problems = read_ava_csv(path)
        src.problems += problems
        src.boxes.setdefault(split, []).extend(rows)
    if label_map is None:  # every action that occurs is a class, named by its id
        ids = sorted({b.action for rows in src.boxes.values() for b in rows})
        label_map = LabelMap(tuple(ids), tuple(str(a) for a in ids), ("",) * len(ids))
    known = set(label_map.ids)
    for split, rows in src.boxes.items():
        for b in rows:
            if b.action not in known:
                src.excluded[b.action] = src.excluded.get(b.action, 0) + 1
        src.boxes[split] = [b for b in rows if b.action in known]
    src.labels = label_map
    return src


def _drop_video(src: _Sources, video_id: str, reason: str) -> None:
    """Leave every row of one video out, each reported with its file and line."""
    for split, rows in src.boxes.items():
        for b in rows:
            if b.video_id == video_id:
                src.problems.append(Problem(b.file, b.row, reason))
        src.boxes[split] = [b for b in rows if b.video_id != video_id]


def _spans(src: _Sources, time_offset: float, chunk_seconds: float, margin: float) -> dict[tuple[str, int], tuple]:
    """(video_id, chunk) -> (start, end) in seconds of the file (None, None: the whole file).
    Chunks cut long videos (AVA's are 15 minutes) so that a clip decodes from a short file."""
    spans: dict[tuple[str, int], tuple] = {}
    for rows in src.boxes.values():
        for b in rows:
            k = chunk_of(b.timestamp, time_offset, chunk_seconds)
            if chunk_seconds > 0:
                spans[(b.video_id, k)] = (max(0.0, k * chunk_seconds - margin), (k + 1) * chunk_seconds + margin)
            else:
                spans[(b.video_id, k)] = (None, None)
    return spans


def chunk_of(timestamp: float, time_offset: float, chunk_seconds: float) -> int:
    return int((timestamp - time_offset) // chunk_seconds) if chunk_seconds > 0 else 0


def prepare_ava(csvs: list[tuple[str | Path, str]], out: str | Path, *, video_root: str | Path, labels=None,
                time_offset: float = 0.0, chunk_seconds: float = 0.0, margin_seconds: float = 1.5,
                workers: int = 2, progress: bool = True) -> dict:
    """`avsf data prepare --format ava`: AVA CSVs ((file, split) pairs) and their videos under
    `video_root` (`<video_id>.<ext>`) -> the loader-ready detection set in `out` (module doc).
    `time_offset`: seconds to subtract from AVA timestamps to get seconds of the file (0 for AVA's
    full movies, 900 for the 15-minute cuts PySlowFast's scripts make); `chunk_seconds` > 0 cuts
    each video into pieces of that length (plus `margin_seconds` each side for the clip around
    a keyframe at a piece's edge). Returns the report (also report.json)."""
    from avsf.data.manifest import SourceRow
    from avsf.data.prepare import prepare_files

    out, video_root = Path(out), Path(video_root)
    src = _read_sources([(Path(p), s) for p, s in csvs], read_label_map(labels) if labels else None)
    for video in sorted({b.video_id for rows in src.boxes.values() for b in rows}):
        if find_video(video_root, video) is None:
            kinds = "|".join(e[1:] for e in VIDEO_EXTENSIONS)
            _drop_video(src, video, f"unknown video '{video}': no {video}.<{kinds}> under {video_root}")
    spans = _spans(src, time_offset, chunk_seconds, margin_seconds)
    keys = sorted(spans)
    sources = [SourceRow(find_video(video_root, v), "", *spans[(v, k)]) for v, k in keys]
    out.mkdir(parents=True, exist_ok=True)
    results = prepare_files(sources, out, workers=workers, progress=progress)
    videos: dict[tuple[str, int], dict] = {}
    for i, key in enumerate(keys):
        res = results[i]
        if not res["ok"]:
            _drop_video(src, key[0], f"video '{key[0]}' could not be prepared: {res['reason']}")
            continue
        start = spans[key][0] or 0.0
        videos[key] = {**res["row"], "_start": start}
    return write_detection_set(src, out, videos, time_offset=time_offset, chunk_seconds=chunk_seconds)


def write_detection_set(src: _Sources, out: Path, videos: dict[tuple[str, int], dict], *, time_offset: float = 0.0,
                        chunk_seconds: float = 0.0) -> dict:
    """manifest.csv (one row per keyframe), boxes.csv, classes.json and report.json from the kept
    AVA rows and their prepared videos ((video_id, chunk) -> loader-ready row with `_start`, the
    piece's start in seconds of the source)."""
    labels = src.labels
    index = labels.index()
    manifest, boxes = [], []
    for split in sorted(src.boxes):
        frames: dict[tuple[str, float], list[PersonBox]] = defaultdict(list)
        for b in src.boxes[split]:
            frames[(b.video_id, b.timestamp)].append(b)
        for (video, t), persons in sorted(frames.items()):
            v = videos.get((video, chunk_of(t, time_offset, chunk_seconds)))
            if v is None:
                continue
            key_s = t - time_offset - v["_start"]
            if not 0 <= key_s <= float(v["duration"]):
                src.problems += [Problem(b.file, b.row, f"timestamp {t:g} lies outside video '{video}' "
                                         f"({float(v['duration']):.2f} s from {v['_start'] + time_offset:g} s)")
                                 for b in persons]
                continue
            classes = sorted({index[b.action] for b in persons})
            row = {k: x for k, x in v.items() if not k.startswith("_")}
            # a trailing ";" keeps one-action keyframes multi-label for the manifest reader
            manifest.append({**row, "label": "".join(f"{c};" for c in classes), "keyframe": f"{key_s:.4f}",
                             "video_id": video, "timestamp": f"{t:g}", "split": split})
            boxes += [{"video_id": video, "timestamp": f"{t:g}", "x1": b.box[0], "y1": b.box[1], "x2": b.box[2],
                       "y2": b.box[3], "label": index[b.action], "person_id": b.person} for b in persons]
    write_manifest(out / "manifest.csv", manifest)
    for split in sorted(src.boxes):  # per-split files as the synthetic benchmark has them (`avsf data preview`)
        write_manifest(out / f"{split}.csv", [{k: v for k, v in r.items() if k != "split"} for r in manifest
                                              if r["split"] == split])
    write_manifest(out / "boxes.csv", boxes, columns=BOX_COLUMNS)
    (out / "classes.json").write_text(json.dumps({"classes": list(labels.names), "groups": labels.groups(),
                                                  "task": "detection", "action_ids": list(labels.ids)}, indent=2))
    from avsf.data.prepare import write_report

    report = {"keyframes": len(manifest), "boxes": len(boxes),
              "splits": {s: sum(r["split"] == s for r in manifest) for s in sorted(src.boxes)},
              "left_out": [p.to_dict() for p in src.problems],
              "excluded_actions": {str(a): n for a, n in sorted(src.excluded.items())}}
    write_report(out, report)
    return report


# ----------------------------------------------------------------------------- boxes of a clip
def map_boxes(boxes: np.ndarray, resize: tuple[int, int], crop: tuple[int, int, int],
              flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (K, 4) boxes -> (K, 4) x1, y1, x2, y2 in the pixels of a clip resized to
    `resize` (h, w), cropped at `crop` (y0, x0, size) and maybe flipped left-right, clipped to
    the crop; and the share of each box's area inside the crop (0 for a box outside it)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    (h, w), (y0, x0, c) = resize, crop
    px = b * np.array([w, h, w, h]) - np.array([x0, y0, x0, y0])
    area = (px[:, 2] - px[:, 0]) * (px[:, 3] - px[:, 1])
    px = px.clip(0, c)
    inside = (px[:, 2] - px[:, 0]) * (px[:, 3] - px[:, 1])
    visible = np.divide(inside, area, out=np.zeros_like(area), where=area > 0)
    if flip:  # the picture's column x goes to c - x
        px = np.stack([c - px[:, 2], px[:, 1], c - px[:, 0], px[:, 3]], axis=1)
    return px.astype(np.float32), visible.astype(np.float32)


def jitter_boxes(boxes: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Each coordinate moved by up to `amount` x the box's width (x) or height (y), uniformly,
    kept inside the frame and at least a hundredth of it wide and high."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = np.concatenate([b[:, 2:] - b[:, :2]] * 2, axis=1)  # w, h, w, h
    moved = (b + rng.uniform(-amount, amount, size=b.shape) * size).clip(0.0, 1.0)
    lo = np.minimum(moved[:, :2], moved[:, 2:]).clip(max=0.99)
    hi = np.maximum(np.maximum(moved[:, :2], moved[:, 2:]), lo + 0.01)
    return np.concatenate([lo, hi], axis=1)


@dataclass
class Keyframe:
    """The persons of one keyframe: normalised boxes (P, 4) and their classes."""

    boxes: np.ndarray
    labels: list[list[int]]


def _keyframe_key(video_id: str, timestamp: str | float) -> tuple[str, float]:
    return video_id, round(float(timestamp), 3)


def _read_box_table(path: Path) -> dict[tuple[str, float], Keyframe]:
    """boxes.csv -> keyframe -> persons (rows of one person, same box, merged into one multi-label box)."""
    if not path.is_file():
        raise ManifestError(f"{path}: not found; a detection data set holds boxes.csv "
                            "(`avsf data prepare --format ava`)")
    people: dict[tuple[str, float], dict[tuple, set[int]]] = defaultdict(dict)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not set(BOX_COLUMNS) <= set(reader.fieldnames or []):
            raise ManifestError(f"{path}: header must hold {', '.join(BOX_COLUMNS)} (got {reader.fieldnames})")
        for line, r in enumerate(reader, start=2):
            try:
                key = _keyframe_key(r["video_id"], r["timestamp"])
                box = parse_box([r["x1"], r["y1"], r["x2"], r["y2"]])
                label = int(r["label"])
            except (ValueError, TypeError) as e:
                raise ManifestError(f"{path}, row {line}: {e}; rewrite the set with "
                                    "`avsf data prepare --format ava`") from None
            people[key].setdefault((r["person_id"], box), set()).add(label)
    return {k: Keyframe(np.array([b for _, b in p], dtype=np.float64).reshape(-1, 4), [sorted(v) for v in p.values()])
            for k, p in people.items()}


def read_detected_boxes(path: str | Path, threshold: float) -> dict[tuple[str, float], list[tuple[tuple, float]]]:
    """AVA's person-detector file (video_id, timestamp, x1, y1, x2, y2[, action_id], score; no header):
    keyframe -> [(box, score)] with score >= threshold. A broken row is a ManifestError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"eval.detected_boxes: {path} not found (AVA's detected-boxes CSV, or '' for the "
                            "ground-truth boxes)")
    out: dict[tuple[str, float], list] = defaultdict(list)
    with open(path, newline="") as f:
        for line, cells in enumerate(csv.reader(f), start=1):
            if not cells or (line == 1 and cells[0].strip().lower() == "video_id"):
                continue
            try:
                if len(cells) not in (7, 8):
                    raise ValueError(f"{len(cells)} columns; wants video_id, timestamp, x1, y1, x2, y2"
                                     "[, action_id], score")
                box, score = parse_box(cells[2:6]), _number(cells[-1], "score")
                key = _keyframe_key(cells[0].strip(), _number(cells[1], "timestamp"))
            except ValueError as e:
                raise ManifestError(f"{path}, row {line}: {e}") from None
            if score >= threshold:
                out[key].append((box, score))
    return dict(out)


class BoxAnnotations:
    """A detection set's boxes (`DatasetInfo.annotations`): what each keyframe row holds, and the
    batch fields of a list of clips. Training reads the ground-truth boxes, jittered by
    `data.box_jitter`; testing reads `eval.detected_boxes` when it names a file, else the
    ground-truth boxes."""

    def __init__(self, keyframes: dict[tuple[str, float], Keyframe], num_classes: int, cfg: Any,
                 detected: dict[tuple[str, float], list] | None = None):
        self.keyframes, self.num_classes, self.cfg, self.detected = keyframes, num_classes, cfg, detected

    @staticmethod
    def key(row: Row) -> tuple[str, float]:
        try:
            return _keyframe_key(row.extra["video_id"], row.extra["timestamp"])
        except (KeyError, ValueError):
            raise ManifestError(f"{row.path}: a detection manifest row needs video_id and timestamp columns "
                                f"(got {sorted(row.extra)}); rewrite it with `avsf data prepare --format ava`"
                                ) from None

    def truth(self, row: Row) -> Keyframe:
        return self.keyframes.get(self.key(row), Keyframe(np.zeros((0, 4)), []))

    def inputs(self, row: Row, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (P, 4) normalised, their multi-hot labels (P, C), detector scores (P,)) that
        the model scores for this row: ground truth (score 1), or the given detections at test,
        labelled with the classes of the ground-truth box they overlap most at IoU >= 0.5."""
        gt = self.truth(row)
        c = self.num_classes
        if mode == "train" or self.detected is None:
            y = np.zeros((len(gt.labels), c), np.float32)
            for i, labels in enumerate(gt.labels):
                y[i, labels] = 1.0
            return gt.boxes, y, np.ones(len(gt.labels))
        from avsf.boxes import box_iou

        found = self.detected.get(self.key(row), [])
        boxes = np.array([b for b, _ in found], dtype=np.float64).reshape(-1, 4)
        y = np.zeros((len(found), c), np.float32)
        if len(found) and len(gt.labels):
            iou = box_iou(boxes, gt.boxes)
            for i, j in enumerate(iou.argmax(axis=1)):
                if iou[i, j] >= 0.5:
                    y[i, gt.labels[j]] = 1.0
        return boxes, y, np.array([s for _, s in found])

    def fields(self, rows: list[Row], specs: list, mode: str, epoch: int = 0) -> dict[str, torch.Tensor]:
        """`boxes`, `box_mask`, `box_labels`, `box_visible` of the clips (module doc)."""
        inputs = [self.inputs(r, mode) for r in rows]
        n, k, c = len(rows), max([1, *(len(b) for b, _, _ in inputs)]), self.num_classes
        boxes, labels = np.zeros((n, k, 4), np.float32), np.zeros((n, k, c), np.float32)
        visible = np.zeros((n, k), np.float32)
        jitter = self.cfg.data.box_jitter if mode == "train" else 0.0
        for i, ((b, y, _), spec) in enumerate(zip(inputs, specs)):
            if jitter > 0 and len(b):
                b = jitter_boxes(b, jitter, np.random.default_rng([self.cfg.train.seed, epoch, spec.row, 13]))
            boxes[i, : len(b)], visible[i, : len(b)] = map_boxes(b, spec.resize, spec.crop, spec.flip)
            labels[i, : len(b)] = y
        return {"boxes": torch.from_numpy(boxes), "box_mask": torch.from_numpy(visible >= MIN_VISIBLE),
                "box_labels": torch.from_numpy(labels), "box_visible": torch.from_numpy(visible)}


def load_annotations(root: Path, cfg: Any) -> BoxAnnotations:
    """The `detection` task's annotations of the set in `root` (avsf.data.ANNOTATIONS)."""
    meta = json.loads((Path(root) / "classes.json").read_text())
    classes = max(len(meta.get("classes") or []), int(getattr(cfg.model, "num_classes", 0) or 0))
    detected = None
    if cfg.eval.detected_boxes:
        detected = read_detected_boxes(cfg.eval.detected_boxes, cfg.eval.detected_box_threshold)
    return BoxAnnotations(_read_box_table(Path(root) / "boxes.csv"), classes, cfg, detected)


# ----------------------------------------------------------------------------- the command
def split_of(spec: str) -> tuple[Path, str]:
    """`SPLIT=FILE`, or FILE whose name says train, val or test (AVA's ava_train_v2.2.csv ...)."""
    if "=" in spec:
        split, path = spec.split("=", 1)
        if not split.strip():
            raise ManifestError(f"{spec!r}: empty split name before '='; write SPLIT=FILE, e.g. train=ava_train.csv")
        return Path(path), split.strip()
    name = Path(spec).name.lower()
    found = [s for s in ("train", "val", "test") if s in name]
    if len(found) != 1:
        raise ManifestError(f"{spec}: cannot tell its split from the name; write SPLIT=FILE, e.g. val={spec}")
    return Path(spec), found[0]


def run_prepare_ava(args: Any) -> int:
    """`avsf data prepare --format ava` (avsf.cli.data): inputs checked before any work."""
    import sys

    def fail(msg: str) -> int:
        print(f"avsf data prepare: {msg}", file=sys.stderr)
        return 2

    if not args.video_root:
        return fail("--format ava needs --video-root DIR (the folder holding <video_id>.<ext>)")
    if not Path(args.video_root).is_dir():
        return fail(f"--video-root {args.video_root}: not a folder")
    for name in ("time_offset", "chunk_seconds"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            return fail(f"--{name.replace('_', '-')} {value:g} is not allowed; use a number >= 0")
    try:
        csvs = [split_of(m) for m in args.manifest]
        for path, _ in csvs:
            if not path.is_file():
                raise ManifestError(f"{path}: AVA annotation CSV not found")
        if args.labels:
            read_label_map(args.labels)
    except ManifestError as e:
        return fail(str(e))
    report = prepare_ava(csvs, args.out, video_root=args.video_root, labels=args.labels, time_offset=args.time_offset,
                         chunk_seconds=args.chunk_seconds, workers=args.workers, progress=not args.no_progress)
    left = report["left_out"]
    print(f"{report['keyframes']} keyframes with {report['boxes']} box labels ({report['splits']}); "
          f"{len(left)} rows left out, {sum(report['excluded_actions'].values())} of actions outside the label map -> "
          f"{Path(args.out) / 'report.json'}")
    for p in left[:20]:
        print(f"  {p['file']}, row {p['row']}: {p['reason']}")
    if len(left) > 20:
        print(f"  ... and {len(left) - 20} more in report.json")
    return 0 if report["keyframes"] else 1
