"""Manifests: the loader-ready CSV and users' input lists (public datasets' annotation files:
avsf.data.formats).

Loader-ready (`manifest.csv`, `train.csv`, ... written by `synth` and `prepare`), header:
``path,audio,label,duration,fps[,has_audio][,height,width,codec][,split][,split1,split2,split3]
[,verb,noun][,video][,keyframe]``; paths relative to the file's folder. ``label`` is a class index,
or ``3;7`` (several indices; ``3;`` a multi-label row with one) for multi-label data. ``split1..3``:
a dataset's official folds (train/test per video, empty = not in that fold). ``video``: the source
video of a clip cut from it (Charades spans; eval pools a video's clips). ``keyframe`` (seconds into
the file) centres every clip of the row on that time (detection: one row per annotated keyframe,
docs/detection.md). Columns the loader does not read are kept in `Row.extra` as text (detection
keys its boxes by the `video_id` and `timestamp` columns).

Every reader takes UTF-8 with or without a byte-order mark and LF or CRLF line ends, and names
the file, the row and what to do in its errors.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from avsf.data.errors import ManifestError

_ROW_COLUMNS = frozenset(("path", "audio", "label", "duration", "fps", "has_audio", "verb", "noun", "height", "width",
                          "codec", "video", "keyframe", "split"))


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
    codec: str = ""  # "": unknown (as FFmpeg names it: vp9, h264, ...; picks the decoder on a GPU)
    video: str = ""  # the source video a clip was cut from (Charades spans): clips aggregate per video
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
    line: int = 0  # its line (or CSV row) in the file it came from, for reports


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


def read_text(path: Path) -> str:
    """A manifest's text, LF line ends: UTF-8 with or without the byte-order mark spreadsheets
    write ("CSV UTF-8"), LF or CRLF. Errors name the line and what to do; an empty file is one."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found" + (" (it is a folder)" if path.is_dir() else ""))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ManifestError(f"{path}, line {line}: byte 0x{raw[e.start]:02x} is not UTF-8; save the file as UTF-8 "
                            "(in a spreadsheet: 'CSV UTF-8'; with iconv: iconv -f latin1 -t utf-8)") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ManifestError(f"{path}: the file is empty; write one 'path label' line per video "
                            "(or a CSV with the header path,label)")
    return text


def csv_reader(path: Path, text: str, need: set[str], what: str) -> csv.DictReader:
    """A DictReader over `text` whose header holds `need` (stripped names), or a clear error."""
    reader = csv.DictReader(io.StringIO(text))
    reader.fieldnames = [c.strip() for c in reader.fieldnames or []]
    if not need <= set(reader.fieldnames):
        raise ManifestError(f"{path}: {what} needs the columns {sorted(need)}; its header is {reader.fieldnames}")
    return reader


def no_rows(path: Path, what: str = "'path label' line per video") -> ManifestError:
    return ManifestError(f"{path}: no rows after the header; add one {what}")


def read_manifest(path: str | Path, split: str | None = None, *, split_column: str = "split",
                  label_free: bool = False) -> list[Row]:
    """Read a loader-ready manifest. `split` filters by `split_column` when the file has it.
    `label_free`: the label column is never read (self-supervised pretraining)."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found (run `avsf data prepare` or `avsf data synth` first)")
    root = path.parent
    reader = csv_reader(path, read_text(path), {"path"} if label_free else {"path", "label"}, "a loader-ready manifest")
    has_split = split_column in reader.fieldnames
    if split is not None and split_column != "split" and not has_split:
        raise ManifestError(f"{path}: no column {split_column}; this dataset has no such fold (data.fold)")
    rows: list[Row] = []
    for i, r in enumerate(reader, start=2):
        if split is not None and has_split and r.get(split_column) != split:
            # an empty `split` means every split; an empty fold column, a video that fold leaves out
            if r.get(split_column) or split_column != "split":
                continue
        try:
            rows.append(_row(root, r, label_free))
        except (ValueError, TypeError, KeyError) as e:
            raise ManifestError(f"{path}, row {i}: cannot read {dict(r)} ({e}); labels must be class indices "
                                "(or '3;7' for multi-label), duration/fps/keyframe numbers") from None
    return rows


def _row(root: Path, r: dict, label_free: bool) -> Row:
    audio = (r.get("audio") or "").strip()
    label: int | list[int] = -1
    if not label_free:
        text = (r.get("label") or "").strip()
        label = [int(x) for x in text.split(";") if x != ""] if ";" in text else int(text)
    return Row(
        path=(root / r["path"]).resolve() if not Path(r["path"]).is_absolute() else Path(r["path"]),
        audio=((root / audio) if not Path(audio).is_absolute() else Path(audio)) if audio else None,
        label=label,
        duration=float(r.get("duration") or 0.0),
        fps=float(r.get("fps") or 0.0),
        has_audio=(r.get("has_audio", "1") or "1") not in ("0", "false", "False"),
        verb=-1 if label_free else int(r.get("verb") or -1),
        noun=-1 if label_free else int(r.get("noun") or -1),
        height=int(r.get("height") or 0),
        width=int(r.get("width") or 0),
        codec=(r.get("codec") or "").strip().lower(),
        video=(r.get("video") or "").strip(),
        keyframe=float(r.get("keyframe") or -1.0),
        extra={k: v for k, v in r.items() if k not in _ROW_COLUMNS and k is not None},
    )


def read_source_manifest(path: str | Path, *, allow_outside_root: bool = False) -> list[SourceRow]:
    """Users' list: "path label" per line (Kinetics/SlowFast style) or CSV with header path,label
    (optional start,end in seconds). Labels are strings ("01" and "1" are two classes).

    Relative paths are relative to the manifest's folder; a path outside that folder (``../x``,
    an absolute path elsewhere) is refused unless `allow_outside_root`. Lines starting with '#'
    are skipped.
    """
    path = Path(path)
    text = read_text(path)
    root = path.parent
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    if "," in first and "path" in [c.strip().lower() for c in first.split(",")]:
        rows = _read_source_csv(path, text, root)
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise ManifestError(f"{path}, line {i}: expected 'path label', got {line!r}; "
                                    "separate the path and the label with a space")
            rows.append(SourceRow(_resolve(root, parts[0].strip()), parts[1].strip(), line=i))
    if not rows:
        raise no_rows(path)
    check_inside(path, root, rows, allow_outside_root)
    return rows


def _read_source_csv(path: Path, text: str, root: Path) -> list[SourceRow]:
    reader = csv.DictReader(io.StringIO(text))
    cols = {c.strip().lower(): c for c in reader.fieldnames or []}
    if "label" not in cols:
        raise ManifestError(f"{path}: CSV header needs path,label (got {reader.fieldnames})")
    rows = []
    for i, r in enumerate(reader, start=2):
        p, lab = (r.get(cols["path"]) or "").strip(), (r.get(cols["label"]) or "").strip()
        if not p or not lab:
            raise ManifestError(f"{path}, row {i}: empty path or label in {dict(r)}; fill both or delete the row")
        start = seconds(path, i, "start", r.get(cols["start"]) if "start" in cols else None)
        end = seconds(path, i, "end", r.get(cols["end"]) if "end" in cols else None)
        if start is not None and end is not None and end <= start:
            raise ManifestError(f"{path}, row {i}: end {end} is not after start {start}; "
                                "give the span in seconds with end > start, or leave both empty")
        rows.append(SourceRow(_resolve(root, p), lab, start, end, line=i))
    return rows


def seconds(path: Path, row: int, name: str, text: str | None) -> float | None:
    """A time in seconds ("12.5" or "00:01:02.5"), >= 0; None when empty; else a clear error."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = hms(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise ManifestError(f"{path}, row {row}: {name} {text!r} is not a time; write seconds >= 0 "
                            "(12.5) or hh:mm:ss.ff (00:00:12.50)")
    return value


def check_inside(manifest: Path, root: Path, rows: list[SourceRow], allow: bool) -> None:
    """Refuse paths that leave `root` (lexically: ``..``, absolute paths elsewhere; a symlink placed
    inside the root is the user's choice and is followed) unless the user allowed it."""
    if allow:
        return
    base = os.path.abspath(root)
    bad = [r for r in rows if os.path.commonpath([base, os.path.abspath(r.path)]) != base]
    if bad:
        where = ", ".join(f"row {r.line}: {r.path}" for r in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise ManifestError(f"{manifest}: {len(bad)} path(s) point outside {base} ({where}); move the videos "
                            "under that folder, or pass --allow-outside-root to read them where they are")


def _resolve(root: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else root / q


def hms(text: str) -> float:
    """Seconds from "ss.ff", "mm:ss.ff" or "hh:mm:ss.ff"."""
    s = 0.0
    for x in text.split(":"):
        s = s * 60 + float(x)
    return s
