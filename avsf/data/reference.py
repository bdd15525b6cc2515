"""Reference loader: a torch Dataset over PyAV (video) + soundfile/torchaudio (audio).

Same sampling (avsf.data.sampling) and the same transforms as the DALI pipeline; used to
check DALI and on machines without it.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from avsf.data import audio as A
from avsf.data.manifest import Row
from avsf.data.sampling import ClipGeometry, ClipSpec

log = logging.getLogger("avsf.data")


def probe_size(path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as c:
        if not c.streams.video:
            raise ValueError(f"{path}: no video stream")
        cc = c.streams.video[0].codec_context
        return cc.height, cc.width


def decode_frames(path, indices: tuple[int, ...]) -> np.ndarray:
    """(len(indices), H, W, 3) uint8 RGB frames by presentation index; past the end: last frame."""
    import av

    want = sorted(set(indices))
    last_needed = want[-1]
    got: dict[int, np.ndarray] = {}
    last = None
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_count = 1  # equal-thread comparisons: parallelism is across clips
        for i, frame in enumerate(c.decode(stream)):
            if i in want:
                got[i] = frame.to_ndarray(format="rgb24")
            last = (i, frame)
            if i >= last_needed:
                break
    if last is None:
        raise ValueError(f"{path}: no decodable video frames")
    li, lf = last
    if li not in got:
        got[li] = lf.to_ndarray(format="rgb24")
    return np.stack([got[i] if i in got else got[li] for i in indices])


def video_transform(frames: np.ndarray, spec: ClipSpec, mean, std) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float (3, F, c, c): resize (bilinear, antialiased), crop, flip, normalise."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # F, 3, H, W
    if tuple(x.shape[-2:]) != tuple(spec.resize):
        x = F.interpolate(x, size=spec.resize, mode="bilinear", align_corners=False, antialias=True)
        x = x.round().clamp(0, 255)  # DALI resizes uint8 -> uint8
    y0, x0, c = spec.crop
    x = x[:, :, y0:y0 + c, x0:x0 + c]
    if spec.flip:
        x = x.flip(-1)
    m = torch.tensor(mean).view(1, 3, 1, 1) * 255
    s = torch.tensor(std).view(1, 3, 1, 1) * 255
    return ((x - m) / s).permute(1, 0, 2, 3).contiguous()


class ClipDataset(torch.utils.data.Dataset):
    """Items are ClipSpecs; each yields a sample dict, or None when the clip cannot be decoded."""

    def __init__(self, rows: list[Row], specs: list[ClipSpec], g: ClipGeometry, cfg, *, mode: str,
                 with_shifted_audio: bool = False):
        self.rows, self.specs, self.g, self.cfg = rows, specs, g, cfg
        self.mode, self.with_shifted_audio = mode, with_shifted_audio

    def __len__(self):
        return len(self.specs)

    def __getitem__(self, i):
        spec = self.specs[i]
        row = self.rows[spec.row]
        try:
            return make_sample(row, spec, self.g, self.cfg, self.mode, self.with_shifted_audio)
        except Exception as e:  # a bad clip is skipped and counted, never fatal here
            log.warning("skipping %s (row %d): %s", row.path, spec.row, e)
            return None


def make_sample(row: Row, spec: ClipSpec, g: ClipGeometry, cfg, mode: str, with_shifted_audio: bool) -> dict:
    d = cfg.data
    fast = video_transform(decode_frames(row.path, spec.frames), spec, d.pixel_mean, d.pixel_std)
    out = {"fast": fast, "slow": fast[:, :: g.alpha_f].contiguous()}
    samples = A.read_audio(row.audio, g.sample_rate) if row.audio is not None else np.zeros(0, np.float32)

    def mel(start):
        w = A.window(samples, start, g.audio_samples)
        return A.logmel(w, n_fft=g.n_fft, hop=g.hop, mel_bins=g.mel_bins, sample_rate=g.sample_rate,
                        mean=d.logmel_mean, std=d.logmel_std).unsqueeze(0)

    out["audio"] = mel(spec.audio_start)
    if with_shifted_audio and mode == "train":
        out["audio_shifted"] = mel(spec.audio_shifted_start)
    out["_row"] = torch.tensor(spec.row, dtype=torch.int64)
    out["_view"] = torch.tensor(spec.view, dtype=torch.int64)
    return out


def label_fields(row: Row, cfg, num_classes: int = 0) -> dict:
    if row.verb >= 0 and row.noun >= 0:
        return {"verb": torch.tensor(row.verb), "noun": torch.tensor(row.noun)}
    if isinstance(row.label, list):
        n = max(num_classes, max(row.label, default=-1) + 1)
        y = torch.zeros(n, dtype=torch.float32)
        y[row.label] = 1.0
        return {"label": y}
    return {"label": torch.tensor(row.label, dtype=torch.int64)}


def collate(items: list) -> dict:
    ok = [x for x in items if x is not None]
    batch = {k: torch.stack([x[k] for x in ok]) for k in ok[0]} if ok else {}
    batch["_failed"] = len(items) - len(ok)
    return batch
