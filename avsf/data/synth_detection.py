"""The synthetic benchmark's detection split (`data.dataset = "synth-detection"`; docs/detection.md).

Each video shows two or three "actors" (upright rectangles, one per horizontal band of the
square frame) with a box track, and a soundtrack. Every actor does one motion action and may do
more; which modality identifies an action differs, as in the classification benchmark:

- ``visual`` (motion alone): ``walk`` (slides left-right), ``jump`` (bounces), ``stand``.
- ``sync`` (only with the sound): ``hit`` - the actor flashes on the soundtrack's knocks. Other
  actors flash too, at times at least 0.25 s from every knock, and every video has knocks, so
  the picture alone cannot tell the hitter from the other flashers, nor the sound alone who hits.
- ``audio`` (the sound says which): ``whistle`` / ``hum`` - one actor's "mouth" blinks while the
  soundtrack carries a whistle or a hum; the picture shows who vocalises, only the sound what.

Boxes are annotated at one keyframe per second (t = 1 .. duration - 1 s, so the clip around each
lies inside the video). The generator writes what AVA ships - VP9/Opus WebM videos with 16 kHz
FLAC sidecars, `ava/ava_<split>.csv` in AVA's CSV layout and `ava/action_list.pbtxt` - and builds
the loader-ready set from those files with the code `avsf data prepare --format ava` uses.
Each video depends only on (seed, split, index).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsf.data.pools import worker_context
from avsf.data.synth import FPS, SAMPLE_RATE, _background, _noise_floor, encode_clip, write_flac

ACTIONS: list[tuple[str, str]] = [
    ("walk", "visual"),
    ("jump", "visual"),
    ("stand", "visual"),
    ("hit", "sync"),
    ("whistle", "audio"),
    ("hum", "audio"),
]
SPLITS = ("train", "val", "test")
MOTIONS = ("walk", "jump", "stand")


@dataclass(frozen=True)
class DetectionScale:
    size: int  # square frames, pixels
    duration_s: float
    videos: dict  # split -> videos


SCALES: dict[str, DetectionScale] = {
    "tiny": DetectionScale(48, 4.0, {"train": 6, "val": 2, "test": 2}),
    "small": DetectionScale(96, 5.0, {"train": 96, "val": 16, "test": 32}),
}


@dataclass
class Actor:
    motion: str
    band: int  # horizontal band of the frame it lives in
    x0: float  # start of its left edge, share of the frame
    speed: float  # walk: shares of the frame per second (signed); jump: bounces per second
    colour: np.ndarray
    flashes: np.ndarray = field(default_factory=lambda: np.zeros(0))  # times (s)
    vocal: bool = False

    def actions(self, hitter: bool, vocal_action: str) -> list[str]:
        out = [self.motion] + (["hit"] if hitter else [])
        return out + ([vocal_action] if self.vocal else [])


# ----------------------------------------------------------------------------- timing and sound
def _onsets(rng: np.random.Generator, duration: float) -> np.ndarray:
    """Irregular event times over the video (gaps 0.7-1.2 s)."""
    gaps = rng.uniform(0.7, 1.2, size=int(duration / 0.7) + 2)
    times = rng.uniform(-0.5, 0.2) + np.cumsum(gaps)
    return times[times < duration]


def _away_from(rng: np.random.Generator, knocks: np.ndarray, duration: float, gap: float = 0.25) -> np.ndarray:
    """Flash times of a non-hitting actor: its own train, every time >= `gap` s from a knock."""
    times = _onsets(rng, duration)
    near = np.abs(times[:, None] - knocks[None, :]).min(axis=1) < gap if len(knocks) else np.zeros(len(times), bool)
    return times[~near]


def _knocks(rng: np.random.Generator, times: np.ndarray, n: int) -> np.ndarray:
    """Short filtered-noise knocks with a low thump, starting at `times`."""
    y, length = np.zeros(n), int(0.12 * SAMPLE_RATE)
    tt = np.arange(length) / SAMPLE_RATE
    for t0 in times:
        s0 = int(round(t0 * SAMPLE_RATE))
        lo, hi = max(s0, 0), min(s0 + length, n)
        if hi > lo:
            burst = rng.standard_normal(length) * np.exp(-tt / 0.015) + np.sin(2 * np.pi * 90 * tt) * np.exp(-tt / 0.04)
            y[lo:hi] += 0.35 * burst[lo - s0: hi - s0]
    return y


def _voice(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """A sustained whistle (2-3 kHz, tremolo) or hum (110-150 Hz with harmonics)."""
    t = np.arange(n) / SAMPLE_RATE
    if kind == "whistle":
        return 0.25 * np.sin(2 * np.pi * rng.uniform(2000, 3000) * t) * (0.8 + 0.2 * np.sin(2 * np.pi * 3 * t))
    f0 = rng.uniform(110, 150)
    return 0.15 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))


# ----------------------------------------------------------------------------- pictures
def _actor_box(a: Actor, t: float, bands: int) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 (shares of the frame) of the actor's body at time t."""
    w, h = 0.16, 0.8 / bands
    top = (a.band + 0.1) / bands
    x = a.x0
    if a.motion == "walk":  # bounce between the frame's edges
        span = 1.0 - w
        p = (a.x0 + a.speed * t) % (2 * span)
        x = p if p <= span else 2 * span - p
    elif a.motion == "jump":
        top -= 0.08 / bands * 2 * abs(math.sin(math.pi * a.speed * t))
    top = min(max(top, 0.0), 1.0 - h)
    return x, top, x + w, top + h


def _render(actors: list[Actor], n_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    bg = _background(rng, size, size)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for i in range(n_frames):
        t, img = i / FPS, bg.copy()
        for a in actors:
            x1, y1, x2, y2 = (v * size for v in _actor_box(a, t, len(actors)))
            body = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
            dt = t - a.flashes
            dt = dt[(dt >= 0) & (dt < 0.25)]
            level = float(np.exp(-dt / 0.08).max()) if dt.size else 0.0
            img[body] = a.colour + (1.0 - a.colour) * level
            if a.vocal and (t * 4) % 1 < 0.5:  # the "mouth" blinks at 4 Hz
                mouth = (xs >= x1 + 0.3 * (x2 - x1)) & (xs < x2 - 0.3 * (x2 - x1)) & (ys >= y1 + 0.1 * (y2 - y1)) \
                    & (ys < y1 + 0.25 * (y2 - y1))
                img[mouth] = 0.05
        frames[i] = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return frames


# ----------------------------------------------------------------------------- one video
def _cast(rng: np.random.Generator, duration: float) -> tuple[list[Actor], int | None, str, np.ndarray]:
    """(actors, the hitter's position or None, the vocal action or "", knock times)."""
    n = int(rng.integers(2, 4))
    actors = []
    for band in range(n):
        motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
        speed = rng.uniform(0.15, 0.3) * rng.choice([-1, 1]) if motion == "walk" else rng.uniform(1.2, 1.8)
        actors.append(Actor(motion, band, float(rng.uniform(0.0, 0.84)), float(speed), rng.uniform(0.35, 0.75, size=3)))
    knocks = _onsets(rng, duration)
    flashers = [i for i in range(n) if rng.random() < 0.6]
    hitter = int(rng.choice(flashers)) if flashers and rng.random() < 0.5 else None
    for i in flashers:
        actors[i].flashes = knocks if i == hitter else _away_from(rng, knocks, duration)
    vocal = ""
    if rng.random() < 0.6:
        actors[int(rng.integers(n))].vocal = True
        vocal = ("whistle", "hum")[int(rng.integers(2))]
    return actors, hitter, vocal, knocks


def render_video(seed: int, split: str, index: int, scale: DetectionScale):
    """(frames (N, S, S, 3) uint8, audio float32, annotations [(t, person, box, [action names])])."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index, 5])
    dur = scale.duration_s
    n_frames, n_samples = int(round(dur * FPS)), int(round(dur * SAMPLE_RATE))
    actors, hitter, vocal, knocks = _cast(rng, dur)
    frames = _render(actors, n_frames, scale.size, rng)
    audio = _knocks(rng, knocks, n_samples) + _noise_floor(rng, n_samples)
    if vocal:
        audio = audio + _voice(rng, vocal, n_samples)
    notes = [(t, p, _actor_box(a, float(t), len(actors)), a.actions(p == hitter, vocal))
             for t in range(1, int(dur)) for p, a in enumerate(actors)]
    return frames, np.clip(audio, -0.99, 0.99).astype(np.float32), notes


def _make_one(job) -> tuple[str, str, list[list], dict]:
    root, seed, split, index, scale = job
    vid = f"{split}_{index:04d}"
    frames, audio, notes = render_video(seed, split, index, scale)
    encode_clip(Path(root) / "videos" / f"{vid}.webm", frames, audio)
    write_flac(Path(root) / "audio" / f"{vid}.flac", audio)
    ids = {name: i + 1 for i, (name, _) in enumerate(ACTIONS)}
    rows = [[vid, t, *(f"{v:.3f}" for v in box), ids[a], p] for t, p, box, acts in notes for a in acts]
    video = {"path": f"videos/{vid}.webm", "audio": f"audio/{vid}.flac", "duration": f"{len(frames) / FPS:.4f}",
             "fps": FPS, "has_audio": 1, "height": scale.size, "width": scale.size}
    return split, vid, rows, video


def generate(out: str | Path, scale: str = "small", seed: int = 0, *, workers: int = 2, progress: bool = False) -> dict:
    """Write the detection split into `out` (created): AVA-layout sources, then the loader-ready
    set built from them (avsf.data.detection). Returns the prepare report plus timing."""
    from avsf.data.detection import _read_sources, read_label_map, write_detection_set, write_label_map

    if scale not in SCALES:
        raise ValueError(f"unknown synth scale '{scale}' (choose one of: {', '.join(SCALES)})")
    sc, out, t0 = SCALES[scale], Path(out), time.perf_counter()
    for sub in ("videos", "audio", "ava"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), seed, s, i, sc) for s in SPLITS for i in range(sc.videos[s])]
    if workers > 1:
        with worker_context().Pool(workers) as pool:
            results = list(pool.imap(_make_one, jobs, chunksize=2))
    else:
        results = [_make_one(j) for j in jobs]
    write_label_map(out / "ava" / "action_list.pbtxt", [a for a, _ in ACTIONS], [g for _, g in ACTIONS])
    csvs = []
    for s in SPLITS:
        path = out / "ava" / f"ava_{s}.csv"
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(r for split, _, rows, _ in results if split == s for r in rows)
        csvs.append((path, s))
    src = _read_sources(csvs, read_label_map(out / "ava" / "action_list.pbtxt"))
    videos = {(vid, 0): {**video, "_start": 0.0} for _, vid, _, video in results}
    report = write_detection_set(src, out, videos)
    meta = json.loads((out / "classes.json").read_text())
    meta.update(scale=scale, seed=seed, fps=FPS, sample_rate=SAMPLE_RATE, size=[sc.size, sc.size],
                duration_s=sc.duration_s, videos=sc.videos)
    (out / "classes.json").write_text(json.dumps(meta, indent=2))
    return {**report, "generation_s": round(time.perf_counter() - t0, 2)}
