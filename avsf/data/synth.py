"""The built-in synthetic audiovisual benchmark (`avsf data synth`).

Every clip has a visual scene and a soundtrack. Which modality carries the label depends on
the class group, and the uninformative modality is drawn from a distribution shared with
other groups, so a unimodal model is at chance where it should be:

- ``visual`` classes: a moving disc whose motion pattern is the label (slide horizontally,
  slide vertically, orbit, pulse). Soundtrack: "music" (pentatonic plucks at random onsets),
  the same distractor the ``sync`` classes carry.
- ``audio`` classes: a sound whose timbre / pitch / rhythm is the label (low hum, high
  whistle, fast ticks, rising chirps). Picture: a static shape that flashes at random
  times, the same distractor scene the ``sync`` classes show.
- ``sync`` classes: flashing shape + music, as above; in ``in-sync`` the plucks start on
  the flashes, in ``out-of-sync`` every pluck is shifted by 0.5-0.6 s (sign random, never
  closer than 0.2 s to any flash). Each modality alone has the same distribution in both.

Hence a visual-only model is at chance among the audio + sync classes (6 classes look
alike), an audio-only model at chance among visual + sync, and only a fused model separates
``in-sync`` from ``out-of-sync``.

Files: VP9 + Opus in WebM (decodable by PyAV and DALI's CPU decoder) and a 16 kHz mono FLAC
sidecar per clip; `train.csv`, `val.csv`, `test.csv`, `manifest.csv` (all rows with a split
column) and `classes.json`. Each clip's content depends only on (seed, class, split, index),
so the output is the same for any number of workers.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FPS = 16
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class SynthScale:
    width: int
    height: int
    duration_s: float
    per_class: dict  # split -> clips per class


SYNTH_SCALES: dict[str, SynthScale] = {
    "tiny": SynthScale(48, 40, 2.0, {"train": 3, "val": 1, "test": 1}),
    "small": SynthScale(96, 80, 4.0, {"train": 60, "val": 10, "test": 10}),
}

CLASSES: list[tuple[str, str]] = [
    ("slide-horizontal", "visual"),
    ("slide-vertical", "visual"),
    ("orbit", "visual"),
    ("pulse", "visual"),
    ("low-hum", "audio"),
    ("high-whistle", "audio"),
    ("fast-ticks", "audio"),
    ("rising-chirps", "audio"),
    ("in-sync", "sync"),
    ("out-of-sync", "sync"),
]
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "audio", "label", "duration", "fps")


def class_names() -> list[str]:
    return [c for c, _ in CLASSES]


def class_groups() -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, (_, g) in enumerate(CLASSES):
        groups.setdefault(g, []).append(i)
    return groups


# ----------------------------------------------------------------------------- events
def _event_times(rng: np.random.Generator, start: float, stop: float) -> np.ndarray:
    """An irregular event train: gaps uniform in [0.8, 1.3] s, random phase."""
    t = start - rng.uniform(0.0, 1.3)
    out = []
    while t < stop:
        t += rng.uniform(0.8, 1.3)
        out.append(t)
    return np.asarray(out)


# ----------------------------------------------------------------------------- pictures
def _background(rng, h, w):
    base = rng.uniform(0.15, 0.35, size=3)
    tilt = rng.uniform(-0.1, 0.1, size=3)
    ys = np.linspace(0, 1, h)[:, None, None]
    xs = np.linspace(0, 1, w)[None, :, None]
    return np.clip(base + tilt * (ys + xs) / 2, 0, 1) * np.ones((h, w, 3))


def _disc_mask(h, w, cy, cx, r):
    ys, xs = np.mgrid[0:h, 0:w]
    d = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)
    return np.clip(r + 0.5 - d, 0, 1)[..., None]


def _square_mask(h, w, cy, cx, r):
    ys, xs = np.mgrid[0:h, 0:w]
    d = np.maximum(np.abs(ys - cy), np.abs(xs - cx))
    return np.clip(r + 0.5 - d, 0, 1)[..., None]


def _render_motion(rng, pattern: int, n: int, h: int, w: int) -> np.ndarray:
    bg = _background(rng, h, w)
    color = rng.uniform(0.6, 1.0, size=3)
    r = min(h, w) * rng.uniform(0.12, 0.16)
    freq = rng.uniform(0.4, 0.6)  # cycles per second
    phase = rng.uniform(0, 2 * math.pi)
    cy0, cx0 = h / 2 + rng.uniform(-0.1, 0.1) * h, w / 2 + rng.uniform(-0.1, 0.1) * w
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        a = 2 * math.pi * freq * i / FPS + phase
        rr = r
        if pattern == 0:  # slide horizontally
            cy, cx = cy0, w / 2 + (w / 2 - r - 2) * math.sin(a)
        elif pattern == 1:  # slide vertically
            cy, cx = h / 2 + (h / 2 - r - 2) * math.sin(a), cx0
        elif pattern == 2:  # orbit
            rad = min(h, w) / 2 - r - 2
            cy, cx = h / 2 + rad * math.sin(a), w / 2 + rad * math.cos(a)
        else:  # pulse in place
            cy, cx = cy0, cx0
            rr = r * (1.0 + 0.6 * math.sin(2 * a))
        m = _disc_mask(h, w, cy, cx, rr)
        frames[i] = np.round((bg * (1 - m) + color * m) * 255).astype(np.uint8)
    return frames


def _render_flashes(rng, events: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    bg = _background(rng, h, w)
    color = rng.uniform(0.3, 0.5, size=3)
    r = min(h, w) * rng.uniform(0.14, 0.2)
    cy, cx = h / 2 + rng.uniform(-0.15, 0.15) * h, w / 2 + rng.uniform(-0.15, 0.15) * w
    shape = _disc_mask if rng.random() < 0.5 else _square_mask
    m = shape(h, w, cy, cx, r)
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        t = i / FPS
        # brightness envelope: a flash at each event, decaying over ~3 frames
        dt = t - events
        dt = dt[(dt >= -1e-9) & (dt < 0.25)]
        level = float(np.exp(-dt / 0.08).max()) if dt.size else 0.0
        c = color + (1.0 - color) * level
        b = bg + 0.25 * level
        frames[i] = np.round(np.clip(b * (1 - m) + c * m, 0, 1) * 255).astype(np.uint8)
    return frames


# ----------------------------------------------------------------------------- sounds
def _noise_floor(rng, n):
    x = rng.standard_normal(n)
    x = np.convolve(x, np.ones(8) / 8, mode="same")
    return 0.004 * x


def _music(rng, onsets: np.ndarray, n: int) -> np.ndarray:
    """Pentatonic plucks (a few harmonics, fast decay) starting at the given onsets."""
    y = np.zeros(n)
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 7, 9, 12, 14, 16]) / 12)
    for t0 in onsets:
        s0 = int(round(t0 * SAMPLE_RATE))
        length = int(0.35 * SAMPLE_RATE)
        lo, hi = max(s0, 0), min(s0 + length, n)
        if hi <= lo:
            continue
        tt = (np.arange(lo, hi) - s0) / SAMPLE_RATE
        f = rng.choice(scale) * rng.uniform(0.98, 1.02)
        env = np.exp(-tt / 0.07) * rng.uniform(0.4, 0.6)
        tone = np.sin(2 * np.pi * f * tt) + 0.5 * np.sin(4 * np.pi * f * tt) + 0.25 * np.sin(6 * np.pi * f * tt)
        y[lo:hi] += env * tone / 1.75
    return y


def _class_sound(rng, kind: int, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    amp = rng.uniform(0.25, 0.4)
    if kind == 0:  # low hum: harmonic-rich 110-150 Hz with slow vibrato
        f0 = rng.uniform(110, 150)
        ph = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / SAMPLE_RATE
        y = sum(np.sin(k * ph) / k for k in range(1, 8))
        return amp * 0.6 * y
    if kind == 1:  # high whistle: pure tone 2-3 kHz with tremolo
        f0 = rng.uniform(2000, 3000)
        return amp * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6.28)) * (0.75 + 0.25 * np.sin(2 * np.pi * 3 * t))
    if kind == 2:  # fast ticks: short noise bursts at 6-8 Hz
        rate = rng.uniform(6, 8)
        phase = rng.uniform(0, 1 / rate)
        env = np.exp(-(((t - phase) % (1 / rate)) / 0.012))
        return amp * 1.5 * env * rng.standard_normal(n)
    # rising chirps: 500 -> 1500 Hz sweeps, 2-3 per second
    rate = rng.uniform(2, 3)
    phase = rng.uniform(0, 1 / rate)
    u = ((t - phase) % (1 / rate)) * rate  # 0..1 within each sweep
    f = 500 + 1000 * u
    ph = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    return amp * np.sin(ph) * np.minimum(1, (1 - u) * 10)


# ----------------------------------------------------------------------------- one clip
def render_clip(seed: int, label: int, split: str, index: int, scale: SynthScale):
    """(frames uint8 (N, H, W, 3), audio float32 (samples,)) for one clip, deterministic."""
    rng = np.random.default_rng([seed, label, SPLITS.index(split), index])
    dur = scale.duration_s
    n_frames = int(round(dur * FPS))
    n_samples = int(round(dur * SAMPLE_RATE))
    h, w = scale.height, scale.width
    group = CLASSES[label][1]
    if group == "visual":
        frames = _render_motion(rng, label, n_frames, h, w)
        audio = _music(rng, _event_times(rng, -0.5, dur + 0.5), n_samples)
    elif group == "audio":
        frames = _render_flashes(rng, _event_times(rng, -0.5, dur + 0.5), n_frames, h, w)
        audio = _class_sound(rng, label - 4, n_samples)
    else:
        events = _event_times(rng, -1.5, dur + 1.5)
        frames = _render_flashes(rng, events, n_frames, h, w)
        if CLASSES[label][0] == "in-sync":
            onsets = events
        else:
            gaps = np.diff(events)  # shift by 0.5..0.6 s, but stay >= 0.2 s from any flash
            shift = rng.uniform(0.5, min(0.6, float(gaps.min()) - 0.2))
            onsets = events + shift * (1 if rng.random() < 0.5 else -1)
        audio = _music(rng, onsets, n_samples)
    audio = audio + _noise_floor(rng, n_samples)
    audio = np.clip(audio, -0.99, 0.99).astype(np.float32)
    return frames, audio


def encode_clip(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int = FPS, *, with_audio: bool = True,
                codec: str = "libvpx-vp9") -> None:
    """Write frames (+ audio as Opus) to a WebM/MKV file, bit-exact across runs."""
    import av

    fmt = "webm" if path.suffix == ".webm" else ("matroska" if path.suffix == ".mkv" else None)
    with av.open(str(path), "w", format=fmt, container_options={"fflags": "+bitexact"}) as out:
        from fractions import Fraction

        rate = int(fps) if float(fps).is_integer() else Fraction(fps).limit_denominator(1001)
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = "yuv420p"
        vs.thread_count = 1
        if "vpx" in codec:
            vs.options = {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b:v": "0", "lag-in-frames": "0"}
        as_ = None
        if with_audio:
            as_ = out.add_stream("libopus", rate=48000)
            as_.layout = "mono"
            as_.thread_count = 1
        for f in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if as_ is not None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None, :]
            af = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            af.sample_rate = SAMPLE_RATE
            af.pts = 0
            for p in as_.encode(af):
                out.mux(p)
            for p in as_.encode():
                out.mux(p)


def write_flac(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    import soundfile as sf

    sf.write(str(path), np.clip(audio, -1, 1), sample_rate, format="FLAC", subtype="PCM_16")


def _make_one(job):
    root, seed, label, split, index, scale = job
    name = f"{split}/{class_names()[label]}_{index:03d}"
    vpath, apath = Path(root) / f"{name}.webm", Path(root) / f"{name}.flac"
    frames, audio = render_clip(seed, label, split, index, scale)
    encode_clip(vpath, frames, audio)
    write_flac(apath, audio)
    return split, {"path": f"{name}.webm", "audio": f"{name}.flac", "label": label,
                   "duration": f"{len(frames) / FPS:.4f}", "fps": FPS, "height": scale.height, "width": scale.width}


def generate(out: str | Path, scale: str = "small", seed: int = 0, *, workers: int = 2,
             per_class: dict | None = None, progress: bool = False) -> dict:
    """Write the benchmark into `out` (created). Returns a summary dict."""
    if scale not in SYNTH_SCALES:
        raise ValueError(f"unknown synth scale '{scale}' (choose one of: {', '.join(SYNTH_SCALES)})")
    sc = SYNTH_SCALES[scale]
    if per_class:
        sc = SynthScale(sc.width, sc.height, sc.duration_s, {**sc.per_class, **per_class})
    out = Path(out)
    for s in SPLITS:
        (out / s).mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), seed, c, s, i, sc) for s in SPLITS for c in range(len(CLASSES)) for i in range(sc.per_class[s])]
    t0 = time.perf_counter()
    if workers > 1:
        ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
        with ctx.Pool(workers) as pool:
            it = pool.imap(_make_one, jobs, chunksize=4)
            results = list(_progress(it, len(jobs), progress))
    else:
        results = list(_progress(map(_make_one, jobs), len(jobs), progress))
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for split, row in results:
        rows[split].append(row)
    from avsf.data.manifest import write_manifest

    for s in SPLITS:
        write_manifest(out / f"{s}.csv", rows[s])
    write_manifest(out / "manifest.csv", [{**r, "split": s} for s in SPLITS for r in rows[s]])
    info = {"classes": class_names(), "groups": class_groups(), "scale": scale, "seed": seed, "fps": FPS,
            "sample_rate": SAMPLE_RATE, "size": [sc.height, sc.width], "duration_s": sc.duration_s,
            "split_sizes": {s: len(rows[s]) for s in SPLITS}}
    (out / "classes.json").write_text(json.dumps(info, indent=2))
    info["generation_s"] = round(time.perf_counter() - t0, 2)
    return info


def _progress(it, total, on):
    if not on:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="synth", unit="clip")
