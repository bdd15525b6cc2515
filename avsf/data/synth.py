"""The built-in synthetic audiovisual benchmark (`avsf data synth`).

Every clip has a picture and a soundtrack. Each class group is built so that one question of
the paper's ablations has a known answer mechanism in the data (docs/data.md explains each):

- ``visual`` (slide-horizontal, slide-vertical, orbit): a large disc whose motion pattern is
  the label. Soundtrack: the *beat* distractor (plucks at a steady ~1 s period, random phase),
  the same sound the ``sync`` classes carry. Audio alone cannot tell them from ``sync``.
- ``audio`` (close-interval, wide-interval, double-ticks, single-ticks): the sound is the label
  and needs *detail* to be heard: two-tone chords 1-2 vs 5-7 semitones apart (spectral detail:
  at low pitch one or two mel bins apart), clicks in pairs 60-90 ms apart vs single clicks at
  the same click rate (temporal detail: 4-6 log-mel hops). Picture: the *beat* flash distractor
  (a shape flashing at a steady ~1 s period), the same picture the ``sync`` classes show.
  Probes audio width (beta_A, Table 5b) and the audio kernels (factorised / 3x3 / Table 1).
- ``sync`` (in-sync, out-of-sync): beat flashes + beat plucks; in ``in-sync`` every pluck starts
  on a flash, in ``out-of-sync`` every pluck is half a period (~0.4-0.55 s) away from the
  flashes. Each modality alone has the same distribution in both classes (and as the
  distractors above), so only a model where audio meets vision at a fine enough temporal
  resolution separates them: fusion stages and types (Tables 5a, 6) and AVS (Table 5d).
- ``competition`` (dot-horizontal, dot-vertical, dot-circle, dot-diagonal): modality
  competition (Sec. 3.5, Table 5c). The visual cue is fully reliable but hard (a small,
  faint dot moving in the class's pattern over a textured background); the sound cue is easy
  (a steady tone whose pitch names the class) but only partly reliable: in
  ``COMPETITION_RELIABILITY`` of the clips it is the class's tone, otherwise the tone of
  another class of the group. A model that latches onto the sound early fits most clips
  without its visual pathway ever learning the dot (Wang et al., CVPR 2020); DropPathway
  is the paper's remedy.

A visual-only model is therefore at chance among the 6 audio + sync classes (they look
alike), an audio-only model at chance among the 5 visual + sync classes (they sound alike)
and at ``COMPETITION_RELIABILITY`` on the competition group; only a fused model can get
everything right.

Files: VP9 + Opus in WebM (decodable by PyAV and DALI's CPU decoder) and a 16 kHz mono FLAC
sidecar per clip; `train.csv`, `val.csv`, `test.csv`, `manifest.csv` (all rows with a split
column) and `classes.json`. Each clip's content depends only on (seed, class, split, index),
so the output is the same for any number of workers. Bump `VERSION` whenever the output
changes: it keys the cache folder, so old caches are regenerated.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsf.data.pools import worker_context

VERSION = 2
FPS = 16
SAMPLE_RATE = 16000
COMPETITION_RELIABILITY = 0.6
"""Share of competition-group clips whose tone names their class (the rest: another class's)."""


@dataclass(frozen=True)
class SynthScale:
    width: int
    height: int
    duration_s: float
    per_class: dict  # split -> clips per class


SYNTH_SCALES: dict[str, SynthScale] = {
    "tiny": SynthScale(48, 40, 2.0, {"train": 3, "val": 1, "test": 1}),
    "small": SynthScale(48, 40, 3.0, {"train": 24, "val": 12, "test": 40}),
    # NVDEC refuses frames under 128x128: the scale GPU users decode on the GPU.
    "gpu": SynthScale(160, 128, 3.0, {"train": 24, "val": 12, "test": 40}),
}

CLASSES: list[tuple[str, str]] = [
    ("slide-horizontal", "visual"),
    ("slide-vertical", "visual"),
    ("orbit", "visual"),
    ("close-interval", "audio"),
    ("wide-interval", "audio"),
    ("double-ticks", "audio"),
    ("single-ticks", "audio"),
    ("in-sync", "sync"),
    ("out-of-sync", "sync"),
    ("dot-horizontal", "competition"),
    ("dot-vertical", "competition"),
    ("dot-circle", "competition"),
    ("dot-diagonal", "competition"),
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


def _rank_in_group(label: int) -> int:
    """0-based position of a class within its group (the pattern / sound it stands for)."""
    return class_groups()[CLASSES[label][1]].index(label)


# ----------------------------------------------------------------------------- events
def _beat_times(rng: np.random.Generator, start: float, stop: float) -> tuple[np.ndarray, float]:
    """A steady beat: period 0.8-1.1 s, random phase, +-40 ms jitter per event. (times, period)"""
    period = rng.uniform(0.8, 1.1)
    t = np.arange(start - rng.uniform(0.0, period), stop + period, period)
    return t + rng.uniform(-0.04, 0.04, size=t.shape), period


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


def _texture(rng, h, w, strength: float):
    """Static blotches: clutter that a faint moving dot has to be found in."""
    noise = rng.standard_normal((h // 4 + 2, w // 4 + 2))
    up = np.kron(noise, np.ones((4, 4)))[:h, :w]
    return strength * up[..., None]


def _disc_mask(h, w, cy, cx, r):
    ys, xs = np.mgrid[0:h, 0:w]
    d = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)
    return np.clip(r + 0.5 - d, 0, 1)[..., None]


def _square_mask(h, w, cy, cx, r):
    ys, xs = np.mgrid[0:h, 0:w]
    d = np.maximum(np.abs(ys - cy), np.abs(xs - cx))
    return np.clip(r + 0.5 - d, 0, 1)[..., None]


def _path(pattern: str, a: float, h: float, w: float, margin: float, cy0: float, cx0: float) -> tuple[float, float]:
    """Centre (y, x) at phase `a` of a motion pattern inside an h x w frame."""
    ry, rx = h / 2 - margin, w / 2 - margin
    if pattern == "horizontal":
        return cy0, w / 2 + rx * math.sin(a)
    if pattern == "vertical":
        return h / 2 + ry * math.sin(a), cx0
    if pattern == "circle":
        rad = min(ry, rx)
        return h / 2 + rad * math.sin(a), w / 2 + rad * math.cos(a)
    # diagonal: top-left <-> bottom-right
    return h / 2 + ry * math.sin(a), w / 2 + rx * math.sin(a)


def _render_moving(rng, pattern: str, n: int, h: int, w: int, *, radius: float, contrast: float | None,
                   clutter: float) -> np.ndarray:
    """An object moving along `pattern` at 0.4-0.6 cycles/s; `contrast` None = bright colour."""
    bg = np.clip(_background(rng, h, w) + (_texture(rng, h, w, clutter) if clutter else 0.0), 0, 1)
    color = rng.uniform(0.6, 1.0, size=3) if contrast is None else None
    r = radius * rng.uniform(0.9, 1.1)
    freq, phase = rng.uniform(0.4, 0.6), rng.uniform(0, 2 * math.pi)
    cy0, cx0 = h / 2 + rng.uniform(-0.1, 0.1) * h, w / 2 + rng.uniform(-0.1, 0.1) * w
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        cy, cx = _path(pattern, 2 * math.pi * freq * i / FPS + phase, h, w, r + 2, cy0, cx0)
        m = _disc_mask(h, w, cy, cx, r)
        fg = color if color is not None else np.clip(bg + contrast, 0, 1)
        frames[i] = np.round((bg * (1 - m) + fg * m) * 255).astype(np.uint8)
    return frames


def _render_flashes(rng, events: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """A static shape that flashes at each event (decay ~0.1 s, visible ~0.3 s)."""
    bg = _background(rng, h, w)
    color = rng.uniform(0.3, 0.5, size=3)
    r = min(h, w) * rng.uniform(0.14, 0.2)
    cy, cx = h / 2 + rng.uniform(-0.15, 0.15) * h, w / 2 + rng.uniform(-0.15, 0.15) * w
    shape = _disc_mask if rng.random() < 0.5 else _square_mask
    m = shape(h, w, cy, cx, r)
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        dt = i / FPS - events
        dt = dt[(dt >= -1e-9) & (dt < 0.3)]
        level = float(np.exp(-dt / 0.1).max()) if dt.size else 0.0
        c = color + (1.0 - color) * level
        b = bg + 0.25 * level
        frames[i] = np.round(np.clip(b * (1 - m) + c * m, 0, 1) * 255).astype(np.uint8)
    return frames


# ----------------------------------------------------------------------------- sounds
def _noise_floor(rng, n):
    x = rng.standard_normal(n)
    x = np.convolve(x, np.ones(8) / 8, mode="same")
    return 0.004 * x


def _plucks(rng, onsets: np.ndarray, n: int) -> np.ndarray:
    """Pentatonic plucks (a few harmonics, fast decay) starting at the given onsets."""
    y = np.zeros(n)
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 7, 9, 12, 14, 16]) / 12)
    for t0 in onsets:
        s0 = int(round(t0 * SAMPLE_RATE))
        lo, hi = max(s0, 0), min(s0 + int(0.35 * SAMPLE_RATE), n)
        if hi <= lo:
            continue
        tt = (np.arange(lo, hi) - s0) / SAMPLE_RATE
        f = rng.choice(scale) * rng.uniform(0.98, 1.02)
        env = np.exp(-tt / 0.07) * rng.uniform(0.4, 0.6)
        tone = np.sin(2 * np.pi * f * tt) + 0.5 * np.sin(4 * np.pi * f * tt) + 0.25 * np.sin(6 * np.pi * f * tt)
        y[lo:hi] += env * tone / 1.75
    return y


def _dyads(rng, n: int, semitones: tuple[float, float]) -> np.ndarray:
    """Notes of 0.25-0.5 s, each two sine tones `semitones` apart at a random base pitch."""
    y, s = np.zeros(n), 0
    while s < n:
        length = int(rng.uniform(0.25, 0.5) * SAMPLE_RATE)
        tt = np.arange(min(length, n - s)) / SAMPLE_RATE
        f = rng.uniform(300, 1200)
        g = f * 2 ** (rng.uniform(*semitones) / 12)
        env = np.minimum(1.0, np.minimum(tt, tt[-1] - tt) / 0.02)  # 20 ms fades: no clicks
        y[s:s + len(tt)] = 0.3 * env * (np.sin(2 * np.pi * f * tt) + np.sin(2 * np.pi * g * tt)) / 2
        s += length
    return y


def _clicks(rng, n: int, times: np.ndarray) -> np.ndarray:
    """5 ms band-limited noise bursts at `times`."""
    y = np.zeros(n)
    burst = int(0.005 * SAMPLE_RATE)
    for t0 in times:
        s0 = int(round(t0 * SAMPLE_RATE))
        if 0 <= s0 < n - burst:
            y[s0:s0 + burst] += 0.5 * rng.standard_normal(burst) * np.hanning(burst)
    return y


def _ticks(rng, n: int, paired: bool) -> np.ndarray:
    """Clicks in pairs 60-90 ms apart at 2.5-3.5 pairs/s, or single clicks at twice that rate."""
    dur = n / SAMPLE_RATE
    rate = rng.uniform(2.5, 3.5)
    step = 1 / rate if paired else 1 / (2 * rate)
    t = np.arange(rng.uniform(0, step), dur, step)
    t = t + rng.uniform(-0.015, 0.015, size=t.shape)
    if paired:
        t = np.sort(np.concatenate([t, t + rng.uniform(0.06, 0.09)]))
    return _clicks(rng, n, t)


_music = _plucks  # the name avsf.data.synth_tasks uses for the plucks


def _class_sound(rng, kind: int, n: int) -> np.ndarray:
    """Four easy timbres (0 low hum, 1 high whistle, 2 fast ticks, 3 rising chirps): the sounds of
    the synthetic EPIC and Charades sets (avsf.data.synth_tasks)."""
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


COMPETITION_TONES = (330.0, 440.0, 587.0, 784.0)


def _tone(rng, n: int, f0: float) -> np.ndarray:
    """A steady tone with three harmonics and a slow tremolo: easy to recognise."""
    t = np.arange(n) / SAMPLE_RATE
    f = f0 * rng.uniform(0.98, 1.02)
    y = sum(np.sin(2 * np.pi * k * f * t + rng.uniform(0, 6.28)) / k for k in (1, 2, 3))
    return 0.25 * y * (0.8 + 0.2 * np.sin(2 * np.pi * rng.uniform(2, 4) * t))


# ----------------------------------------------------------------------------- one clip
_PATTERNS = ("horizontal", "vertical", "circle", "diagonal")


def _visual_clip(rng, k, n_frames, n_samples, h, w, dur):
    frames = _render_moving(rng, _PATTERNS[k], n_frames, h, w, radius=min(h, w) * 0.14, contrast=None, clutter=0.0)
    beats, _ = _beat_times(rng, -1.5, dur + 1.5)
    return frames, _plucks(rng, beats, n_samples)


def _audio_clip(rng, k, n_frames, n_samples, h, w, dur):
    beats, _ = _beat_times(rng, -1.5, dur + 1.5)
    frames = _render_flashes(rng, beats, n_frames, h, w)
    sound = (lambda: _dyads(rng, n_samples, (1.0, 2.0)), lambda: _dyads(rng, n_samples, (5.0, 7.0)),
             lambda: _ticks(rng, n_samples, True), lambda: _ticks(rng, n_samples, False))[k]()
    return frames, sound


def _sync_clip(rng, k, n_frames, n_samples, h, w, dur):
    beats, period = _beat_times(rng, -1.5, dur + 1.5)
    frames = _render_flashes(rng, beats, n_frames, h, w)
    onsets = beats if k == 0 else beats + period / 2
    return frames, _plucks(rng, onsets, n_samples)


def _competition_clip(rng, k, n_frames, n_samples, h, w, dur):
    frames = _render_moving(rng, _PATTERNS[k], n_frames, h, w, radius=max(1.5, min(h, w) * 0.08), contrast=0.35,
                            clutter=0.04)
    heard = k if rng.random() < COMPETITION_RELIABILITY else int(rng.choice([j for j in range(4) if j != k]))
    return frames, _tone(rng, n_samples, COMPETITION_TONES[heard])


_RENDER = {"visual": _visual_clip, "audio": _audio_clip, "sync": _sync_clip, "competition": _competition_clip}


def render_clip(seed: int, label: int, split: str, index: int, scale: SynthScale):
    """(frames uint8 (N, H, W, 3), audio float32 (samples,)) for one clip, deterministic."""
    rng = np.random.default_rng([seed, label, SPLITS.index(split), index, VERSION])
    dur = scale.duration_s
    n_frames, n_samples = int(round(dur * FPS)), int(round(dur * SAMPLE_RATE))
    frames, audio = _RENDER[CLASSES[label][1]](rng, _rank_in_group(label), n_frames, n_samples,
                                              scale.height, scale.width, dur)
    audio = audio + _noise_floor(rng, n_samples)
    return frames, np.clip(audio, -0.99, 0.99).astype(np.float32)


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
        with worker_context().Pool(workers) as pool:
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
            "version": VERSION, "competition_reliability": COMPETITION_RELIABILITY,
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
