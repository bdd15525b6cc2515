"""Manifests: the loader-ready CSV, users' input lists, and public datasets' annotation files.

Loader-ready (`manifest.csv`, `train.csv`, ... written by `synth` and `prepare`), header:
``path,audio,label,duration,fps[,has_audio][,split][,verb,noun][,keyframe]``; paths relative to the
file's folder. ``label`` is a class index, or ``3;7`` (several indices) for multi-label data.
``keyframe`` (seconds into the file) centres every clip of the row on that time (detection:
one row per annotated keyframe, docs/detection.md). Columns the loader does not read are kept
in `Row.extra` as text (detection keys its boxes by the `video_id` and `timestamp` columns).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

# The paper's Kinetics-Sounds subset (appendix B): the 32 classes still in Kinetics-400.
KINETICS_SOUNDS = (
    "blowing nose", "blowing out candles", "bowling", "chopping wood", "dribbling basketball", "laughing",
    "mowing lawn", "playing accordion", "playing bagpipes", "playing bass guitar", "playing clarinet",
    "playing drums", "playing guitar", "playing harmonica", "playing keyboard", "playing organ", "playing piano",
    "playing saxophone", "playing trombone", "playing trumpet", "playing violin", "playing xylophone",
    "ripping paper", "shoveling snow", "shuffling cards", "singing", "stomping grapes", "strumming guitar",
    "tap dancing", "tapping guitar", "tapping pen", "tickling",
)


_ROW_COLUMNS = frozenset(("path", "audio", "label", "duration", "fps", "has_audio", "verb", "noun", "height", "width",
                          "keyframe", "split"))


class ManifestError(ValueError):
    """A manifest row is wrong; the message names the file, the row and what to do."""


@dataclass
class Row:
    """One loader-ready sample."""

    path: Path
    audio: Path | None
    label: int | list[int]
    duration: float
    fps: float
    has_audio: bool = True
    verb: int = -1
    noun: int = -1
    height: int = 0  # 0: unknown, probed on first use
    width: int = 0
    keyframe: float = -1.0  # >= 0: clips are centred on this time (s into the file); -1: sampled as usual
    extra: dict = field(default_factory=dict)  # the manifest's other columns, as text


@dataclass
class SourceRow:
    """One input sample before preparation (any container; optional time span)."""

    path: Path
    label: str | list[str]
    start: float | None = None
    end: float | None = None
    extra: dict = field(default_factory=dict)


def write_manifest(path: str | Path, rows: list[dict], columns: tuple[str, ...] | None = None) -> None:
    """CSV with a header (`columns`, else every key of the rows in first-seen order), atomically."""
    path = Path(path)
    keys: list[str] = list(columns or ())
    for r in rows if columns is None else ():
        for k in r:
            if k not in keys:
                keys.append(k)
    if not keys:
        keys = ["path", "audio", "label", "duration", "fps"]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    tmp.replace(path)


def read_manifest(path: str | Path, split: str | None = None) -> list[Row]:
    """Read a loader-ready manifest. `split` filters by a `split` column when there is one."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found (run `avsf data prepare` or `avsf data synth` first)")
    root = path.parent
    rows: list[Row] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"path", "label"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise ManifestError(f"{path}: header must contain path,label (got {reader.fieldnames}); "
                                "write it with `avsf data prepare`")
        for i, r in enumerate(reader, start=2):
            if split is not None and r.get("split") not in (None, "", split):
                continue
            try:
                label_text = r["label"].strip()
                label: int | list[int] = ([int(x) for x in label_text.split(";") if x != ""]
                                          if ";" in label_text else int(label_text))
                audio = r.get("audio") or ""
                rows.append(Row(
                    path=(root / r["path"]).resolve() if not Path(r["path"]).is_absolute() else Path(r["path"]),
                    audio=((root / audio) if not Path(audio).is_absolute() else Path(audio)) if audio else None,
                    label=label,
                    duration=float(r.get("duration") or 0.0),
                    fps=float(r.get("fps") or 0.0),
                    has_audio=(r.get("has_audio", "1") or "1") not in ("0", "false", "False"),
                    verb=int(r.get("verb") or -1),
                    noun=int(r.get("noun") or -1),
                    height=int(r.get("height") or 0),
                    width=int(r.get("width") or 0),
                    keyframe=float(r.get("keyframe") or -1.0),
                    extra={k: v for k, v in r.items() if k not in _ROW_COLUMNS and k is not None},
                ))
            except (ValueError, TypeError, KeyError) as e:
                raise ManifestError(f"{path}, row {i}: cannot read {dict(r)} ({e}); labels must be integers "
                                    "(or '3;7' for multi-label), duration/fps/keyframe numbers") from None
    return rows


def read_source_manifest(path: str | Path) -> list[SourceRow]:
    """Users' list: "path label" per line (Kinetics/SlowFast style) or CSV with header path,label.

    Relative paths are relative to the manifest's folder. Lines starting with '#' are skipped.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found")
    text = path.read_text()
    root = path.parent
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    rows: list[SourceRow] = []
    if "," in first and "path" in [c.strip().lower() for c in first.split(",")]:
        reader = csv.DictReader(io.StringIO(text))
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "label" not in cols:
            raise ManifestError(f"{path}: CSV header needs path,label (got {reader.fieldnames})")
        for i, r in enumerate(reader, start=2):
            p, lab = (r.get(cols["path"]) or "").strip(), (r.get(cols["label"]) or "").strip()
            if not p or not lab:
                raise ManifestError(f"{path}, row {i}: empty path or label in {dict(r)}; fill both or delete the row")
            start = r.get(cols["start"]) if "start" in cols else None
            end = r.get(cols["end"]) if "end" in cols else None
            rows.append(SourceRow(_resolve(root, p), lab, float(start) if start else None, float(end) if end else None))
        return rows
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise ManifestError(f"{path}, line {i}: expected 'path label', got {line!r}; "
                                "separate the path and the label with a space")
        rows.append(SourceRow(_resolve(root, parts[0].strip()), parts[1].strip()))
    return rows


def _resolve(root: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else root / q


def read_kinetics_csv(path: str | Path, video_root: str | Path, *, kinetics_sounds: bool = False,
                      split: str | None = None, ext: str = ".mp4") -> list[SourceRow]:
    """Kinetics annotation CSV (label,youtube_id,time_start,time_end,split).

    Videos are looked up as the usual downloader lays them out:
    ``video_root/<youtube_id>_<start:06d>_<end:06d><ext>``, or the same name under
    ``video_root/<label>/``. `kinetics_sounds=True` keeps only the paper's 32 classes.
    """
    path, video_root = Path(path), Path(video_root)
    keep = set(KINETICS_SOUNDS) if kinetics_sounds else None
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if not need <= set(reader.fieldnames or []):
            raise ManifestError(f"{path}: not a Kinetics CSV (need {sorted(need)}, got {reader.fieldnames})")
        for i, r in enumerate(reader, start=2):
            label = r["label"].strip().strip('"')
            if keep is not None and label not in keep:
                continue
            if split is not None and r.get("split") and r["split"] != split:
                continue
            try:
                t0, t1 = int(float(r["time_start"])), int(float(r["time_end"]))
            except ValueError:
                raise ManifestError(f"{path}, row {i}: time_start/time_end not numbers") from None
            name = f"{r['youtube_id']}_{t0:06d}_{t1:06d}{ext}"
            p = video_root / name
            if not p.exists() and (video_root / label / name).exists():
                p = video_root / label / name
            rows.append(SourceRow(p, label, extra={"split": r.get("split", "")}))
    return rows


def read_epic_csv(path: str | Path, video_root: str | Path, ext: str = ".MP4") -> list[SourceRow]:
    """EPIC-Kitchens-100 action CSV: one segment per row, label "verb_class:noun_class".

    Videos at ``video_root/<participant_id>/videos/<video_id><ext>`` (or ``video_root/<video_id><ext>``).
    """
    path, video_root = Path(path), Path(video_root)
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"video_id", "start_timestamp", "stop_timestamp", "verb_class", "noun_class"}
        if not need <= set(reader.fieldnames or []):
            raise ManifestError(f"{path}: not an EPIC-Kitchens-100 CSV (need {sorted(need)})")
        for i, r in enumerate(reader, start=2):
            p = video_root / r.get("participant_id", "") / "videos" / f"{r['video_id']}{ext}"
            if not p.exists():
                p = video_root / f"{r['video_id']}{ext}"
            try:
                rows.append(SourceRow(p, f"{int(r['verb_class'])}:{int(r['noun_class'])}",
                                      _hms(r["start_timestamp"]), _hms(r["stop_timestamp"]),
                                      extra={"verb": int(r["verb_class"]), "noun": int(r["noun_class"])}))
            except ValueError:
                raise ManifestError(f"{path}, row {i}: bad timestamps or classes in {dict(r)}") from None
    return rows


def read_charades_csv(path: str | Path, video_root: str | Path, ext: str = ".mp4") -> list[SourceRow]:
    """Charades CSV (id, ..., actions="c092 11.90 21.20;c147 0.00 12.60", length): one multi-label
    row per video, labels = every action class that occurs (the span is kept in `extra`)."""
    path, video_root = Path(path), Path(video_root)
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not {"id", "actions"} <= set(reader.fieldnames or []):
            raise ManifestError(f"{path}: not a Charades CSV (need id, actions)")
        for i, r in enumerate(reader, start=2):
            spans = []
            for item in (r["actions"] or "").split(";"):
                if not item.strip():
                    continue
                try:
                    c, a, b = item.split()
                    spans.append((c, float(a), float(b)))
                except ValueError:
                    raise ManifestError(f"{path}, row {i}: bad action '{item}' (want 'c092 11.90 21.20')") from None
            labels = sorted({c for c, _, _ in spans})
            rows.append(SourceRow(video_root / f"{r['id']}{ext}", labels, extra={"spans": spans}))
    return rows


def _hms(text: str) -> float:
    parts = [float(x) for x in text.split(":")]
    s = 0.0
    for x in parts:
        s = s * 60 + x
    return s
