"""The DALI pipeline: video decode, resize, crop, flip, normalise; audio decode + log-mel.

Python picks what to read (avsf.data.sampling: frame indices, crop box, flip, audio window)
and feeds it through external sources; DALI does the heavy work on `num_threads` threads:
``fn.decoders.video(frames=...)`` (CPU, or "mixed" = NVDEC on a GPU), ``fn.resize``,
``fn.slice``, ``fn.crop_mirror_normalize``; ``fn.decoders.audio`` on the FLAC sidecar,
``fn.slice`` (silence-padded), ``fn.spectrogram`` + ``fn.mel_filter_bank`` + log.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import torch

from avsf.data import audio as A
from avsf.data.sampling import ClipGeometry

log = logging.getLogger("avsf.data")


@lru_cache(maxsize=1)
def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
        import nvidia.dali.fn  # noqa: F401
    except Exception:
        return False
    return True


@lru_cache(maxsize=1)
def dali_gpu_available() -> bool:
    """CUDA present and DALI's GPU operators usable (a tiny mixed pipeline builds and runs)."""
    if not (dali_available() and torch.cuda.is_available()):
        return False
    try:
        from nvidia.dali import fn, pipeline_def, types

        @pipeline_def(batch_size=1, num_threads=1, device_id=0)
        def probe():
            return fn.constant(idata=[1], dtype=types.INT32).gpu()

        p = probe()
        p.build()
        p.run()
        return True
    except Exception as e:  # a CPU-only build, a driver mismatch, ...
        log.info("DALI GPU operators not usable (%s); decoding on the CPU", e)
        return False


def build_pipeline(g: ClipGeometry, data_cfg, *, batch_size: int, num_threads: int, gpu: bool,
                   with_shifted_audio: bool, seed: int = 0):
    from nvidia.dali import fn, pipeline_def, types
    import nvidia.dali.math as dmath

    mean = [m * 255 for m in data_cfg.pixel_mean]
    std = [s * 255 for s in data_cfg.pixel_std]

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=0 if gpu else None, seed=seed,
                  exec_async=False, exec_pipelined=False, prefetch_queue_depth=1)
    def pipe():
        enc = fn.external_source(name="video", dtype=types.UINT8)
        frames = fn.external_source(name="frames", dtype=types.INT32)
        rsize = fn.external_source(name="rsize", dtype=types.FLOAT)  # (h, w)
        anchor = fn.external_source(name="anchor", dtype=types.INT32)  # (y0, x0)
        cshape = fn.external_source(name="cshape", dtype=types.INT32)  # (c, c)
        flip = fn.external_source(name="flip", dtype=types.INT32)
        abytes = fn.external_source(name="audio", dtype=types.UINT8)
        astart = fn.external_source(name="astart", dtype=types.INT32)
        ashape = fn.external_source(name="ashape", dtype=types.INT32)

        v = fn.decoders.video(enc, device="mixed" if gpu else "cpu", frames=frames)
        v = fn.resize(v, size=rsize, interp_type=types.INTERP_LINEAR, antialias=True)
        v = fn.slice(v, anchor, cshape, axis_names="HW")
        v = fn.crop_mirror_normalize(v, mirror=flip, mean=mean, std=std, output_layout="CFHW", dtype=types.FLOAT)

        a, _ = fn.decoders.audio(abytes, sample_rate=g.sample_rate, downmix=True, dtype=types.FLOAT)
        if gpu:
            a = a.gpu()

        def logmel(start):
            w = fn.slice(a, start, ashape, axes=[0], out_of_bounds_policy="pad", fill_values=0.0)
            s = fn.spectrogram(w, nfft=g.n_fft, window_length=g.n_fft, window_step=g.hop, center_windows=False,
                               power=2, window_fn=A.hann(g.n_fft).tolist(), layout="ft")
            m = fn.mel_filter_bank(s, sample_rate=g.sample_rate, nfilter=g.mel_bins, mel_formula="htk",
                                   normalize=False, freq_low=0.0, freq_high=g.sample_rate / 2)
            x = (dmath.log(m + A.LOG_EPS) - data_cfg.logmel_mean) / data_cfg.logmel_std
            return fn.transpose(x, perm=[1, 0])  # (time, mel)

        outs = [v, logmel(astart)]
        if with_shifted_audio:
            shifted = fn.external_source(name="ashift", dtype=types.INT32)
            outs.append(logmel(shifted))
        return tuple(outs)

    p = pipe()
    p.build()
    return p


def feed(p, g: ClipGeometry, items: list[tuple], with_shifted_audio: bool) -> None:
    """items: (spec, video bytes, audio bytes) per sample."""
    p.feed_input("video", [v for _, v, _ in items])
    p.feed_input("frames", [np.asarray(s.frames, np.int32) for s, _, _ in items])
    p.feed_input("rsize", [np.asarray(s.resize, np.float32) for s, _, _ in items])
    p.feed_input("anchor", [np.asarray(s.crop[:2], np.int32) for s, _, _ in items])
    p.feed_input("cshape", [np.asarray([s.crop[2]] * 2, np.int32) for s, _, _ in items])
    p.feed_input("flip", [np.asarray(int(s.flip), np.int32) for s, _, _ in items])
    p.feed_input("audio", [a for _, _, a in items])
    p.feed_input("astart", [np.asarray([s.audio_start], np.int32) for s, _, _ in items])
    p.feed_input("ashape", [np.asarray([g.audio_samples], np.int32) for _ in items])
    if with_shifted_audio:
        p.feed_input("ashift", [np.asarray([s.audio_shifted_start], np.int32) for s, _, _ in items])


def to_torch(tl) -> torch.Tensor:
    """A DALI TensorList (uniform shapes) -> a torch tensor on the same device."""
    if hasattr(tl, "as_cpu") and type(tl).__name__.endswith("GPU"):
        from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type

        t = tl.as_tensor()
        out = torch.empty(t.shape(), dtype=to_torch_type[t.dtype], device="cuda")
        feed_ndarray(t, out, cuda_stream=torch.cuda.current_stream())
        return out
    return torch.from_numpy(tl.as_array())


class DaliRunner:
    """Runs batches of ClipSpecs; a batch that fails is retried one clip at a time, skipping bad clips."""

    def __init__(self, g: ClipGeometry, data_cfg, *, batch_size: int, num_threads: int, gpu: bool,
                 with_shifted_audio: bool):
        self.g, self.data_cfg = g, data_cfg
        self.kw = dict(batch_size=batch_size, num_threads=num_threads, gpu=gpu, with_shifted_audio=with_shifted_audio)
        self.with_shifted_audio = with_shifted_audio
        self.pipe = None

    def _pipe(self):
        if self.pipe is None:
            self.pipe = build_pipeline(self.g, self.data_cfg, **self.kw)
        return self.pipe

    def _run(self, items):
        p = self._pipe()
        feed(p, self.g, items, self.with_shifted_audio)
        outs = p.run()
        return [to_torch(o) for o in outs]

    def run(self, items: list[tuple]) -> tuple[list | None, list[int]]:
        """-> ([video, audio, (shifted)] tensors for the kept items, indices of kept items)."""
        if not items:
            return None, []
        try:
            return self._run(items), list(range(len(items)))
        except Exception as e:
            if len(items) == 1:
                raise
            log.info("DALI batch failed (%s); retrying clip by clip", e)
        self.pipe = None  # a pipeline that raised is not reused
        parts, kept = [], []
        for i, it in enumerate(items):
            try:
                parts.append(self._run([it]))
                kept.append(i)
            except Exception as e:
                self.pipe = None
                log.warning("skipping %s: %s", getattr(it[0], "row", "?"), e)
        if not parts:
            return None, []
        return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))], kept
