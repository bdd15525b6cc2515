"""Precise BatchNorm statistics before each evaluation (`train.precise_bn_batches`).

The authors' recipe recomputes "precise BN statistics over 200 batches" (PySlowFast's
BN.USE_PRECISE_STATS / NUM_BATCHES_PRECISE; ../shared/paper/REFERENCE_FACTS.md). During training
a BN layer's running mean and variance are an exponential average (momentum 0.1) of roughly the
last ten batches, taken while the weights moved; `recompute` replaces them by the true average
over N training batches with the weights fixed (fvcore.nn.precise_bn.update_bn_stats), averaged
over the processes under torchrun.

What it changes, and what it leaves alone:
- Only the running statistics of BN layers in training mode: frozen BN (`train.frozen_bn`, the
  linear protocol's `train.freeze`) is left as it is, because `set_train_mode` decides which
  layers train, as in a training step.
- Nothing training reads: the forwards run under `torch.random.fork_rng` with a generator
  seeded by (seed, epoch), so DropPathway's draws here (the model is in training mode, as in the
  authors' code) neither consume nor depend on the training stream, and every other buffer
  (DropPathway's running averages, BN's batch counters) is put back. A run trains to the same
  weights with and without it (tests/test_train_precise_bn.py).
- The statistics are written into the existing buffers, so the optimizer, DDP and the
  checkpoint keep their references.

The batches are the training split with its training augmentation and each clip's own audio
(no AVS negatives): the inputs evaluation sees, at the statistics of the training data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from avsf import distributed as D
from avsf.eval import inference as I
from avsf.train.setup import bn_modules


def training_bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BN layers whose statistics a training step would update (training mode, tracking)."""
    return [m for m in bn_modules(model) if m.training and m.track_running_stats]


def recompute(model: nn.Module, batches: Iterable[dict[str, Any]], count: int, *, info: D.DistInfo,
              precision: str, channels_last: bool, seed: int) -> int:
    """Set the running statistics of `model`'s training-mode BN layers to their average over the
    first `count` of `batches` (which must hold that many); returns the number of layers set.
    `model` must be in the mode a training step uses (`set_train_mode`)."""
    from fvcore.nn.precise_bn import update_bn_stats

    layers = training_bn_layers(model)
    if not layers or count <= 0:
        return 0
    stats = [(m.running_mean, m.running_var) for m in layers]
    recomputed = {id(t) for pair in stats for t in pair}
    others = [(b, b.clone()) for b in model.buffers() if id(b) not in recomputed]

    def inputs() -> Iterator[dict[str, Any]]:
        for batch in itertools.islice(batches, count):
            yield I.to_device(batch, info.device, channels_last)

    devices = [info.device.index or 0] if info.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), I.autocast_context(info.device, precision):
        torch.manual_seed(seed)
        update_bn_stats(model, inputs(), num_iters=count)
    # fvcore assigns new tensors; the old buffers take their values (references stay valid)
    for m, (mean, var) in zip(layers, stats):
        mean.copy_(m.running_mean)
        var.copy_(m.running_var)
        m.running_mean, m.running_var = mean, var
    for buf, saved in others:
        buf.copy_(saved)
    if info.active:  # each process saw its own shard: the average, as PySlowFast does
        for pair in stats:
            for t in pair:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                t.div_(info.world)
    return len(layers)
