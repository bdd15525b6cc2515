"""Loaders: DALI and reference agree, alignment, test views, sharding, padding, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avsf.config import build_config
from avsf.data import build_loader, dataset_info, synth
from avsf.data.manifest import ManifestError, read_manifest, read_source_manifest, write_manifest
from avsf.data.sampling import ClipGeometry, crop_position, shard_indices, train_spec
from avsf.data.dali_loader import dali_available


def n_clips(split: str) -> int:
    """Clips of a split of the tiny synthetic benchmark (tests generate it once per session)."""
    return synth.SYNTH_SCALES["tiny"].per_class[split] * len(synth.CLASSES)

needs_dali = pytest.mark.skipif(not dali_available(), reason="nvidia-dali not importable")
LOADERS = ["reference", pytest.param("dali", marks=needs_dali)]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """The tiny synthetic benchmark, generated once per test session through dataset_info."""
    cache = tmp_path_factory.mktemp("avsf-cache")
    dataset_info(cfg_for(cache))
    return cache


def cfg_for(cache, **over):
    return build_config(scale="tiny", overrides={"data.cache_dir": str(cache), **over})


def write_clip(root: Path, name: str, frames: np.ndarray, audio: np.ndarray | None, fps: int = 16) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    synth.encode_clip(root / f"{name}.webm", frames, audio if audio is not None else np.zeros(1, np.float32), fps,
                      with_audio=audio is not None)
    synth.write_flac(root / f"{name}.flac", audio if audio is not None else np.zeros(16000, np.float32))
    return {"path": f"{name}.webm", "audio": f"{name}.flac", "label": 0, "duration": f"{len(frames) / fps:.4f}",
            "fps": fps, "height": frames.shape[1], "width": frames.shape[2]}


def click_clip(n_frames=32, flash=20, h=40, w=48, fps=16):
    """Dark video with one white frame at `flash`; silence with a click at the same instant."""
    frames = np.full((n_frames, h, w, 3), 30, np.uint8)
    frames[flash] = 230
    audio = np.zeros(int(n_frames / fps * 16000), np.float32)
    s0 = int(flash / fps * 16000)
    audio[s0: s0 + 80] = 0.8 * np.sin(np.arange(80) * 0.9)
    return frames, audio


def batches(cfg, split="train", mode="train", **kw):
    return list(build_loader(cfg, split, mode, **kw))


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("loader", LOADERS)
def test_train_batch_contract(tiny_cache, loader):
    cfg = cfg_for(tiny_cache, **{"data.loader": loader})
    L = build_loader(cfg, "train", "train", with_shifted_audio=True)
    out = list(L)
    assert len(out) == len(L) == n_clips("train") // 4
    b = out[0]
    g = ClipGeometry.from_config(cfg)
    assert b["slow"].shape == (4, 3, 2, 32, 32) and b["fast"].shape == (4, 3, 4, 32, 32)
    assert torch.equal(b["slow"], b["fast"][:, :, ::2])
    assert b["audio"].shape == b["audio_shifted"].shape == (4, 1, g.audio_frames, 16)
    assert b["label"].dtype == torch.int64 and b["index"].dtype == torch.int64
    assert not torch.allclose(b["audio"], b["audio_shifted"])
    assert L.failed == 0


def test_dataset_info_groups(tiny_cache):
    info = dataset_info(cfg_for(tiny_cache))
    assert info.num_classes == len(synth.CLASSES) and info.class_names == synth.class_names()
    assert info.groups == synth.class_groups() and info.groups["sync"] == [7, 8]
    assert info.split_sizes == {s: n_clips(s) for s in ("train", "val", "test")}
    assert not info.multi_label and not info.verb_noun


# ----------------------------------------------------------------------------- agreement
@needs_dali
def test_dali_and_reference_same_clip(tiny_cache):
    # Native size (short side 40, crop 40): no resampling, so frames differ only by the
    # YUV->RGB conversion (swscale in PyAV vs DALI's own; they differ in chroma upsampling,
    # up to ~30 levels on a few sharp colour-edge pixels); log-mels only by float rounding.
    over = {"data.short_side_range": [40, 40], "data.crop_size": 40}
    ref = batches(cfg_for(tiny_cache, **{"data.loader": "reference"}, **over), with_shifted_audio=True)
    dal = batches(cfg_for(tiny_cache, **{"data.loader": "dali"}, **over), with_shifted_audio=True)
    px = 0.225 * 255  # one normalised unit in pixel levels
    for r, d in zip(ref, dal):
        assert torch.equal(r["index"], d["index"]) and torch.equal(r["label"], d["label"])
        diff = (r["fast"] - d["fast"]).abs() * px
        assert diff.mean() <= 2.0 and torch.quantile(diff.flatten()[::7], 0.99) <= 8 and diff.max() <= 40, \
            "frames differ more than decode tolerance"
        for k in ("audio", "audio_shifted"):
            assert (r[k] - d[k]).abs().max() < 1e-3, "log-mels differ beyond 1e-3 (normalised units)"
    # with resizing (short side 32..40): bilinear antialias in both, means agree closely
    ref = batches(cfg_for(tiny_cache, **{"data.loader": "reference"}))
    dal = batches(cfg_for(tiny_cache, **{"data.loader": "dali"}))
    for r, d in zip(ref, dal):
        assert ((r["fast"] - d["fast"]).abs() * px).mean() < 3


@pytest.mark.parametrize("loader", LOADERS)
def test_click_alignment(tmp_path, loader):
    frames, audio = click_clip(n_frames=40, flash=20)
    write_manifest(tmp_path / "manifest.csv", [write_clip(tmp_path, "click", frames, audio)])
    cfg = build_config(scale="tiny", overrides={"data.dataset": str(tmp_path), "data.loader": loader,
                                                 "eval.temporal_views": 3, "train.batch_size": 1})
    g = ClipGeometry.from_config(cfg)
    for b in batches(cfg, "test", "test"):
        k = int(b["view"][0])
        start = round(k * (40 - g.span) / 2)  # uniform temporal views over 40 frames
        fidx = [start + i * g.fast_stride for i in range(g.fast_frames)]
        bright = b["fast"][0].mean(dim=(0, 2, 3))
        if 20 in fidx:
            assert int(bright.argmax()) == fidx.index(20)
        energy = b["audio"][0, 0].mean(dim=1)
        if start <= 20 < start + g.span:
            # click at (20 - start) / 16 s; a 512-sample window starting at hop*m covers it from m = (t*sr - 511)/hop
            t = (20 - start) / 16 * 16000
            expected = t / g.hop
            peak = int(energy.argmax())
            assert expected - 2 - 1 <= peak <= expected + 1, (peak, expected)
            assert energy[peak] > energy.median() + 1


# ----------------------------------------------------------------------------- views + shards
@pytest.mark.parametrize("loader", LOADERS)
def test_test_mode_views(tiny_cache, loader):
    cfg = cfg_for(tiny_cache, **{"data.loader": loader, "eval.temporal_views": 2, "eval.spatial_views": 3})
    L = build_loader(cfg, "test", "test")
    seen = []
    for b in L:
        seen += list(zip(b["index"].tolist(), b["view"].tolist()))
    assert sorted(seen) == [(i, v) for i in range(n_clips("test")) for v in range(6)]
    assert len(L) == -(-n_clips("test") * 6 // 4)


def test_crop_positions():
    assert crop_position(32, 48, 32, 0, 3) == (0, 0)
    assert crop_position(32, 48, 32, 1, 3) == (0, 8)
    assert crop_position(32, 48, 32, 2, 3) == (0, 16)
    assert crop_position(48, 32, 32, 2, 3) == (16, 0)
    assert crop_position(32, 48, 32, 0, 1) == (0, 8)


def test_sharding_covers_once():
    for n, shards in [(10, 3), (16, 4), (7, 2)]:
        test = [shard_indices(n, "test", seed=0, epoch=0, shard_id=s, num_shards=shards) for s in range(shards)]
        assert sorted(sum(test, [])) == list(range(n))
        train = [shard_indices(n, "train", seed=0, epoch=1, shard_id=s, num_shards=shards) for s in range(shards)]
        flat = sum(train, [])
        assert len(flat) == len(set(flat)) and len({len(t) for t in train}) == 1
        assert len(flat) == n - n % shards


@pytest.mark.parametrize("loader", LOADERS)
def test_sharded_loaders_cover_test_split(tiny_cache, loader):
    cfg = cfg_for(tiny_cache, **{"data.loader": loader, "eval.temporal_views": 1})
    seen = []
    for s in range(3):
        for b in build_loader(cfg, "val", "test", shard_id=s, num_shards=3):
            seen += b["index"].tolist()
    assert sorted(seen) == list(range(n_clips("val")))


def test_shifted_window_is_far_enough(tiny_cache):
    cfg = cfg_for(tiny_cache)
    g = ClipGeometry.from_config(cfg)
    rows = read_manifest(dataset_info(cfg).root / "train.csv")
    for i, r in enumerate(rows):
        s = train_spec(cfg, g, r, i, (40, 48), epoch=0, with_shifted_audio=True)
        assert abs(s.audio_shifted_start - s.audio_start) >= 0.5 * 16000 and s.audio_shifted_start >= 0


# ----------------------------------------------------------------------------- padding + failures
@pytest.mark.parametrize("loader", LOADERS)
def test_short_clip_is_padded(tmp_path, loader):
    frames, audio = click_clip(n_frames=6, flash=5)  # 6 frames, window needs 16
    write_manifest(tmp_path / "manifest.csv", [write_clip(tmp_path, "short", frames, audio)])
    cfg = build_config(scale="tiny", overrides={"data.dataset": str(tmp_path), "data.loader": loader,
                                                 "train.batch_size": 1})
    (b,) = batches(cfg, "test", "test")[:1]
    bright = b["fast"][0].mean(dim=(0, 2, 3))
    # Fast indices 0, 4, 8, 12 on a 6-frame clip -> 0, 4, 5, 5: the last frame (the flash) repeats
    assert bright.shape[0] == 4 and torch.allclose(bright[2], bright[3], atol=0.05)
    assert bright[2] > bright[1] + 1
    tail = b["audio"][0, 0, -10:]
    assert torch.allclose(tail, torch.full_like(tail, (np.log(1e-8) + 7.03) / 4.66), atol=1e-3)  # silence


@pytest.mark.parametrize("loader", LOADERS)
def test_bad_clips_skipped_then_fatal(tmp_path, loader):
    frames, audio = click_clip()
    rows = [write_clip(tmp_path, f"ok{i}", frames, audio) for i in range(8)]
    (tmp_path / "trunc.webm").write_bytes((tmp_path / "ok0.webm").read_bytes()[:300])
    rows.append({**rows[0], "path": "trunc.webm"})
    rows.append({**rows[0], "path": "missing.webm"})
    write_manifest(tmp_path / "manifest.csv", rows)
    over = {"data.dataset": str(tmp_path), "data.loader": loader, "train.batch_size": 5,
            "eval.temporal_views": 1, "data.max_failure_share": 0.5}
    L = build_loader(build_config(scale="tiny", overrides=over), "test", "test")
    got = sum((b["index"].tolist() for b in L), [])
    assert L.failed == 2 and sorted(got) == list(range(8))
    L = build_loader(build_config(scale="tiny", overrides={**over, "data.max_failure_share": 0.1}), "test", "test")
    with pytest.raises(RuntimeError, match="max_failure_share"):
        list(L)


def test_manifest_errors_name_file_and_row(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("path,audio,label,duration,fps\na.webm,a.flac,0,2,16\nb.webm,b.flac,cat,2,16\n")
    with pytest.raises(ManifestError, match=r"m\.csv, row 3"):
        read_manifest(p)
    q = tmp_path / "list.txt"
    q.write_text("a.mp4 0\nno_label_here\n")
    with pytest.raises(ManifestError, match=r"list\.txt, line 2"):
        read_source_manifest(q)


# ----------------------------------------------------------------------------- GPU twin
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dali_gpu_matches_cpu(tmp_path):
    """NVDEC on 160x128 clips, and a 48x40 clip (below NVDEC's minimum) decoded on the CPU in the same batch."""
    from avsf.data.dali_loader import dali_gpu_available

    if not dali_gpu_available():
        pytest.skip("DALI's GPU operators are not usable here")
    rows = []
    for i in range(6):
        frames, audio = click_clip(n_frames=32, flash=4 + 3 * i, h=40 if i == 2 else 128, w=48 if i == 2 else 160)
        rows.append(write_clip(tmp_path, f"c{i}", frames, audio))
    write_manifest(tmp_path / "manifest.csv", rows)
    over = {"data.dataset": str(tmp_path), "data.loader": "dali", "train.batch_size": 3, "eval.temporal_views": 1,
            "data.test_crop_size": 32}
    cpu_loader = build_loader(build_config(scale="tiny", overrides={**over, "data.device": "cpu"}), "test", "test")
    gpu_loader = build_loader(build_config(scale="tiny", overrides={**over, "data.device": "gpu"}), "test", "test")
    cpu, gpu = list(cpu_loader), list(gpu_loader)
    assert gpu_loader.cpu_fallback_clips == 1 and gpu_loader.failed == 0 and cpu_loader.failed == 0
    assert len(cpu) == len(gpu) == 2
    for c, g in zip(cpu, gpu):
        assert g["fast"].is_cuda and g["audio"].is_cuda and torch.equal(c["index"], g["index"].cpu())
        assert ((c["fast"] - g["fast"].cpu()).abs() * 0.225 * 255).mean() < 3  # NVDEC vs libavcodec colour
        assert (c["audio"] - g["audio"].cpu()).abs().max() < 1e-2


# ----------------------------------------------------------------------------- pipelining + resume
@needs_dali
def test_dali_stream_decodes_ahead_of_the_consumer(tiny_cache):
    from avsf.data.dali_loader import DaliStream, Item

    cfg = cfg_for(tiny_cache)
    rows = read_manifest(dataset_info(cfg).root / "train.csv")
    g = ClipGeometry.from_config(cfg)
    items = [Item(k % 2, train_spec(cfg, g, rows[k], k, (40, 48), epoch=0), rows[k].path, rows[k].audio)
             for k in range(8)]
    stream = DaliStream([items[k:k + 2] for k in range(0, 8, 2)], g, cfg.data, batch_size=2, num_threads=1, gpu=False,
                        with_shifted_audio=False)
    it = iter(stream)
    first = next(it)
    # one batch consumed, and DALI already holds the next one: decoding runs ahead of the consumer
    assert first.part == 0 and stream.source.handed >= 2
    assert [r.part for r in it] == [1, 2, 3] and stream.pipe is None  # closed at the end


@pytest.mark.parametrize("loader", LOADERS)
def test_iter_from_resumes_exactly(tiny_cache, loader):
    cfg = cfg_for(tiny_cache, **{"data.loader": loader})
    full = batches(cfg, epoch=3)
    L = build_loader(cfg, "train", "train", epoch=3)
    tail = list(L.iter_from(4))
    assert len(tail) == len(full) - 4 > 0
    for a, b in zip(full[4:], tail):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["label"], b["label"])
        assert torch.equal(a["fast"], b["fast"]) and torch.equal(a["audio"], b["audio"])
    assert list(L.iter_from(len(L))) == []
    with pytest.raises(ValueError, match="start_batch"):
        L.iter_from(-1)


@pytest.mark.parametrize("loader", LOADERS)
def test_broken_clip_in_first_batch_keeps_the_batches_in_flight(tmp_path, loader):
    frames, audio = click_clip()
    rows = [write_clip(tmp_path, f"ok{i}", frames, audio) for i in range(6)]
    (tmp_path / "trunc.webm").write_bytes((tmp_path / "ok0.webm").read_bytes()[:300])
    rows.insert(1, {**rows[0], "path": "trunc.webm"})
    write_manifest(tmp_path / "manifest.csv", rows)
    cfg = build_config(scale="tiny", overrides={"data.dataset": str(tmp_path), "data.loader": loader,
                                                 "train.batch_size": 2, "eval.temporal_views": 1,
                                                 "data.max_failure_share": 0.5})
    L = build_loader(cfg, "test", "test")
    got = [b["index"].tolist() for b in L]
    assert got == [[0], [2, 3], [4, 5], [6]] and L.failed == 1


def test_bench_reports_clips_and_frames(tiny_cache):
    from avsf.data.bench import bench_loader

    cfg = cfg_for(tiny_cache, **{"data.loader": "reference", "data.num_threads": 1})
    r = bench_loader(cfg, "train", 2, step_ms=5)
    assert r["batches"] == 2 and r["clips"] == 8 and r["loader"] == "reference"
    # 4 Fast frames per clip; both rates are rounded to 0.1, so on a slow or busy machine (1.65
    # clips/s -> 1.7, 6.6 frames/s) only the rounding bounds the gap, not a relative tolerance
    assert r["frames_per_s"] == pytest.approx(r["clips_per_s"] * 4, abs=4 * 0.05 + 0.05)
    assert 0.0 <= r["wait_share"] <= 1.0 and r["seconds"] >= 0.01
    with pytest.raises(ValueError, match="batches"):
        bench_loader(cfg, "train", 0)


# ----------------------------------------------------------------------------- GPU -> CPU fallback
def test_decode_route_rules():
    from avsf.data.dali_loader import decode_route

    assert decode_route(256, 320, "vp9", "gpu").name == "gpu"
    assert decode_route(128, 128, "h264", "gpu").name == "gpu"
    assert decode_route(0, 0, "", "gpu").name == "gpu"  # unknown: try NVDEC, fall back at run time
    small = decode_route(80, 96, "vp9", "gpu")
    assert small.name == "cpu" and "96x80 is below NVDEC's 128x128 minimum" in small.reason
    assert decode_route(127, 640, "", "gpu").name == "cpu"
    # too small for NVDEC and a codec DALI's CPU decoder lacks: PyAV
    r = decode_route(40, 48, "h264", "gpu")
    assert r.name == "pyav" and "below" in r.reason and "h264" in r.reason
    assert decode_route(256, 320, "theora", "gpu").name == "pyav"
    assert decode_route(2160, 5000, "h264", "gpu").name == "pyav"  # above NVDEC's H.264 maximum
    assert decode_route(2160, 5000, "vp9", "gpu").name == "gpu"
    assert decode_route(40, 48, "vp9", "cpu") == decode_route(0, 0, "", "cpu")
    assert decode_route(40, 48, "vp9", "cpu").name == "cpu" and decode_route(40, 48, "h264", "cpu").name == "pyav"
    with pytest.raises(ValueError, match="device"):
        decode_route(1, 1, "", "auto")


def test_gpu_plan_routes_small_videos_to_the_cpu_and_says_so_once(tiny_cache, caplog):
    from avsf.data import _SAID, AVLoader

    cfg = cfg_for(tiny_cache, **{"data.loader": "reference"})
    L = AVLoader(cfg, "train", "train")
    L.device = "gpu"  # the plan is pure: no GPU is touched
    chunks = L._batches(L.specs())
    _SAID.clear()
    with caplog.at_level("WARNING", logger="avsf.data"):
        parts = L._plan_routes(chunks)
        L._plan_routes(chunks)
    assert not any(parts["gpu"]) and not any(parts["pyav"])  # 48x40 synth: all below 128x128
    assert [len(p) for p in parts["cpu"]] == [len(c) for c in chunks]
    said = [r.message for r in caplog.records if "decoded on the CPU instead" in r.message]
    planned = sum(len(c) for c in chunks)  # one epoch's clips: every batch of the train split
    assert len(said) == 1 and f"{planned} clip(s)" in said[0] and "48x40 is below NVDEC's 128x128 minimum" in said[0]


@needs_dali
def test_codec_dali_cannot_decode_falls_back_to_pyav(tmp_path):
    frames, audio = click_clip()
    rows = [write_clip(tmp_path, f"ok{i}", frames, audio) for i in range(3)]
    synth.encode_clip(tmp_path / "h264.mp4", frames, audio, 16, with_audio=False, codec="libx264")
    rows.append({**rows[0], "path": "h264.mp4"})  # no codec column: DALI refuses it at run time
    rows.append({**rows[0], "path": "h264.mp4", "codec": "h264"})  # known codec: planned for PyAV
    write_manifest(tmp_path / "manifest.csv", rows)
    over = {"data.dataset": str(tmp_path), "train.batch_size": 5, "eval.temporal_views": 1, "data.flip": False}
    dali = build_loader(build_config(scale="tiny", overrides={**over, "data.loader": "dali"}), "test", "test")
    (b,) = list(dali)
    assert b["index"].tolist() == [0, 1, 2, 3, 4] and dali.failed == 0
    assert dali.pyav_fallback_clips == 2 and dali.cpu_fallback_clips == 0  # device cpu: nothing left a GPU
    (r,) = batches(build_config(scale="tiny", overrides={**over, "data.loader": "reference"}), "test", "test")
    # the PyAV-decoded clips are exactly the reference loader's
    assert torch.equal(b["fast"][3:], r["fast"][3:]) and torch.allclose(b["audio"][3:], r["audio"][3:])
