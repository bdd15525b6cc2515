"""Synthetic benchmark determinism, `avsf data prepare`, annotation readers, the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np

from avsf.config import build_config
from avsf.data import build_loader, dataset_info, synth
from avsf.data.formats import KINETICS_SOUNDS, read_charades_csv, read_epic_csv, read_kinetics_csv
from avsf.data.manifest import read_manifest, read_source_manifest
from avsf.data.prepare import prepare


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_deterministic_per_seed(tmp_path):
    few = {"train": 1, "val": 0, "test": 0}
    synth.generate(tmp_path / "a", "tiny", 3, workers=1, per_class=few)
    synth.generate(tmp_path / "b", "tiny", 3, workers=2, per_class=few)
    synth.generate(tmp_path / "c", "tiny", 4, workers=1, per_class=few)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b and len(a) == len(synth.CLASSES) * 2 + 4 + 1  # a video and a FLAC per clip, 4 CSVs, classes.json
    assert a != c


def test_synth_files_are_real_av(tmp_path):
    synth.generate(tmp_path, "tiny", 0, workers=1, per_class={"train": 1, "val": 0, "test": 0})
    row = read_manifest(tmp_path / "train.csv")[0]
    with av.open(str(row.path)) as c:
        assert c.streams.video[0].codec_context.name == "vp9" and c.streams.audio
        assert sum(1 for _ in c.decode(video=0)) == 32
    import soundfile as sf

    x, sr = sf.read(str(row.audio))
    assert sr == 16000 and x.ndim == 1 and len(x) == 32000


def _mp4(path: Path, frames=20, fps=25, audio=True, size=(36, 50), rate=44100, channels=2):
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height = size[1], size[0]
        vs.pix_fmt = "yuv420p"
        if audio:
            a = out.add_stream("aac", rate=rate)
            a.layout = "stereo" if channels == 2 else "mono"
        for i in range(frames):
            img = np.full((size[0], size[1], 3), (i * 10) % 255, np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if audio:
            n = int(frames / fps * rate)
            t = np.arange(n) / rate
            pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            pcm = np.stack([pcm] * channels) if channels == 2 else pcm[None]
            fr = av.AudioFrame.from_ndarray(pcm.reshape(1, -1) if channels == 1 else pcm.T.reshape(1, -1).copy(),
                                            format="flt", layout="stereo" if channels == 2 else "mono")
            fr.sample_rate = rate
            for p in a.encode(fr):
                out.mux(p)
            for p in a.encode():
                out.mux(p)


def test_prepare_mixed_inputs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _mp4(src / "a.mp4")
    _mp4(src / "silent.mp4", audio=False)
    frames = np.zeros((16, 40, 48, 3), np.uint8)
    synth.encode_clip(src / "v.webm", frames, np.zeros(16000, np.float32))
    (src / "empty.mp4").write_bytes(b"")
    (src / "notes.txt").write_text("not a video at all")
    (src / "trunc.mp4").write_bytes((src / "a.mp4").read_bytes()[:200])
    lst = tmp_path / "list.txt"
    lst.write_text("src/a.mp4 dog\nsrc/silent.mp4 cat\nsrc/v.webm dog\nsrc/empty.mp4 cat\n"
                   "src/notes.txt cat\nsrc/trunc.mp4 dog\nsrc/missing.mp4 cat\n")
    out = tmp_path / "out"
    rep = prepare(read_source_manifest(lst), out, workers=2, progress=False)
    disk = json.loads((out / "report.json").read_text())
    assert rep["ok"] == disk["ok"] == 3
    reasons = {Path(f["path"]).name: f["reason"] for f in disk["failed"]}
    assert set(reasons) == {"empty.mp4", "notes.txt", "trunc.mp4", "missing.mp4"}
    assert reasons["missing.mp4"] == "missing file" and reasons["empty.mp4"] == "empty file"
    assert [Path(p).name for p in disk["no_audio"]] == ["silent.mp4"]
    rows = read_manifest(out / "manifest.csv")
    assert [r.label for r in rows] == [1, 0, 1]  # sorted names: cat=0, dog=1
    assert abs(rows[0].fps - 25) < 1e-6 and abs(rows[0].duration - 0.8) < 1e-6
    assert not rows[1].has_audio
    import soundfile as sf

    x, sr = sf.read(str(rows[0].audio))
    assert sr == 16000 and x.ndim == 1 and abs(len(x) - 0.8 * 16000) <= 1 and np.abs(x).max() > 0.1
    with av.open(str(rows[0].path)) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
    # loader-ready: both loaders read the prepared folder
    cfg = build_config(scale="tiny", overrides={"data.dataset": str(out), "train.batch_size": 3,
                                                 "eval.temporal_views": 1})
    (batch,) = list(build_loader(cfg, "test", "test"))
    assert batch["fast"].shape[0] == 3 and dataset_info(cfg).class_names == ["cat", "dog"]
    # re-running skips what is done
    rep2 = prepare(read_source_manifest(lst), out, workers=1, progress=False)
    assert rep2["skipped_already_prepared"] == 3 and rep2["ok"] == 3


def test_annotation_readers(tmp_path):
    k = tmp_path / "kinetics.csv"
    k.write_text("label,youtube_id,time_start,time_end,split\n"
                 "playing bagpipes,abc,10,20,train\nyoga,def,0,10,train\n\"tap dancing\",ghi,3,13,val\n")
    rows = read_kinetics_csv(k, tmp_path, kinetics_sounds=True).rows
    assert [r.label for r in rows] == ["playing bagpipes", "tap dancing"]
    assert rows[0].path.name == "abc_000010_000020.mp4" and len(KINETICS_SOUNDS) == 32
    e = tmp_path / "epic.csv"
    e.write_text("narration_id,participant_id,video_id,start_timestamp,stop_timestamp,verb_class,noun_class\n"
                 "P01_01_0,P01,P01_01,00:00:01.50,00:00:03.00,2,10\n")
    (r,) = read_epic_csv(e, tmp_path).rows
    assert (r.start, r.end, r.extra["verb"], r.extra["noun"]) == (1.5, 3.0, 2, 10)
    c = tmp_path / "charades.csv"
    c.write_text("id,subject,actions,length\nXYZ,s,c092 11.90 21.20;c147 0.00 12.60,30\n")
    (r,) = read_charades_csv(c, tmp_path, whole_videos=True).rows
    assert r.label == ["c092", "c147"] and r.extra["video"] == "XYZ"


def test_cli_synth_and_preview(tmp_path):
    from avsf.cli import main

    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--scale", "tiny", "--seed", "1"]) == 0
    assert (tmp_path / "s" / "classes.json").exists()
    assert main(["data", "preview", "--manifest", str(tmp_path / "s" / "val.csv"), "--loader", "reference",
                 "--scale", "tiny", "--out", str(tmp_path / "png"), "-n", "2"]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 2


def test_worker_processes_are_never_forked_from_a_threaded_parent():
    # A forked child inherits locks other threads held at fork time; CI once hung 80 minutes so.
    from avsf.data.pools import worker_context

    assert worker_context().get_start_method() in ("forkserver", "spawn")
