"""`avsf data prepare`: users' videos -> loader-ready files.

For every source row: a video DALI's CPU decoder reads (VP8/VP9 in WebM/MKV are copied,
anything else PyAV reads is transcoded to VP9 WebM at its own frame rate and size), a 16 kHz
mono FLAC sidecar (silence, flagged, when the video has no audio track), and a row in
DIR/manifest.csv. DIR/report.json counts the usable rows (`ok`) and names every row that
could not be used with the reason. Bad files never stop the run; re-running skips what is done.

Before any work: duplicate rows and the same file under conflicting labels are dropped by the rule
in `dedupe` and reported. While working: a worker process that dies (out of memory, a decoder
crash) is noticed, the file it held is reported failed and a new worker takes its place; a full
disk stops prepare with a `PrepareError` saying what to do (finished rows are kept and skipped on
the next run).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from avsf.data.errors import ManifestError, PrepareError
from avsf.data.formats import Source
from avsf.data.manifest import SourceRow, write_manifest
from avsf.data.pools import worker_context
from avsf.data.reference import probe_size

SAMPLE_RATE = 16000
COPY_CODECS = {"vp8", "vp9"}  # DALI's CPU decoder reads them (and MJPEG, which WebM cannot hold)
COPY_CONTAINERS = {"webm", "matroska", "matroska,webm"}


def _out_name(src: SourceRow) -> str:
    key = f"{Path(src.path).resolve()}|{src.start}|{src.end}"
    return f"{Path(src.path).stem[:60]}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def _fail(reason: str) -> dict:
    return {"ok": False, "reason": reason}


def prepare_one(src: SourceRow, out_dir: Path) -> dict:
    """Prepare one file; returns {"ok": True, "row": {...}, "has_audio": bool} or {"ok": False, "reason"}."""
    import av

    name = _out_name(src)
    vdst, adst, meta = out_dir / "videos" / f"{name}.webm", out_dir / "audio" / f"{name}.flac", out_dir / "done" / f"{name}.json"
    if meta.exists() and vdst.exists() and adst.exists():
        return {**json.loads(meta.read_text()), "skipped": True}
    p = Path(src.path)
    if not p.exists():
        return _fail("missing file")
    if p.stat().st_size == 0:
        return _fail("empty file")
    try:
        container = av.open(str(p))
    except Exception as e:
        return _fail(f"not a media file PyAV can read ({type(e).__name__}: {e})")
    try:
        with container:
            if not container.streams.video:
                return _fail("no video stream (not a video)")
            vs = container.streams.video[0]
            fps = float(vs.average_rate or vs.guessed_rate or 30)
            has_audio = bool(container.streams.audio)
            codec = vs.codec_context.name
            fmt = container.format.name
            t0, t1 = src.start or 0.0, src.end
            copy = codec in COPY_CODECS and fmt in COPY_CONTAINERS and src.start is None and src.end is None
            frames, audio = [], []
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) if has_audio else None
            streams = [vs] + ([container.streams.audio[0]] if has_audio else [])
            try:
                for packet in container.demux(*streams):
                    for frame in packet.decode():
                        t = float(frame.time) if frame.time is not None else None
                        if packet.stream.type == "video":
                            if t is not None and (t < t0 - 1e-6 or (t1 is not None and t >= t1)):
                                continue
                            frames.append(frame.to_ndarray(format="rgb24") if not copy else None)
                        elif resampler is not None:
                            for r in resampler.resample(frame):
                                audio.append((t, r.to_ndarray().reshape(-1)))
            except (av.error.InvalidDataError, av.error.EOFError, ValueError) as e:
                return _fail(f"truncated or corrupt: decoding stopped after {len(frames)} frames ({e})")
            if not frames:
                return _fail("truncated or corrupt: no decodable video frames")
    except Exception as e:
        return _fail(f"could not decode ({type(e).__name__}: {e})")
    n = len(frames)
    duration = n / fps
    for d in (vdst, adst, meta):
        d.parent.mkdir(parents=True, exist_ok=True)
    h, w, codec = _write_video(p, vdst, frames, fps, codec if copy else None)
    _write_audio(adst, audio, int(round(duration * SAMPLE_RATE)), t0 if src.start is not None else None)
    result = {"ok": True, "has_audio": bool(audio), "row": {
        "path": f"videos/{vdst.name}", "audio": f"audio/{adst.name}", "duration": f"{duration:.4f}",
        "fps": f"{fps:.4f}", "has_audio": int(bool(audio)), "height": h, "width": w, "codec": codec}}
    meta.write_text(json.dumps(result))
    return result


def _write_video(src: Path, dst: Path, frames: list, fps: float, copy_codec: str | None) -> tuple[int, int, str]:
    """The video file: the source copied as is (`copy_codec` names its codec), or the decoded
    frames re-encoded as VP9. Returns (height, width, codec)."""
    tmp = dst.with_name(dst.name + ".tmp.webm")
    if copy_codec is not None:
        shutil.copyfile(src, tmp)
        h, w = probe_size(src)
        codec = copy_codec
    else:
        from avsf.data.synth import encode_clip

        arr = np.stack(frames)
        h, w = arr.shape[1] // 2 * 2, arr.shape[2] // 2 * 2  # yuv420p wants even sizes
        encode_clip(tmp, arr[:, :h, :w], np.zeros(0, np.float32), int(round(fps)) if abs(fps - round(fps)) < 1e-3 else fps,
                    with_audio=False)
        codec = "vp9"
    tmp.replace(dst)
    return h, w, codec


def _write_audio(dst: Path, audio: list, n_samples: int, t0: float | None) -> None:
    """The 16 kHz mono FLAC sidecar of `n_samples` (silence without an audio stream): the decoded
    (time, samples) chunks from `t0` (a clip's start) or from the start of the stream."""
    import soundfile as sf

    if audio:
        start_s = audio[0][0] if audio[0][0] is not None else 0.0
        sig = np.concatenate([a for _, a in audio]).astype(np.float32)
        off = int(round((t0 - max(start_s, 0.0)) * SAMPLE_RATE)) if t0 is not None else 0
        sig = sig[max(off, 0):][:n_samples]
        sig = np.pad(sig, (0, max(0, n_samples - len(sig))))
    else:
        sig = np.zeros(n_samples, np.float32)
    tmp = dst.with_name(dst.name + ".tmp")
    sf.write(str(tmp), np.clip(sig, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    tmp.replace(dst)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _job(src: SourceRow, out_dir: Path) -> dict:
    try:
        return prepare_one(src, out_dir)
    except Exception as e:  # never fatal: reported (a full disk is reported as such, and stops prepare)
        name = _out_name(src)
        for leftover in (out_dir / "videos" / f"{name}.webm.tmp.webm", out_dir / "audio" / f"{name}.flac.tmp"):
            leftover.unlink(missing_ok=True)
        res = _fail(f"{type(e).__name__}: {e}")
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            res["disk_full"] = True
        return res


def _serve(conn, out_dir: Path) -> None:
    """A worker process: prepare the rows it is sent, one at a time, until it is sent None."""
    while True:
        job = conn.recv()
        if job is None:
            return
        i, src = job
        conn.send((i, _job(src, out_dir)))


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        hint = {"SIGKILL": "e.g. by the out-of-memory killer", "SIGSEGV": "a crash in a decoder",
                "SIGABRT": "a crash in a decoder"}.get(name, "")
        return f"killed by {name}" + (f", {hint}" if hint else "")
    return f"exited with status {code}"


class WorkerPool:
    """Worker processes (started as avsf.data.pools says), each given one row at a time over its
    own pipe. Unlike multiprocessing.Pool, a worker that dies is noticed (its process sentinel
    fires): the row it held is reported failed and a fresh worker takes its place, so prepare
    always finishes."""

    def __init__(self, workers: int, out_dir: Path):
        self.ctx, self.out_dir, self.size = worker_context(), out_dir, workers
        self.idle: list = []
        self.busy: dict = {}  # conn -> (process, job index)

    def _start(self):
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_serve, args=(child, self.out_dir), daemon=True)
        proc.start()
        child.close()
        return parent, proc

    def run(self, jobs: list[tuple[int, SourceRow]]):
        """Yields (index, result) as rows finish, in any order."""
        pending = deque(jobs)
        self.idle = [self._start() for _ in range(min(self.size, len(jobs)))]
        try:
            while pending or self.busy:
                while pending and self.idle:
                    conn, proc = self.idle.pop()
                    i, src = pending.popleft()
                    conn.send((i, src))
                    self.busy[conn] = (proc, i)
                sentinels = {proc.sentinel: conn for conn, (proc, _) in self.busy.items()}
                for ready in wait(list(self.busy) + list(sentinels)):
                    conn = sentinels.get(ready, ready)
                    if conn in self.busy:
                        yield self._finish(conn)
        finally:
            self.close()

    def _finish(self, conn):
        proc, i = self.busy.pop(conn)
        try:
            if conn.poll():
                got = conn.recv()
                self.idle.append((conn, proc))
                return got
        except (EOFError, OSError):
            pass
        proc.join(timeout=5)
        conn.close()
        self.idle.append(self._start())
        return i, _fail(f"the worker process preparing it died ({_death(proc.exitcode)}); skipped, "
                        "re-run prepare to try it again (with --workers 1 if memory is short)")

    def close(self) -> None:
        for conn, proc in self.idle + [(c, p) for c, (p, _) in self.busy.items()]:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self.idle, self.busy = [], {}


def label_table(rows: list[SourceRow]) -> list[str]:
    """Class names, index = position. Labels are strings: when every label is a plain non-negative
    integer ("0", "7", "12"; no sign, no leading zero) the class index is that integer (names "0".."max",
    as Kinetics-style integer lists mean it); otherwise every distinct string is a class, in sorted
    order ("01", "1" and "-1" are three classes)."""
    names: set[str] = set()
    for r in rows:
        names.update(r.label if isinstance(r.label, list) else [r.label])
    if names and all(n.isdigit() and str(int(n)) == n for n in names):
        return [str(i) for i in range(max(int(n) for n in names) + 1)]
    return sorted(names)


def _label_key(label) -> tuple:
    return tuple(sorted(label)) if isinstance(label, list) else (label,)


def dedupe(rows: list[SourceRow]) -> tuple[list[int], list[dict]]:
    """The rule for rows naming the same file and span (same absolute path, start and end):
    with equal labels the first row is kept and the others are dropped as duplicates; with
    different labels every one of them is dropped (which label is right is unknown). Returns
    (indices of the rows kept, a report entry per row dropped)."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((os.path.abspath(r.path), r.start, r.end), []).append(i)
    drop: dict[int, str] = {}
    for members in groups.values():
        if len(members) == 1:
            continue
        labels = {_label_key(rows[i].label) for i in members}
        first = rows[members[0]]
        if len(labels) == 1:
            for i in members[1:]:
                drop[i] = f"duplicate of row {_line(first, members[0])} (same file, span and label); the first is kept"
        else:
            listed = ", ".join(f"row {_line(rows[i], i)}: {rows[i].label}" for i in members)
            for i in members:
                drop[i] = (f"the same file and span is listed under different labels ({listed}); none is kept, "
                           "fix the manifest")
    dropped = [{"row": _line(rows[i], i), "path": str(rows[i].path), "reason": why} for i, why in sorted(drop.items())]
    return [i for i in range(len(rows)) if i not in drop], dropped


def _line(src: SourceRow, i: int) -> int:
    return src.line or i + 1


def _run_jobs(jobs: list[tuple[int, SourceRow]], out: Path, workers: int, progress: bool) -> dict[int, dict]:
    results: dict[int, dict] = {}
    it = WorkerPool(workers, out).run(jobs) if workers > 1 and len(jobs) > 1 else ((i, _job(s, out)) for i, s in jobs)
    try:
        for i, res in _progress(it, len(jobs), progress):
            if res.get("disk_full"):
                raise PrepareError(
                    f"{out}: no space left on the device while preparing {_jobs_path(jobs, i)}; free space or choose "
                    f"another --out, then run the same command again ({sum(r['ok'] for r in results.values())} rows "
                    "finished so far are kept and skipped)")
            results[i] = res
    finally:
        if hasattr(it, "close"):
            it.close()  # stops the worker processes when prepare stops early
    return results


def prepare_files(rows: list[SourceRow], out: Path, *, workers: int = 2, progress: bool = True) -> dict[int, dict]:
    """`prepare_one` for every row, in `workers` worker processes (a dead worker's file is reported
    failed; a full disk raises PrepareError): {row position: its result}."""
    return _run_jobs(list(enumerate(rows)), Path(out), workers, progress)


def write_report(out: Path, report: dict) -> None:
    _write_json(Path(out) / "report.json", report)


def _jobs_path(jobs: list[tuple[int, SourceRow]], i: int) -> str:
    src = dict(jobs)[i]
    return f"row {_line(src, i)} ({src.path})"


def _manifest_row(res: dict, src: SourceRow, index: dict[str, int], epic: bool, folds: list[int]) -> dict:
    row = dict(res["row"])
    if epic:
        row["label"], row["verb"], row["noun"] = src.extra["verb"], src.extra["verb"], src.extra["noun"]
    elif isinstance(src.label, list):  # a list of one is written "3;" so it reads back as multi-label
        row["label"] = ";".join(str(index[x]) for x in src.label) + (";" if len(src.label) < 2 else "")
    else:
        row["label"] = index[src.label]
    if src.extra.get("split"):
        row["split"] = src.extra["split"]
    for k in folds:
        row[f"split{k}"] = src.extra.get("folds", {}).get(k, "")
    if src.extra.get("video"):
        row["video"] = src.extra["video"]
    row["source"] = str(src.path)
    return row


def prepare(rows: list[SourceRow] | Source, out: str | Path, *, workers: int = 2, progress: bool = True) -> dict:
    """Prepare `rows` (or a format reader's Source) into `out`; returns the report (also report.json)."""
    source = rows if isinstance(rows, Source) else Source(list(rows))
    rows = source.rows
    out = Path(out)
    keep, dropped = dedupe(rows)
    epic = bool(rows) and all("verb" in r.extra for r in rows)
    names = [] if epic else (source.classes or label_table([rows[i] for i in keep]))
    index = {n: i for i, n in enumerate(names)}
    for i in keep if not epic else ():
        for lab in rows[i].label if isinstance(rows[i].label, list) else [rows[i].label]:
            if lab not in index:
                raise ManifestError(f"row {_line(rows[i], i)} ({rows[i].path}): label {lab!r} is not one of the "
                                    f"dataset's {len(names)} classes")
    folds = list(source.info.get("folds", []))
    try:
        out.mkdir(parents=True, exist_ok=True)
        results = _run_jobs([(i, rows[i]) for i in keep], out, workers, progress)
        manifest, failed, no_audio, skipped = [], [], [], 0
        for i in keep:
            res, src = results[i], rows[i]
            if not res["ok"]:
                failed.append({"row": _line(src, i), "path": str(src.path), "reason": res["reason"]})
                continue
            skipped += bool(res.get("skipped"))
            if not res["has_audio"]:
                no_audio.append(str(src.path))
            manifest.append(_manifest_row(res, src, index, epic, folds))
        report = {"ok": len(manifest), "failed": failed, "dropped": dropped, "no_audio": no_audio,
                  "skipped_already_prepared": skipped, "total": len(rows)}
        write_manifest(out / "manifest.csv", manifest)
        _write_json(out / "classes.json", {"classes": names, "groups": {}, **source.info})
        write_report(out, report)
    except OSError as e:
        if e.errno in DISK_FULL:
            raise PrepareError(f"{out}: no space left on the device ({e}); free space or choose another --out, then "
                               "run the same command again (finished rows are kept and skipped)") from None
        raise PrepareError(f"{out}: cannot write ({e}); choose a writable --out") from None
    return report


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _progress(it, total, on):
    if not on:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="prepare", unit="file")
