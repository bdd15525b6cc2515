"""Public datasets' annotation files -> `Source` (rows to prepare, the class order, metadata).

`avsf data prepare --format F` reads them (`read_format`). Every reader resolves videos under
`video_root` and refuses paths that leave it unless `allow_outside_root`; errors name the file,
the row and what to do. Formats:

- ``kinetics``: the annotation CSV (label,youtube_id,time_start,time_end[,split]); optionally the
  paper's 32 Kinetics-Sounds classes (appendix B).
- ``epic`` (EPIC-Kitchens-100) and ``epic55`` (EPIC-Kitchens-55): one segment per row, cut at its
  start/stop timestamps, verb and noun classes. EPIC-55 (125 verbs, 352 nouns) is what the paper
  used, with "the train/val split in [6]" (Baradel et al., ECCV 2018) as its authors' group
  implemented it (facebookresearch/video-long-term-feature-banks, lib/datasets/epic.py:
  ``TRAIN_PERSON_INDICES = range(1, 26)``): the EPIC-55 training annotations split by
  participant, P01-P25 train, P26-P31 val.
- ``charades``: multi-label; by default one clip per annotated span, cut to it and labelled with
  every class whose spans cover at least half of it (identical spans merge into one clip); rows
  keep their video id (the `video` column), so evaluation pools a video's clips (eval.video_pool).
  ``whole_videos=True``: one row per video with all its classes.
- ``ucf101`` / ``hmdb51``: the official three train/test folds from their list files; one row per
  video with columns split1..split3 (train | test | empty), chosen by ``data.fold``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from avsf.data.errors import ManifestError
from avsf.data.manifest import (SourceRow, check_inside, csv_reader, no_rows, read_source_manifest, read_text,
                                seconds)

log = logging.getLogger("avsf.data")

FORMATS = ("list", "kinetics", "epic", "epic55", "charades", "ucf101", "hmdb51")

# The paper's Kinetics-Sounds subset (appendix B): the 32 classes still in Kinetics-400.
KINETICS_SOUNDS = (
    "blowing nose", "blowing out candles", "bowling", "chopping wood", "dribbling basketball", "laughing",
    "mowing lawn", "playing accordion", "playing bagpipes", "playing bass guitar", "playing clarinet",
    "playing drums", "playing guitar", "playing harmonica", "playing keyboard", "playing organ", "playing piano",
    "playing saxophone", "playing trombone", "playing trumpet", "playing violin", "playing xylophone",
    "ripping paper", "shoveling snow", "shuffling cards", "singing", "stomping grapes", "strumming guitar",
    "tap dancing", "tapping guitar", "tapping pen", "tickling",
)
EPIC_CLASSES = {"epic": (97, 300), "epic55": (125, 352)}  # (verbs, nouns)
EPIC55_TRAIN_PARTICIPANTS = range(1, 26)  # P01-P25 train, the rest val (see the module docstring)
FOLDS = (1, 2, 3)


@dataclass
class Source:
    """What a format reader found: rows to prepare, the official class order (None: derived from
    the labels), and metadata that prepare writes into classes.json."""

    rows: list[SourceRow]
    classes: list[str] | None = None
    info: dict = field(default_factory=dict)


def read_format(fmt: str, manifest, video_root=None, *, allow_outside_root: bool = False, split: str | None = None,
                kinetics_sounds: bool = False, whole_videos: bool = False) -> Source:
    """Dispatch on `fmt` (one of FORMATS); `video_root` is required for every format but ``list``."""
    if fmt not in FORMATS:
        raise ManifestError(f"--format {fmt} is unknown; choose one of {', '.join(FORMATS)}")
    if fmt == "list":
        return Source(read_source_manifest(manifest, allow_outside_root=allow_outside_root), info={"format": "list"})
    if not video_root:
        raise ManifestError(f"--format {fmt} needs --video-root DIR (the folder holding the videos)")
    kw = {"allow_outside_root": allow_outside_root}
    if fmt == "kinetics":
        return read_kinetics_csv(manifest, video_root, kinetics_sounds=kinetics_sounds, split=split, **kw)
    if fmt in EPIC_CLASSES:
        return read_epic_csv(manifest, video_root, version=fmt, **kw)
    if fmt == "charades":
        return read_charades_csv(manifest, video_root, whole_videos=whole_videos, **kw)
    return (read_ucf101 if fmt == "ucf101" else read_hmdb51)(manifest, video_root, **kw)


def _first_existing(candidates: list[Path]) -> Path:
    return next((p for p in candidates if p.exists()), candidates[0])


def _finish(path: Path, root: Path, rows: list[SourceRow], allow: bool, what: str) -> list[SourceRow]:
    if not rows:
        raise no_rows(path, what)
    check_inside(path, root, rows, allow)
    return rows


def read_kinetics_csv(path, video_root, *, kinetics_sounds: bool = False, split: str | None = None,
                      ext: str = ".mp4", allow_outside_root: bool = False) -> Source:
    """Kinetics annotation CSV (label,youtube_id,time_start,time_end[,split]). Videos are looked up as
    the usual downloader lays them out: ``video_root/<youtube_id>_<start:06d>_<end:06d><ext>``, or the
    same name under ``video_root/<label>/``. `kinetics_sounds` keeps only the paper's 32 classes."""
    path, video_root = Path(path), Path(video_root)
    keep = set(KINETICS_SOUNDS) if kinetics_sounds else None
    reader = csv_reader(path, read_text(path), {"label", "youtube_id", "time_start", "time_end"}, "a Kinetics CSV")
    rows = []
    for i, r in enumerate(reader, start=2):
        label = r["label"].strip().strip('"')
        if keep is not None and label not in keep:
            continue
        if split is not None and r.get("split") and r["split"] != split:
            continue
        t0, t1 = seconds(path, i, "time_start", r["time_start"]), seconds(path, i, "time_end", r["time_end"])
        if t0 is None or t1 is None:
            raise ManifestError(f"{path}, row {i}: time_start/time_end are empty; fill both (seconds)")
        name = f"{r['youtube_id'].strip()}_{int(t0):06d}_{int(t1):06d}{ext}"
        p = _first_existing([video_root / name, video_root / label / name])
        rows.append(SourceRow(p, label, extra={"split": (r.get("split") or "").strip()}, line=i))
    return Source(_finish(path, video_root, rows, allow_outside_root, "annotation row"), info={"format": "kinetics"})


def read_epic_csv(path, video_root, *, version: str = "epic", ext: str = ".MP4",
                  allow_outside_root: bool = False) -> Source:
    """EPIC-Kitchens action annotations, one segment per row, label "verb_class:noun_class".
    ``epic`` (EPIC-100: EPIC_100_train.csv ...) or ``epic55`` (EPIC_train_action_labels.csv; rows get
    split train/val by participant, the paper's split). Videos at ``video_root/<participant>/videos/
    <video_id><ext>`` (EPIC-100), ``video_root/[train/]<participant>/<video_id><ext>`` (EPIC-55) or
    ``video_root/<video_id><ext>``."""
    path, video_root = Path(path), Path(video_root)
    n_verbs, n_nouns = EPIC_CLASSES[version]
    need = {"video_id", "start_timestamp", "stop_timestamp", "verb_class", "noun_class"}
    if version == "epic55":
        need.add("participant_id")
    reader = csv_reader(path, read_text(path), need, f"an EPIC-Kitchens{'-55' if version == 'epic55' else '-100'} CSV")
    rows = []
    for i, r in enumerate(reader, start=2):
        person, vid = (r.get("participant_id") or "").strip(), r["video_id"].strip()
        try:
            verb, noun = int(r["verb_class"]), int(r["noun_class"])
        except ValueError:
            raise ManifestError(f"{path}, row {i}: verb_class/noun_class {r['verb_class']!r}/{r['noun_class']!r} "
                                "are not integers") from None
        if not (0 <= verb < n_verbs and 0 <= noun < n_nouns):
            raise ManifestError(f"{path}, row {i}: verb_class {verb} / noun_class {noun} outside {version}'s "
                                f"{n_verbs} verbs / {n_nouns} nouns; is this the other EPIC version's file?")
        start = seconds(path, i, "start_timestamp", r["start_timestamp"])
        end = seconds(path, i, "stop_timestamp", r["stop_timestamp"])
        if start is None or end is None or end <= start:
            raise ManifestError(f"{path}, row {i}: the segment {r['start_timestamp']!r}-{r['stop_timestamp']!r} "
                                "is empty or reversed; stop_timestamp must be after start_timestamp")
        extra = {"verb": verb, "noun": noun}
        if version == "epic55":
            extra["split"] = "train" if _participant(path, i, person) in EPIC55_TRAIN_PARTICIPANTS else "val"
        p = _first_existing([video_root / person / "videos" / f"{vid}{ext}", video_root / person / f"{vid}{ext}",
                             video_root / "train" / person / f"{vid}{ext}", video_root / f"{vid}{ext}"])
        rows.append(SourceRow(p, f"{verb}:{noun}", start, end, extra=extra, line=i))
    return Source(_finish(path, video_root, rows, allow_outside_root, "segment row"),
                  info={"format": version, "num_verbs": n_verbs, "num_nouns": n_nouns})


def _participant(path: Path, row: int, person: str) -> int:
    m = re.fullmatch(r"P(\d+)", person)
    if not m:
        raise ManifestError(f"{path}, row {row}: participant_id {person!r} is not like P01")
    return int(m.group(1))


def read_charades_csv(path, video_root, *, whole_videos: bool = False, ext: str = ".mp4",
                      allow_outside_root: bool = False) -> Source:
    """Charades CSV (id, ..., actions="c092 11.90 21.20;c147 0.00 12.60", length). Default: one clip
    per distinct annotated span, labelled with every class whose spans cover at least half of it;
    `whole_videos`: one multi-label row per video (every class in it). Spans are clipped to the
    video's `length` when given; a span left empty is skipped with a warning naming the row."""
    path, video_root = Path(path), Path(video_root)
    reader = csv_reader(path, read_text(path), {"id", "actions"}, "a Charades CSV")
    rows = []
    for i, r in enumerate(reader, start=2):
        vid = r["id"].strip()
        spans = _charades_spans(path, i, r)
        p = video_root / f"{vid}{ext}"
        if whole_videos:
            if spans:
                rows.append(SourceRow(p, sorted({c for c, _, _ in spans}), extra={"video": vid}, line=i))
            continue
        for a, b in sorted({(a, b) for _, a, b in spans}):
            labels = sorted({c for c in {c for c, _, _ in spans} if _covered(spans, c, a, b) >= 0.5 * (b - a)})
            rows.append(SourceRow(p, labels, a, b, extra={"video": vid}, line=i))
    return Source(_finish(path, video_root, rows, allow_outside_root, "video row with actions"),
                  info={"format": "charades", "clips": "whole videos" if whole_videos else "annotated spans"})


def _charades_spans(path: Path, row: int, r: dict) -> list[tuple[str, float, float]]:
    length = seconds(path, row, "length", r.get("length"))
    spans = []
    for item in (r["actions"] or "").split(";"):
        if not item.strip():
            continue
        try:
            c, a, b = item.split()
            a, b = max(float(a), 0.0), float(b)
        except ValueError:
            raise ManifestError(f"{path}, row {row}: bad action '{item}' (want 'c092 11.90 21.20')") from None
        if length is not None:
            b = min(b, length)
        if b <= a:
            log.warning("%s, row %d: action '%s' spans no time inside the video; skipped", path, row, item.strip())
            continue
        spans.append((c, a, b))
    return spans


def _covered(spans: list[tuple[str, float, float]], cls: str, a: float, b: float) -> float:
    """Seconds of [a, b] covered by the spans of class `cls` (overlaps of its spans counted once)."""
    pieces = sorted((max(s, a), min(e, b)) for c, s, e in spans if c == cls and min(e, b) > max(s, a))
    total, end = 0.0, a
    for s, e in pieces:
        s = max(s, end)
        if e > s:
            total += e - s
            end = e
    return total


def _fold_source(video_root: Path, where: Path, folds: dict[str, dict[int, str]], label: dict[str, str],
                 classes: list[str], line: dict[str, int], fmt: str, allow: bool) -> Source:
    rows = [SourceRow(video_root / rel, label[rel], extra={"folds": dict(f)}, line=line[rel])
            for rel, f in sorted(folds.items())]
    seen = sorted({k for f in folds.values() for k in f})
    return Source(_finish(where, video_root, rows, allow, "list line"), classes=classes,
                  info={"format": fmt, "folds": seen})


def _set_fold(folds: dict, rel: str, fold: int, role: str, where: str) -> None:
    old = folds.setdefault(rel, {}).get(fold)
    if old and old != role:
        raise ManifestError(f"{where}: {rel} is both {old} and {role} in fold {fold}; fix the list files")
    folds[rel][fold] = role


def read_ucf101(list_dir, video_root, *, allow_outside_root: bool = False) -> Source:
    """UCF101's ucfTrainTestlist folder: classInd.txt ("1 ApplyEyeMakeup"), trainlist0K.txt
    ("ApplyEyeMakeup/v_..._g08_c01.avi 1") and testlist0K.txt ("ApplyEyeMakeup/v_..._g01_c01.avi")
    for the folds K present. Videos at ``video_root/<class>/<name>.avi``."""
    list_dir, video_root = Path(list_dir), Path(video_root)
    ind = list_dir / "classInd.txt"
    classes = []
    for i, line in enumerate(read_text(ind).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise ManifestError(f"{ind}, line {i}: expected '{len(classes) + 1} ClassName', got {line!r}")
        classes.append(parts[1])
    folds: dict[str, dict[int, str]] = {}
    label, first_line = {}, {}
    for k in FOLDS:
        for role in ("train", "test"):
            f = list_dir / f"{role}list0{k}.txt"
            if not f.exists():
                continue
            for i, line in enumerate(read_text(f).splitlines(), start=1):
                if not line.strip():
                    continue
                rel, *idx = line.split()
                cls = rel.replace("\\", "/").split("/")[0]
                if cls not in classes or (idx and (not idx[0].isdigit() or classes[int(idx[0]) - 1:int(idx[0])] != [cls])):
                    raise ManifestError(f"{f}, line {i}: {line.strip()!r}: its folder and class index must name the same "
                                        f"class of {ind.name}")
                _set_fold(folds, rel, k, role, f"{f}, line {i}")
                label[rel] = cls
                first_line.setdefault(rel, i)
    if not folds:
        raise ManifestError(f"{list_dir}: no trainlist0K.txt / testlist0K.txt (K = 1..3); point MANIFEST at the "
                            "ucfTrainTestlist folder")
    return _fold_source(video_root, list_dir, folds, label, classes, first_line, "ucf101", allow_outside_root)


def read_hmdb51(split_dir, video_root, *, allow_outside_root: bool = False) -> Source:
    """HMDB51's split folder (testTrainMulti_7030_splits): ``<class>_test_split<K>.txt`` with lines
    "<video>.avi <0|1|2>" (1 train, 2 test, 0 not used in fold K). Videos at ``video_root/<class>/<video>``."""
    split_dir, video_root = Path(split_dir), Path(video_root)
    files = sorted(split_dir.glob("*_test_split[123].txt"))
    if not files:
        raise ManifestError(f"{split_dir}: no <class>_test_split<K>.txt files; point MANIFEST at HMDB51's "
                            "testTrainMulti_7030_splits folder")
    roles = {"0": "", "1": "train", "2": "test"}
    folds: dict[str, dict[int, str]] = {}
    label, first_line = {}, {}
    for f in files:
        cls, k = re.fullmatch(r"(.+)_test_split([123])\.txt", f.name).groups()
        for i, line in enumerate(read_text(f).splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in roles:
                raise ManifestError(f"{f}, line {i}: expected '<video>.avi 0|1|2', got {line!r}")
            rel = f"{cls}/{parts[0]}"
            _set_fold(folds, rel, int(k), roles[parts[1]], f"{f}, line {i}")
            label[rel] = cls
            first_line.setdefault(rel, i)
    classes = sorted({c for c in label.values()})
    return _fold_source(video_root, split_dir, folds, label, classes, first_line, "hmdb51", allow_outside_root)
