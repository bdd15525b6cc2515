"""Data: clips/s and decoded (Fast) frames/s of the DALI pipeline vs the reference loader (PyAV +
torchaudio), equal threads, on the built-in synthetic benchmark (small scale, train mode: the
scale's batch and crops, avsf.config.SCALES); the same with a 100 ms sleep after every batch
standing in for a GPU training step (group `data-small-train-cpu-step100`: a loader that
overlaps decoding with the step delivers max(decode, step) per batch, not their sum); and the
default `small` model's training step in clips/s, so the render can say whether the loader keeps
up (loader clips/s >= training clips/s).

Each round builds a fresh loader (an epoch), pulls one warm-up batch untimed (pipeline build /
worker start), then times BATCHES batches. Peak memory is the main process's (the reference
loader's worker processes are not included; DALI's threads are).
"""

from __future__ import annotations

import contextlib
import time

import pytest
import torch

from avsf.config import build_config
from bench.conftest import PeakMemory, loadavg, stat

THREADS = 2
BATCHES = 8
ROUNDS = 3
STEP_S = 0.1  # the stand-in GPU step of the overlap group


def _cfg(loader: str, device: str = "cpu"):
    return build_config(scale="small", overrides={"data.loader": loader, "data.num_threads": THREADS,
                                                  "data.device": device})


def loader_entry(benchmark, cfg, is_smoke: bool, step_s: float = 0.0):
    """Clips/s of the loader `cfg` describes (data.loader, data.device, data.num_threads);
    `step_s` > 0 sleeps that long after each batch, as a training step would."""
    from avsf.data import build_loader, dataset_info

    dataset_info(cfg)  # generates the synthetic benchmark on first use (minutes, once)
    batches = 2 if is_smoke else BATCHES
    state = {}

    def setup():
        state.pop("it", None)
        loader_ = build_loader(cfg, "train", "train")
        it = iter(loader_)
        next(it)  # warm-up
        state["it"], state["loader"] = it, loader_

    def target():
        clips = frames = 0
        for _ in range(batches):
            fast = next(state["it"])["fast"]
            clips += fast.shape[0]
            frames += fast.shape[0] * fast.shape[2]
            if step_s:
                time.sleep(step_s)
        state["clips"], state["frames"] = clips, frames

    with PeakMemory("cuda" if cfg.data.device == "gpu" else "cpu") as mem:
        benchmark.pedantic(target, setup=setup, rounds=1 if is_smoke else ROUNDS, iterations=1)
    state.pop("it", None)
    median = stat(benchmark, "median")
    benchmark.extra_info.update({
        "impl": f"{cfg.data.loader}-{state['loader'].device}", "loader": cfg.data.loader, "device": state["loader"].device,
        "threads": cfg.data.num_threads, "batch_size": cfg.train.batch_size, "batches_per_round": batches,
        "clips_per_s": round(state["clips"] / median, 2), "frames_per_s": round(state["frames"] / median, 1),
        "step_ms": step_s * 1000, "scale": cfg.data.synth_scale, "mode": "train",
        "frames_per_clip": cfg.model.fast_frames, "crop": cfg.data.crop_size,
        "loadavg_end": loadavg(), **mem.info(),
    })


@pytest.mark.parametrize("step_s", [0.0, STEP_S], ids=["alone", "step100"])
@pytest.mark.parametrize("loader", ["dali", "reference"])
def test_loader_cpu(benchmark, loader, step_s, is_smoke):
    if loader == "dali":
        pytest.importorskip("nvidia.dali", reason="DALI is not installed")
    benchmark.group = "data-small-train-cpu" + ("-step100" if step_s else "")
    benchmark.name = f"test_loader_cpu[{loader}]" if not step_s else f"test_loader_cpu_overlap[{loader}]"
    loader_entry(benchmark, _cfg(loader, "cpu"), is_smoke, step_s=step_s)


def training_step(model, batch: dict, cfg, autocast=contextlib.nullcontext):
    """One step as the trainer takes it: task loss plus the AVS loss when the model has AVS heads
    (the batch carries `audio_negative`), SGD with momentum and weight decay."""
    from avsf.train.losses import avs_loss, task_loss

    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step():
        with autocast():
            out = model(batch)
            loss = task_loss(out, batch, cfg)
            extra = avs_loss(out["sync"], cfg) if "sync" in out else None
            if extra is not None:
                loss = loss + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def test_small_training_step_default(benchmark, gemm, is_smoke):
    """The default `small` AVSlowFast (as `avsf train --scale small` builds it) on loader-shaped
    batches, with an easy AVS negative (another clip's audio) as the trainer adds one."""
    from avsf.data import dataset_info
    from avsf.model import build_model

    cfg = build_config(scale="small")
    cfg.model.num_classes = dataset_info(cfg).num_classes
    m = cfg.model
    b, c = cfg.train.batch_size, cfg.data.crop_size
    g = torch.Generator().manual_seed(0)
    batch = {"slow": torch.randn(b, 3, m.num_frames, c, c, generator=g),
             "fast": torch.randn(b, 3, m.fast_frames, c, c, generator=g),
             "audio": torch.randn(b, 1, m.audio_frames, m.mel_bins, generator=g),
             "label": torch.randint(0, m.num_classes, (b,), generator=g)}
    batch["audio_negative"] = batch["audio"].roll(1, dims=0)
    torch.manual_seed(0)
    model = build_model(m).train()
    step = training_step(model, batch, cfg)
    benchmark.group = "data-small-train-cpu"
    with PeakMemory() as mem:
        benchmark.pedantic(step, rounds=1 if is_smoke else 5, warmup_rounds=0 if is_smoke else 1, iterations=1)
    benchmark.extra_info.update({
        "impl": "avsf-small-train-step", "batch_size": b, "clips_per_s": round(b / stat(benchmark, "median"), 2),
        "scale": "small", "mode": "train", "threads": torch.get_num_threads(), "loadavg_end": loadavg(), **mem.info(),
    })
