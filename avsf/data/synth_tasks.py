"""Synthetic counterparts of the paper's other classification tasks, generated on first use.

`data.dataset = "synth-epic"` (EPIC-Kitchens, Table 2) and `data.dataset = "synth-charades"`
(Charades, Table 4); `data.synth_scale` (tiny | small) and `data.synth_seed` pick the size and
the draw, as for the built-in benchmark (`avsf.data.synth`, whose drawing and sound helpers
these sets reuse). Same files as that benchmark: VP9 + Opus WebM clips with a 16 kHz FLAC
sidecar, `train.csv` / `val.csv` / `test.csv` / `manifest.csv` and `classes.json`; each clip
depends only on (seed, set, split, index), so any number of workers writes the same files.

synth-epic: one object moves in each clip. The **verb** is its motion (stir: it circles; shake:
fast side-to-side; lift: slow up and down; squeeze: it swells and shrinks). The **noun** is
what the object is: three nouns by their look (tomato: red disc, sponge: yellow square, plate:
cyan ring; soundtrack: the shared background plucks), three only by their sound (kettle:
whistle, fridge: hum, timer: ticks; all three drawn as the same grey lid, disc or square at
random). Every verb x noun pair (the **action**) has the same number of clips. A visual-only
model is at chance among the sound nouns, an audio-only one among the look nouns and the verbs;
the action needs both. Rows carry `verb`, `noun` and `label` (= verb, as `avsf data prepare
--format epic` writes); classes.json has `verbs`, `nouns` and the noun groups `noun_visual`,
`noun_audio`.

synth-charades: long videos, each holding one to three actions with overlapping time spans.
Four actions are seen (waving, spinning, bouncing, pulsing: one of the three grey objects of
the scene moves so during the span, and rests otherwise) and three are only heard
(phone-ringing, knocking, vacuuming: a sound during the span, nothing in the picture). Background
plucks play throughout. Labels are multi-label; the spans are in `spans_<split>.csv` in
Charades' own annotation layout (id, actions = "c003 1.20 3.40;...", length). As with Charades'
annotated spans, the training rows are the videos **cut to each action's span** (label: that
action and every other one covering at least half of the cut; columns `video`, `start`, `end`
name the source), while validation and test rows are whole videos with video-level labels,
scored from several temporal clips pooled per video (`eval.video_pool`, max by default as in A.6).
Groups `visual` / `audio` in classes.json give the per-group mAP (`mAP_visual`, `mAP_audio`).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsf.data import synth as S
from avsf.data.pools import worker_context

FPS, SAMPLE_RATE = S.FPS, S.SAMPLE_RATE
SPLITS = S.SPLITS


@dataclass(frozen=True)
class TaskScale:
    width: int
    height: int
    duration_s: float
    counts: dict  # split -> clips per (verb, noun) pair (synth-epic) or videos (synth-charades)


EPIC_SCALES: dict[str, TaskScale] = {
    "tiny": TaskScale(48, 40, 2.0, {"train": 1, "val": 1, "test": 1}),
    "small": TaskScale(96, 80, 4.0, {"train": 16, "val": 3, "test": 5}),
}
CHARADES_SCALES: dict[str, TaskScale] = {
    "tiny": TaskScale(48, 40, 4.0, {"train": 8, "val": 4, "test": 7}),
    "small": TaskScale(96, 80, 8.0, {"train": 160, "val": 28, "test": 56}),
}

VERBS = ("stir", "shake", "lift", "squeeze")
NOUNS: tuple[tuple[str, str], ...] = (
    ("tomato", "visual"), ("sponge", "visual"), ("plate", "visual"),
    ("kettle", "audio"), ("fridge", "audio"), ("timer", "audio"),
)
# look of each visual noun: (shape, RGB); sound of each audio noun: avsf.data.synth._class_sound kind
NOUN_LOOK = {"tomato": ("disc", (0.85, 0.15, 0.1)), "sponge": ("square", (0.95, 0.85, 0.15)),
             "plate": ("ring", (0.2, 0.85, 0.9))}
NOUN_SOUND = {"fridge": 0, "kettle": 1, "timer": 2}

ACTIONS: tuple[tuple[str, str], ...] = (
    ("waving", "visual"), ("spinning", "visual"), ("bouncing", "visual"), ("pulsing", "visual"),
    ("phone-ringing", "audio"), ("knocking", "audio"), ("vacuuming", "audio"),
)
ACTION_SOUND = {"phone-ringing": 1, "knocking": 2, "vacuuming": 0}
MIN_SPAN, MAX_SPAN = 0.4, 0.8  # an action lasts this share of its video
CUT_COVER = 0.5  # a training cut's label: the actions covering at least this share of it


def noun_groups() -> dict[str, list[int]]:
    return {f"noun_{g}": [i for i, (_, gg) in enumerate(NOUNS) if gg == g] for g in ("visual", "audio")}


def action_groups() -> dict[str, list[int]]:
    return {g: [i for i, (_, gg) in enumerate(ACTIONS) if gg == g] for g in ("visual", "audio")}


# ----------------------------------------------------------------------------- drawing
def _shape_mask(shape: str, h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    if shape == "disc":
        return S._disc_mask(h, w, cy, cx, r)
    if shape == "square":
        return S._square_mask(h, w, cy, cx, r)
    return np.clip(S._disc_mask(h, w, cy, cx, r) - S._disc_mask(h, w, cy, cx, 0.55 * r), 0, 1)  # ring


def _motion(kind: str, t: np.ndarray, rng: np.random.Generator, reach: float) -> tuple[np.ndarray, ...]:
    """(dy, dx, size factor) per time step of one motion pattern, displacements within `reach` pixels."""
    phase = rng.uniform(0, 2 * math.pi)
    slow = 2 * math.pi * rng.uniform(0.4, 0.6) * t + phase
    fast = 2 * math.pi * rng.uniform(2.0, 2.5) * t + phase
    zero, one = np.zeros_like(t), np.ones_like(t)
    if kind in ("stir", "spinning"):  # circles
        return reach * np.sin(slow), reach * np.cos(slow), one
    if kind in ("shake", "waving"):  # fast side to side
        return zero, 0.6 * reach * np.sin(fast), one
    if kind in ("lift", "bouncing"):  # slow up and down
        return reach * np.sin(slow), zero, one
    return zero, zero, 1.0 + 0.5 * np.sin(2 * slow)  # squeeze / pulsing: swells and shrinks


def _draw(frames_bg: np.ndarray, objects: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """uint8 frames: each object (shape, colour, cy, cx per frame, size factor per frame, radius) over the background."""
    n = len(objects[0][2]) if objects else 0
    h, w = frames_bg.shape[:2]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        img = frames_bg
        for shape, color, cy, cx, size, r in objects:
            m = _shape_mask(shape, h, w, cy[i], cx[i], r * size[i])
            img = img * (1 - m) + color * m
        out[i] = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return out


def _grey(rng: np.random.Generator) -> np.ndarray:
    return np.full(3, rng.uniform(0.5, 0.6)) + rng.uniform(-0.03, 0.03, size=3)


def _finish_audio(rng: np.random.Generator, audio: np.ndarray) -> np.ndarray:
    return np.clip(audio + S._noise_floor(rng, len(audio)), -0.99, 0.99).astype(np.float32)


# ----------------------------------------------------------------------------- synth-epic
def render_epic_clip(seed: int, verb: int, noun: int, split: str, index: int, scale: TaskScale):
    """(frames uint8 (N, H, W, 3), audio float32) of one synth-epic clip, deterministic."""
    rng = np.random.default_rng([seed, 101, verb, noun, SPLITS.index(split), index])
    n = int(round(scale.duration_s * FPS))
    n_samples = int(round(scale.duration_s * SAMPLE_RATE))
    h, w = scale.height, scale.width
    name, group = NOUNS[noun]
    if group == "visual":
        shape, color = NOUN_LOOK[name]
        color = np.clip(np.asarray(color) + rng.uniform(-0.05, 0.05, size=3), 0, 1)
        audio = S._music(rng, S._event_times(rng, -0.5, scale.duration_s + 0.5), n_samples)
    else:
        shape, color = ("disc" if rng.random() < 0.5 else "square"), _grey(rng)
        audio = S._class_sound(rng, NOUN_SOUND[name], n_samples)
    r = min(h, w) * rng.uniform(0.13, 0.16)
    reach = min(h, w) / 2 - 1.5 * r - 1
    dy, dx, size = _motion(VERBS[verb], np.arange(n) / FPS, rng, reach)
    cy0, cx0 = h / 2 + rng.uniform(-0.05, 0.05) * h, w / 2 + rng.uniform(-0.05, 0.05) * w
    frames = _draw(S._background(rng, h, w), [(shape, color, cy0 + dy, cx0 + dx, size, r)])
    return frames, _finish_audio(rng, audio)


def _epic_job(job) -> tuple[str, dict]:
    root, seed, verb, noun, split, index, scale = job
    name = f"{split}/{VERBS[verb]}-{NOUNS[noun][0]}_{index:03d}"
    frames, audio = render_epic_clip(seed, verb, noun, split, index, scale)
    row = _save(Path(root), name, frames, audio)
    return split, {**row, "label": verb, "verb": verb, "noun": noun}


def generate_epic(out: str | Path, scale: str = "small", seed: int = 0, *, workers: int = 2,
                  progress: bool = False) -> dict:
    """Write synth-epic into `out` (created); returns a summary dict."""
    sc = _scale(EPIC_SCALES, scale, "synth-epic")
    jobs = [(str(out), seed, v, n, s, i, sc) for s in SPLITS for v in range(len(VERBS)) for n in range(len(NOUNS))
            for i in range(sc.counts[s])]
    meta = {"classes": list(VERBS), "verbs": list(VERBS), "nouns": [n for n, _ in NOUNS], "groups": noun_groups(),
            "num_verbs": len(VERBS), "num_nouns": len(NOUNS)}
    return _write_set(Path(out), jobs, _epic_job, meta, sc, scale, seed, workers, progress)


# ----------------------------------------------------------------------------- synth-charades
@dataclass(frozen=True)
class Span:
    action: int
    start: float
    end: float


def draw_spans(rng: np.random.Generator, index: int, duration: float) -> list[Span]:
    """One to three distinct actions with overlapping spans; the first cycles through the classes
    with the video index, so every class has positives once a split has as many videos as classes."""
    k = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    others = [a for a in rng.permutation(len(ACTIONS)) if a != index % len(ACTIONS)]
    spans = []
    for a in [index % len(ACTIONS), *others[: k - 1]]:
        length = duration * rng.uniform(MIN_SPAN, MAX_SPAN)
        t0 = rng.uniform(0, duration - length)
        spans.append(Span(int(a), round(t0, 2), round(t0 + length, 2)))
    return spans


def _envelope(t: np.ndarray, span: Span, ramp: float = 0.25) -> np.ndarray:
    """0 outside the span, 1 inside, with linear ramps of `ramp` seconds at both ends."""
    rise = np.clip((t - span.start) / ramp, 0, 1)
    fall = np.clip((span.end - t) / ramp, 0, 1)
    return np.minimum(rise, fall)


def render_charades_video(seed: int, split: str, index: int, scale: TaskScale):
    """(frames, audio, spans) of one synth-charades video, deterministic."""
    rng = np.random.default_rng([seed, 202, SPLITS.index(split), index])
    dur = scale.duration_s
    n, n_samples = int(round(dur * FPS)), int(round(dur * SAMPLE_RATE))
    h, w = scale.height, scale.width
    spans = draw_spans(rng, index, dur)
    # three grey objects in three of the four quadrants; the seen actions each take one of them
    quadrants = rng.permutation(4)[:3]
    seen = [s for s in spans if ACTIONS[s.action][1] == "visual"]
    t_frames = np.arange(n) / FPS
    r = min(h, w) * rng.uniform(0.07, 0.09)
    reach = min(h, w) / 4 - 0.8 * r  # a moving object may brush its neighbour's quadrant
    objects = []
    for k, q in enumerate(quadrants):
        cy0, cx0 = (q // 2 + 0.5) * h / 2, (q % 2 + 0.5) * w / 2
        dy, dx, size = np.zeros(n), np.zeros(n), np.ones(n)
        if k < len(seen):
            env = _envelope(t_frames, seen[k])
            my, mx, ms = _motion(ACTIONS[seen[k].action][0], t_frames, rng, reach)
            dy, dx, size = env * my, env * mx, 1 + env * (ms - 1)
        objects.append(("disc" if rng.random() < 0.5 else "square", _grey(rng), cy0 + dy, cx0 + dx, size, r))
    frames = _draw(S._background(rng, h, w), objects)
    audio = S._music(rng, S._event_times(rng, -0.5, dur + 0.5), n_samples)
    t_samples = np.arange(n_samples) / SAMPLE_RATE
    for s in spans:
        name, group = ACTIONS[s.action]
        if group == "audio":
            audio = audio + _envelope(t_samples, s) * S._class_sound(rng, ACTION_SOUND[name], n_samples)
    return frames, _finish_audio(rng, audio), spans


def cut_labels(spans: list[Span], start: float, end: float) -> list[int]:
    """The actions covering at least CUT_COVER of the cut [start, end)."""
    length = max(end - start, 1e-9)
    return sorted({s.action for s in spans if (min(s.end, end) - max(s.start, start)) / length >= CUT_COVER - 1e-9})


def _charades_job(job) -> tuple[str, list[dict], tuple[str, str, str]]:
    root, seed, split, index, scale = job
    video = f"{split}-{index:04d}"
    frames, audio, spans = render_charades_video(seed, split, index, scale)
    if split == "train":
        cuts = [(s.start, s.end) for s in spans]
    else:
        cuts = [(0.0, scale.duration_s)]
    rows = []
    for k, (t0, t1) in enumerate(cuts):
        f0, f1 = int(round(t0 * FPS)), max(int(round(t1 * FPS)), int(round(t0 * FPS)) + 1)
        a0, a1 = f0 * SAMPLE_RATE // FPS, f1 * SAMPLE_RATE // FPS
        name = f"{split}/{video}" + (f"_cut{k}" if split == "train" else "")
        row = _save(Path(root), name, frames[f0:f1], audio[a0:a1])
        labels = cut_labels(spans, f0 / FPS, f1 / FPS) if split == "train" else sorted({s.action for s in spans})
        rows.append({**row, "label": ";".join(map(str, labels)) + ";", "video": video,
                     "start": f"{f0 / FPS:.4f}", "end": f"{f1 / FPS:.4f}"})
    actions = ";".join(f"c{s.action:03d} {s.start:.2f} {s.end:.2f}" for s in spans)
    return split, rows, (video, actions, f"{scale.duration_s:.2f}")


def generate_charades(out: str | Path, scale: str = "small", seed: int = 0, *, workers: int = 2,
                      progress: bool = False) -> dict:
    """Write synth-charades into `out` (created); returns a summary dict."""
    sc = _scale(CHARADES_SCALES, scale, "synth-charades")
    jobs = [(str(out), seed, s, i, sc) for s in SPLITS for i in range(sc.counts[s])]
    meta = {"classes": [a for a, _ in ACTIONS], "groups": action_groups(),
            "codes": [f"c{i:03d}" for i in range(len(ACTIONS))]}
    return _write_set(Path(out), jobs, _charades_job, meta, sc, scale, seed, workers, progress)


# ----------------------------------------------------------------------------- files
def _scale(table: dict[str, TaskScale], scale: str, what: str) -> TaskScale:
    if scale not in table:
        raise ValueError(f"data.synth_scale: '{scale}' is not allowed for {what}; choose one of: {', '.join(table)}")
    return table[scale]


def _save(root: Path, name: str, frames: np.ndarray, audio: np.ndarray) -> dict:
    """Encode one clip (WebM + FLAC sidecar) and return its manifest row's file columns."""
    S.encode_clip(root / f"{name}.webm", frames, audio)
    S.write_flac(root / f"{name}.flac", audio)
    return {"path": f"{name}.webm", "audio": f"{name}.flac", "duration": f"{len(frames) / FPS:.4f}", "fps": FPS,
            "height": frames.shape[1], "width": frames.shape[2]}


def _map(fn, jobs: list, workers: int, progress: bool) -> list:
    if workers > 1 and len(jobs) > 1:
        with worker_context().Pool(workers) as pool:
            return list(S._progress(pool.imap(fn, jobs, chunksize=2), len(jobs), progress))
    return list(S._progress(map(fn, jobs), len(jobs), progress))


def _write_set(out: Path, jobs: list, fn, meta: dict, sc: TaskScale, scale: str, seed: int, workers: int,
               progress: bool) -> dict:
    """Run the clip jobs, then write the manifests (in job order, whatever the worker count) and classes.json."""
    from avsf.data.manifest import write_manifest

    for s in SPLITS:
        (out / s).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    spans: dict[str, list[tuple]] = {s: [] for s in SPLITS}
    for split, got, *annotation in _map(fn, jobs, workers, progress):
        rows[split].extend(got if isinstance(got, list) else [got])
        spans[split].extend(annotation)
    for s in SPLITS:
        write_manifest(out / f"{s}.csv", rows[s])
        if spans[s]:
            _write_spans(out / f"spans_{s}.csv", spans[s])
    write_manifest(out / "manifest.csv", [{**r, "split": s} for s in SPLITS for r in rows[s]])
    info = {**meta, "scale": scale, "seed": seed, "fps": FPS, "sample_rate": SAMPLE_RATE, "size": [sc.height, sc.width],
            "duration_s": sc.duration_s, "split_sizes": {s: len(rows[s]) for s in SPLITS}}
    (out / "classes.json").write_text(json.dumps(info, indent=2))
    info["generation_s"] = round(time.perf_counter() - t0, 2)
    return info


def _write_spans(path: Path, lines: list[tuple]) -> None:
    """Charades' annotation layout: id, actions ("c003 1.20 3.40;..."), length (seconds)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "actions", "length"])
        w.writerows(lines)
