"""The DALI pipeline: video decode, resize, crop, flip, normalise; audio decode + log-mel.

Python picks what to read (avsf.data.sampling: frame indices, crop box, flip, audio window);
DALI does the heavy work: ``fn.decoders.video(frames=...)`` (CPU, or "mixed" = NVDEC on a GPU),
``fn.resize``, ``fn.slice``, ``fn.crop_mirror_normalize``; ``fn.decoders.audio`` on the FLAC
sidecar, ``fn.slice`` (silence-padded), ``fn.spectrogram`` + ``fn.mel_filter_bank`` + log.

Two ways of running it, both overlapping decoding with the training step:

- GPU (`DaliStream`): one pipeline in the training process pulls its inputs from a Python callback
  and runs asynchronously `PREFETCH` batches ahead of the consumer (DALI's dynamic executor); the
  files of the batches after those are read by a small thread pool meanwhile.
- CPU (`CpuDecoder` in `CpuBatches`, avsf.data.decode): `num_threads` DataLoader worker processes,
  each running a one-thread pipeline on whole batches, prefetching as the reference loader's
  workers do. Why processes: DALI runs the CPU operators of a pipeline one after another (its
  OperatorConcurrency note), so one multi-threaded pipeline kept about one core busy on this
  2-core VM while the reference loader's worker processes took two; in processes DALI keeps its
  lower CPU cost per clip (about 5.5 ms against 10 ms here) and gets the same share of the machine.

A batch that raises is re-run clip by clip (the dynamic executor ties an error to its own
iteration, so batches in flight behind it are unaffected). Routing (`decode_route`): on a GPU, a
video NVDEC cannot decode (below its 128x128 minimum, above its maximum, or a codec it lacks)
goes to DALI's CPU decoder instead, and a codec no DALI backend decodes goes to PyAV.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from avsf.data import audio as A
from avsf.data.sampling import ClipGeometry, ClipSpec

log = logging.getLogger("avsf.data")

PREFETCH = 2  # batches DALI decodes ahead of the consumer
READ_AHEAD = PREFETCH + 1  # batches whose files are being read ahead of DALI

# fn.decoders.video's documentation (DALI 2.4): VP8, VP9 and MJPEG on both backends; AV1,
# MPEG-4, H.264 and HEVC on the mixed (NVDEC) backend only. Names as FFmpeg/PyAV spell them.
DALI_CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
NVDEC_CODECS = DALI_CPU_CODECS | {"av1", "mpeg4", "h264", "hevc"}
# NVDEC refuses frames under 128x128 ("Video is too small in at least one dimension. Provided:
# 96x80 vs supported:128x128", measured on an H100); its largest frame per codec is from
# NVIDIA's NVDEC support matrix (Turing and later).
NVDEC_MIN_SIDE = 128
NVDEC_MAX_SIDE = {"h264": 4096, "vp8": 4096, "mpeg4": 2032, "mjpeg": 16384}
NVDEC_MAX_SIDE_DEFAULT = 8192  # hevc, vp9, av1

ROUTES = ("gpu", "cpu", "pyav")


@dataclass(frozen=True)
class Route:
    """Where one video is decoded and, when not where asked, why."""

    name: str  # "gpu" (NVDEC) | "cpu" (DALI's CPU decoder) | "pyav" (the reference decoder)
    reason: str = ""


def decode_route(height: int, width: int, codec: str, device: str) -> Route:
    """The decoder for one video. `height`/`width` 0 and `codec` "" mean unknown (then the GPU
    or DALI's CPU decoder is tried, and a clip it refuses falls back at run time).
    `device`: "gpu" or "cpu" (the loader's data.device after "auto" is resolved)."""
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")
    codec = (codec or "").lower()
    cpu = Route("cpu") if not codec or codec in DALI_CPU_CODECS else Route(
        "pyav", f"codec {codec} is not decoded by DALI's CPU decoder")
    if device == "cpu":
        return cpu
    why = ""
    if codec and codec not in NVDEC_CODECS:
        why = f"codec {codec} is not decoded by NVDEC"
    elif height and width and min(height, width) < NVDEC_MIN_SIDE:
        why = f"{width}x{height} is below NVDEC's {NVDEC_MIN_SIDE}x{NVDEC_MIN_SIDE} minimum"
    elif height and width and max(height, width) > NVDEC_MAX_SIDE.get(codec, NVDEC_MAX_SIDE_DEFAULT):
        why = f"{width}x{height} is above NVDEC's maximum for {codec or 'this codec'}"
    if not why:
        return Route("gpu")
    return Route(cpu.name, f"{why}; {cpu.reason}" if cpu.reason else why)


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


# ----------------------------------------------------------------------------- the graph
INPUTS = ("video", "frames", "rsize", "anchor", "cshape", "flip", "audio", "astart", "ashape", "ashift")


def input_dtypes():
    from nvidia.dali import types

    return [types.UINT8, types.INT32, types.FLOAT, types.INT32, types.INT32, types.INT32, types.UINT8,
            types.INT32, types.INT32, types.INT32]


def build_pipeline(g: ClipGeometry, data_cfg, *, batch_size: int, num_threads: int, gpu: bool,
                   with_shifted_audio: bool, source, seed: int = 0, prefetch: int = PREFETCH):
    """An asynchronous pipeline (dynamic executor, `prefetch` batches ahead) whose inputs come from
    `source()`: a tuple of per-sample lists in INPUTS order (the last one only with shifted audio)."""
    from nvidia.dali import fn, pipeline_def, types
    import nvidia.dali.math as dmath

    mean = [m * 255 for m in data_cfg.pixel_mean]
    std = [s * 255 for s in data_cfg.pixel_std]
    n_in = len(INPUTS) - (0 if with_shifted_audio else 1)

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=0 if gpu else None, seed=seed,
                  exec_dynamic=True, prefetch_queue_depth=prefetch)
    def pipe():
        ins = fn.external_source(source=source, num_outputs=n_in, dtype=input_dtypes()[:n_in], batch=True)
        enc, frames, rsize, anchor, cshape, flip, abytes, astart, ashape = ins[:9]
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
            outs.append(logmel(ins[9]))
        return tuple(outs)

    p = pipe()
    p.build()
    return p


@dataclass
class Item:
    """One clip to decode: its position in the batch, its spec, and its files."""

    pos: int
    spec: ClipSpec
    video: object  # path
    audio: object  # path | None


def columns(g: ClipGeometry, items: list[Item], data: list[tuple], with_shifted_audio: bool) -> tuple:
    """Per-sample input lists in INPUTS order; `data` holds (video bytes, audio bytes) per item."""
    specs = [it.spec for it in items]
    cols = [
        [v for v, _ in data],
        [np.asarray(s.frames, np.int32) for s in specs],
        [np.asarray(s.resize, np.float32) for s in specs],
        [np.asarray(s.crop[:2], np.int32) for s in specs],
        [np.asarray([s.crop[2]] * 2, np.int32) for s in specs],
        [np.asarray(int(s.flip), np.int32) for s in specs],
        [a for _, a in data],
        [np.asarray([s.audio_start], np.int32) for s in specs],
        [np.asarray([g.audio_samples], np.int32) for _ in specs],
    ]
    if with_shifted_audio:
        cols.append([np.asarray([s.audio_shifted_start], np.int32) for s in specs])
    return tuple(cols)


def read_bytes(path) -> np.ndarray:
    """A file's bytes as uint8 (what DALI's decoders take)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise OSError(f"{path} is empty")
    return data


def _read_item(it: Item) -> tuple:
    if it.audio is None:
        raise FileNotFoundError(f"{it.video}: no audio sidecar in the manifest")
    return read_bytes(it.video), read_bytes(it.audio)


def to_torch(tl, pin: bool = False) -> torch.Tensor:
    """A DALI TensorList (uniform shapes) -> a torch tensor on the same device (CPU: pinned
    when `pin`, so the trainer's host-to-device copy can run asynchronously)."""
    if type(tl).__name__.endswith("GPU"):
        from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type

        t = tl.as_tensor()
        out = torch.empty(t.shape(), dtype=to_torch_type[t.dtype], device="cuda")
        feed_ndarray(t, out, cuda_stream=torch.cuda.current_stream())
        return out
    arr = torch.from_numpy(tl.as_array())
    return arr.pin_memory() if pin else arr


# ----------------------------------------------------------------------------- streaming
@dataclass
class PartResult:
    """What a stream made of one part (one batch's clips for one route)."""

    part: int
    kept: list[Item] = field(default_factory=list)
    outs: list[torch.Tensor] | None = None  # [video, audio, (shifted)] for `kept`, in order
    failed: list[tuple[Item, Exception]] = field(default_factory=list)  # decode failed on this route
    unreadable: list[tuple[Item, Exception]] = field(default_factory=list)  # file missing / empty


class _Source:
    """The pipeline's input callback: hands DALI the parts in order, from `start`; parts whose
    files are all unreadable are recorded and skipped (DALI never sees an empty batch)."""

    def __init__(self, stream: "DaliStream", start: int):
        self.stream, self.next = stream, start
        self.handed = 0  # parts given to DALI (tests: the pipeline runs ahead of the consumer)

    def __call__(self):
        s = self.stream
        while self.next < len(s.parts):
            k = self.next
            self.next += 1
            s.read_ahead(self.next)
            items, data, bad = s.take(k)
            s.fed.append(PartResult(k, kept=items, unreadable=bad))
            if items:
                self.handed += 1
                return columns(s.g, items, data, s.with_shifted_audio)
        raise StopIteration


class DaliStream:
    """Runs `parts` (lists of Items) through one asynchronous pipeline; iterating yields one
    PartResult per part, in order. A part that raises is re-run clip by clip (each clip its own
    iteration), so one broken file costs only itself; if every clip of it then decodes, the
    error was the pipeline's and a fresh pipeline takes over from the next part."""

    def __init__(self, parts: list[list[Item]], g: ClipGeometry, data_cfg, *, batch_size: int, num_threads: int,
                 gpu: bool, with_shifted_audio: bool, pin: bool = False, pool: ThreadPoolExecutor | None = None):
        self.parts, self.g, self.data_cfg = parts, g, data_cfg
        self.kw = dict(batch_size=batch_size, num_threads=num_threads, gpu=gpu, with_shifted_audio=with_shifted_audio)
        self.with_shifted_audio, self.pin = with_shifted_audio, pin
        self.pool = pool
        self.futures: dict[int, list] = {}
        self.fed: deque[PartResult] = deque()
        self.source: _Source | None = None
        self.pipe = None

    # -- reading
    def read_ahead(self, start: int) -> None:
        if self.pool is None:
            return
        for k in range(start, min(start + READ_AHEAD, len(self.parts))):
            if k not in self.futures:
                self.futures[k] = [self.pool.submit(_read_item, it) for it in self.parts[k]]

    def take(self, k: int) -> tuple[list[Item], list[tuple], list[tuple[Item, Exception]]]:
        futs = self.futures.pop(k, None)
        items, data, bad = [], [], []
        for j, it in enumerate(self.parts[k]):
            try:
                data.append(futs[j].result() if futs else _read_item(it))
                items.append(it)
            except OSError as e:
                bad.append((it, e))
        return items, data, bad

    # -- running
    def _open(self, start: int) -> None:
        self.close()
        self.source = _Source(self, start)
        self.pipe = build_pipeline(self.g, self.data_cfg, source=self.source, **self.kw)

    def close(self) -> None:
        """Destroy the pipeline now (its threads stop): the pipeline, its source and this stream
        form a reference cycle that would otherwise live until a garbage collection, and a
        DataLoader worker forked meanwhile crashes when it collects the inherited pipeline. The
        Python object may still wait for a collection (DALI's graph holds cycles), so the native
        pipeline is shut down here explicitly (DALI's own __del__ does the same)."""
        if self.pipe is not None:
            self.pipe._shutdown()
        self.pipe = self.source = None
        self.fed.clear()
        for futs in self.futures.values():
            for f in futs:
                f.cancel()
        self.futures.clear()

    def _runs(self):
        """(PartResult, its outputs or the exception DALI raised) per part in order; None for a
        part whose files were all unreadable. Reads `self.pipe` anew each time: `_open` may replace it."""
        while True:
            try:
                outs, err = self.pipe.run(), None
            except StopIteration:
                break
            except Exception as e:  # a file DALI cannot decode; the caller finds out which
                outs, err = None, e
            while self.fed and not self.fed[0].kept:
                yield self.fed.popleft(), None
            yield self.fed.popleft(), err if err is not None else [to_torch(o, self.pin) for o in outs]
        while self.fed:
            yield self.fed.popleft(), None

    def __iter__(self):
        if not self.parts:
            return
        self._open(0)
        try:
            for res, got in self._runs():
                if not isinstance(got, Exception):
                    res.outs = got
                    yield res
                    continue
                yield self._clip_by_clip(res, got)
                if not res.failed:  # every clip decodes alone: the pipeline erred; a fresh one goes on
                    self._open(res.part + 1)
        finally:
            self.close()

    def _clip_by_clip(self, res: PartResult, err: Exception) -> PartResult:
        log.info("DALI batch failed (%s); retrying its %d clips one by one", str(err).splitlines()[0], len(res.kept))
        kept, outs = [], []
        for it, got in decode_each(res.kept, self.g, self.data_cfg, num_threads=self.kw["num_threads"],
                                   gpu=self.kw["gpu"], with_shifted_audio=self.with_shifted_audio, pin=self.pin):
            if isinstance(got, Exception):
                res.failed.append((it, got))
            else:
                kept.append(it)
                outs.append(got)
        res.kept = kept
        res.outs = [torch.cat([o[k] for o in outs]) for k in range(len(outs[0]))] if outs else None
        return res


def decode_each(items: list[Item], g: ClipGeometry, data_cfg, *, num_threads: int, gpu: bool,
                with_shifted_audio: bool, pin: bool = False):
    """Each clip on its own (one pipeline, one clip per iteration): yields (item, [video, audio,
    (shifted)] tensors of batch size 1) or (item, the exception that stopped it)."""
    stream = DaliStream([[it] for it in items], g, data_cfg, batch_size=1, num_threads=num_threads, gpu=gpu,
                        with_shifted_audio=with_shifted_audio, pin=pin)
    stream._open(0)
    try:
        for res, got in stream._runs():
            yield res.unreadable[0] if got is None else (res.kept[0], got)
    finally:
        stream.close()
