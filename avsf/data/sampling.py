"""Clip sampling shared by both loaders: which frames, which crop, which audio window.

Everything random is drawn here, in Python, from a generator keyed by (seed, epoch, row),
so the DALI pipeline and the reference loader produce the same clip for the same row and
tests can compare them directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsf.config import Config
from avsf.data.manifest import Row


@dataclass(frozen=True)
class ClipGeometry:
    """Sizes that follow from the config (the model's input contract)."""

    num_frames: int  # T (Slow)
    fast_frames: int  # alpha_f * T
    alpha_f: int
    fast_stride: int  # tau / alpha_f raw frames
    span: int  # T * tau raw frames
    audio_frames: int  # alpha_a * T log-mel frames
    mel_bins: int
    sample_rate: int
    n_fft: int
    hop: int

    @property
    def audio_samples(self) -> int:
        return self.n_fft + self.hop * (self.audio_frames - 1)

    @staticmethod
    def from_config(cfg: Config) -> "ClipGeometry":
        m, d = cfg.model, cfg.data
        if m.tau % m.alpha_f:
            raise ValueError(f"model.tau ({m.tau}) must be a multiple of model.alpha_f ({m.alpha_f}) "
                             "so the Fast pathway samples whole frames")
        return ClipGeometry(m.num_frames, m.alpha_f * m.num_frames, m.alpha_f, m.tau // m.alpha_f,
                            m.num_frames * m.tau, m.alpha_a * m.num_frames, m.mel_bins, d.sample_rate,
                            d.n_fft, d.hop_length)


@dataclass(frozen=True)
class ClipSpec:
    """One view of one row: everything a loader needs to produce it."""

    row: int  # index into the split's manifest
    view: int  # temporal_idx * spatial_views + spatial_idx (0 in train mode)
    frames: tuple[int, ...]  # Fast frame indices (clamped: past the end repeats the last frame)
    resize: tuple[int, int]  # (h, w) after the short-side resize
    crop: tuple[int, int, int]  # (y0, x0, size)
    flip: bool
    audio_start: int  # first sample of the log-mel window (the first frame's timestamp)
    audio_shifted_start: int = -1  # train mode with hard negatives


def frame_count(row: Row) -> int:
    return max(1, int(round(row.duration * row.fps)))


def resized_size(h: int, w: int, short: int) -> tuple[int, int]:
    if h <= w:
        return short, max(short, int(round(w * short / h)))
    return max(short, int(round(h * short / w))), short


def _frames(start: int, g: ClipGeometry, n: int) -> tuple[int, ...]:
    """Fast frame indices from `start`; outside the file the first / last frame repeats."""
    return tuple(max(0, min(start + k * g.fast_stride, n - 1)) for k in range(g.fast_frames))


def keyframe_start(row: Row, g: ClipGeometry) -> int | None:
    """First frame of the clip centred on the row's keyframe (AVA: the keyframe is the clip's
    middle frame); None for rows without one. It may lie before the file's start (see `_frames`)."""
    if row.keyframe < 0:
        return None
    return int(round(row.keyframe * row.fps)) - g.span // 2


def _audio_start(start_frame: int, fps: float, sr: int) -> int:
    return int(round(start_frame / fps * sr))


def train_spec(cfg: Config, g: ClipGeometry, row: Row, index: int, hw: tuple[int, int], *, epoch: int,
               with_shifted_audio: bool = False) -> ClipSpec:
    rng = np.random.default_rng([cfg.train.seed, epoch, index, 7])
    n = frame_count(row)
    start = int(rng.integers(0, max(n - g.span, 0) + 1))
    centred = keyframe_start(row, g)
    start = start if centred is None else centred
    lo, hi = cfg.data.short_side_range
    short = int(rng.integers(lo, hi + 1))
    rh, rw = resized_size(hw[0], hw[1], short)
    c = cfg.data.crop_size
    if min(rh, rw) < c:
        rh, rw = resized_size(hw[0], hw[1], c)
    y0 = int(rng.integers(0, rh - c + 1))
    x0 = int(rng.integers(0, rw - c + 1))
    flip = bool(cfg.data.flip and rng.random() < 0.5)
    a0 = _audio_start(start, row.fps, g.sample_rate)
    shifted = -1
    if with_shifted_audio:
        shifted = shifted_start(rng, a0, row.duration, g, cfg.data.hard_negative_min_shift_s)
    return ClipSpec(index, 0, _frames(start, g, n), (rh, rw), (y0, x0, c), flip, a0, shifted)


def shifted_start(rng: np.random.Generator, a0: int, duration: float, g: ClipGeometry, min_shift_s: float) -> int:
    """A window start at least `min_shift_s` away from a0: either direction where the whole
    window still lies inside the file, else the direction with more room (the window then
    runs into silence padding, it is never closer than the minimum shift)."""
    sr = g.sample_rate
    d = int(round((min_shift_s + rng.uniform(0.0, 0.5)) * sr))
    last = max(int(duration * sr) - g.audio_samples, 0)
    options = [s for s in (a0 + d, a0 - d) if 0 <= s <= last]
    if not options:  # file too short for an inside window: the window runs into padding
        options = [s for s in (a0 + d, a0 - d) if s >= 0]
    return int(options[int(rng.integers(0, len(options)))])


def test_specs(cfg: Config, g: ClipGeometry, row: Row, index: int, hw: tuple[int, int]) -> list[ClipSpec]:
    """K uniform temporal clips x J spatial crops (3: both ends + centre of the longer side); rows
    with a keyframe have one temporal position, centred on it (detection configs ask for K = 1)."""
    k_views, j_views = cfg.eval.temporal_views, cfg.eval.spatial_views
    n = frame_count(row)
    c = cfg.data.test_crop_size
    rh, rw = resized_size(hw[0], hw[1], c)
    out = []
    centred = keyframe_start(row, g)
    for k in range(k_views):
        start = int(round(k * max(n - g.span, 0) / (k_views - 1))) if k_views > 1 else max(n - g.span, 0) // 2
        start = start if centred is None else centred
        for j in range(j_views):
            y0, x0 = crop_position(rh, rw, c, j, j_views)
            out.append(ClipSpec(index, k * j_views + j, _frames(start, g, n), (rh, rw), (y0, x0, c), False,
                                _audio_start(start, row.fps, g.sample_rate)))
    return out


def crop_position(h: int, w: int, c: int, j: int, views: int) -> tuple[int, int]:
    cy, cx = (h - c) // 2, (w - c) // 2
    if views == 1:
        return cy, cx
    pos = int(round(j * (max(h, w) - c) / (views - 1)))
    return (pos, cx) if h > w else (cy, pos)


def shard_indices(n: int, mode: str, *, seed: int, epoch: int, shard_id: int, num_shards: int) -> list[int]:
    """Rows this shard reads. Test: rows shard_id, shard_id + num_shards, ... (each once overall).
    Train: a per-epoch permutation dealt round-robin, cut to an equal count per shard (DDP steps)."""
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id {shard_id} is outside 0..{num_shards - 1}")
    if mode == "test":
        return list(range(shard_id, n, num_shards))
    perm = np.random.default_rng([seed, epoch, 11]).permutation(n)
    per = n // num_shards if num_shards > 1 else n
    return [int(i) for i in perm[shard_id::num_shards][:per]]
