"""Loader throughput (`avsf data bench`): clips/s and decoded frames/s of one loader.

The loader is timed after one warm-up batch (pipeline build, worker start). `step_ms` makes the
consumer sleep that long after every batch, standing in for a training step that does not use
the CPU (a GPU step): a loader that overlaps decoding with the step then delivers
max(decode, step) per batch instead of decode + step. `wait_share` is the share of the timed wall
time spent waiting for the next batch (the "data time" of PySlowFast's logs).
"""

from __future__ import annotations

import time


def bench_loader(cfg, mode: str = "train", batches: int = 20, *, step_ms: float = 0.0) -> dict:
    from avsf.data import build_loader

    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    if step_ms < 0:
        raise ValueError(f"step_ms must be >= 0, got {step_ms}")
    loader = build_loader(cfg, "train" if mode == "train" else "test", mode)
    it = iter(loader)
    first = next(it)  # warm-up: pipeline build / worker start
    clips = frames = n = 0
    wait = 0.0
    t0 = time.perf_counter()
    while n < batches:
        t = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        wait += time.perf_counter() - t
        clips += batch["fast"].shape[0]
        frames += batch["fast"].shape[0] * batch["fast"].shape[2]
        n += 1
        if step_ms:
            time.sleep(step_ms / 1000)
    dt = time.perf_counter() - t0
    del it  # stops the loader's pipeline / worker processes now
    return {"loader": loader.backend, "device": loader.device, "threads": cfg.data.num_threads, "mode": mode,
            "batch_size": first["fast"].shape[0], "batches": n, "clips": clips, "seconds": round(dt, 3),
            "clips_per_s": round(clips / dt, 1) if dt > 0 else 0.0,
            "frames_per_s": round(frames / dt, 1) if dt > 0 else 0.0,
            "step_ms": step_ms, "wait_share": round(wait / dt, 3) if dt > 0 else 0.0,
            "failed": loader.failed, "cpu_fallback_clips": getattr(loader, "cpu_fallback_clips", 0)}
