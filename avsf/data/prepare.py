"""`avsf data prepare`: users' videos -> loader-ready files.

For every source row: a video DALI's CPU decoder reads (VP8/VP9 in WebM/MKV are copied,
anything else PyAV reads is transcoded to VP9 WebM at its own frame rate and size), a 16 kHz
mono FLAC sidecar (silence, flagged, when the video has no audio track), and a row in
DIR/manifest.csv. DIR/report.json counts the usable rows (`ok`) and names every row that
could not be used with the reason. Bad files never stop the run; re-running skips what is done.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np

from avsf.data.manifest import SourceRow, write_manifest

SAMPLE_RATE = 16000
DALI_CPU_CODECS = {"vp8", "vp9"}
COPY_CONTAINERS = {"webm", "matroska", "matroska,webm"}


def _out_name(src: SourceRow) -> str:
    key = f"{Path(src.path).resolve()}|{src.start}|{src.end}"
    return f"{Path(src.path).stem[:60]}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def _fail(reason: str) -> dict:
    return {"ok": False, "reason": reason}


def prepare_one(src: SourceRow, out_dir: Path) -> dict:
    """Prepare one file; returns {"ok": True, "row": {...}, "has_audio": bool} or {"ok": False, "reason"}."""
    import av
    import soundfile as sf

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
            copy = codec in DALI_CPU_CODECS and fmt in COPY_CONTAINERS and src.start is None and src.end is None
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
    vdst.parent.mkdir(parents=True, exist_ok=True)
    adst.parent.mkdir(parents=True, exist_ok=True)
    meta.parent.mkdir(parents=True, exist_ok=True)
    tmp = vdst.with_name(vdst.name + ".tmp.webm")
    if copy:
        shutil.copyfile(p, tmp)
        h, w = _size(p)
    else:
        from avsf.data.synth import encode_clip

        arr = np.stack(frames)
        h, w = arr.shape[1] // 2 * 2, arr.shape[2] // 2 * 2  # yuv420p wants even sizes
        encode_clip(tmp, arr[:, :h, :w], np.zeros(0, np.float32), int(round(fps)) if abs(fps - round(fps)) < 1e-3 else fps,
                    with_audio=False)
    tmp.replace(vdst)
    n_samples = int(round(duration * SAMPLE_RATE))
    if audio:
        start_s = audio[0][0] if audio[0][0] is not None else 0.0
        sig = np.concatenate([a for _, a in audio]).astype(np.float32)
        off = int(round((t0 - max(start_s, 0.0)) * SAMPLE_RATE)) if src.start is not None else 0
        sig = sig[max(off, 0):][:n_samples]
        sig = np.pad(sig, (0, max(0, n_samples - len(sig))))
    else:
        sig = np.zeros(n_samples, np.float32)
    atmp = adst.with_name(adst.name + ".tmp")
    sf.write(str(atmp), np.clip(sig, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    atmp.replace(adst)
    result = {"ok": True, "has_audio": bool(audio), "row": {
        "path": f"videos/{vdst.name}", "audio": f"audio/{adst.name}", "duration": f"{duration:.4f}",
        "fps": f"{fps:.4f}", "has_audio": int(bool(audio)), "height": h, "width": w}}
    meta.write_text(json.dumps(result))
    return result


def _size(p: Path) -> tuple[int, int]:
    import av

    with av.open(str(p)) as c:
        cc = c.streams.video[0].codec_context
        return cc.height, cc.width


def _job(args):
    i, src, out_dir = args
    try:
        return i, prepare_one(src, out_dir)
    except Exception as e:  # never fatal: reported
        return i, _fail(f"{type(e).__name__}: {e}")


def label_table(rows: list[SourceRow]) -> list[str]:
    names: set[str] = set()
    for r in rows:
        names.update(r.label if isinstance(r.label, list) else [r.label])
    if all(n.lstrip("-").isdigit() for n in names):
        return [str(i) for i in range(max(int(n) for n in names) + 1)]
    return sorted(names)


def prepare_files(rows: list[SourceRow], out: Path, *, workers: int = 2, progress: bool = True) -> dict[int, dict]:
    """`prepare_one` for every row (in `workers` processes): {row position: its result}."""
    jobs = [(i, r, out) for i, r in enumerate(rows)]
    results: dict[int, dict] = {}
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            it = pool.imap_unordered(_job, jobs)
            for i, res in _progress(it, len(jobs), progress):
                results[i] = res
    else:
        for i, res in _progress(map(_job, jobs), len(jobs), progress):
            results[i] = res
    return results


def prepare(rows: list[SourceRow], out: str | Path, *, workers: int = 2, progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    epic = all("verb" in r.extra for r in rows) and bool(rows)
    names = [] if epic else label_table(rows)
    index = {n: i for i, n in enumerate(names)}
    results = prepare_files(rows, out, workers=workers, progress=progress)
    manifest, failed, no_audio, skipped = [], [], [], 0
    for i, src in enumerate(rows):
        res = results[i]
        if not res["ok"]:
            failed.append({"row": i + 1, "path": str(src.path), "reason": res["reason"]})
            continue
        skipped += bool(res.get("skipped"))
        row = dict(res["row"])
        if epic:
            row["label"], row["verb"], row["noun"] = src.extra["verb"], src.extra["verb"], src.extra["noun"]
        elif isinstance(src.label, list):
            row["label"] = ";".join(str(index[x]) for x in src.label)
        else:
            row["label"] = index[src.label]
        if src.extra.get("split"):
            row["split"] = src.extra["split"]
        if not res["has_audio"]:
            no_audio.append(str(src.path))
        row["source"] = str(src.path)
        manifest.append(row)
    write_manifest(out / "manifest.csv", manifest)
    (out / "classes.json").write_text(json.dumps({"classes": names, "groups": {}}, indent=2))
    report = {"ok": len(manifest), "failed": failed, "no_audio": no_audio, "skipped_already_prepared": skipped,
              "total": len(rows)}
    write_report(out, report)
    return report


def write_report(out: Path, report: dict) -> None:
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out / "report.json")


def _progress(it, total, on):
    if not on:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="prepare", unit="file")
