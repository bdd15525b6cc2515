"""Learning-rate schedule of A.4: linear warm-up, then half-period cosine.

`lr_at(cfg.train, epoch)` takes a *fractional* epoch (``epoch + i / iters_per_epoch``) so the
rate changes every iteration, as in the paper ("the learning rate at the n-th iteration").
"""

from __future__ import annotations

import math

from avsf.config import TrainConfig


def cosine_lr(base_lr: float, n: float, nmax: float) -> float:
    """eta * 0.5 * (cos(pi * n / nmax) + 1), the half-period cosine of A.4."""
    if nmax <= 0:
        return base_lr
    n = min(max(n, 0.0), nmax)
    return base_lr * 0.5 * (math.cos(math.pi * n / nmax) + 1.0)


def lr_at(train: TrainConfig, epoch: float) -> float:
    """Learning rate at fractional epoch `epoch` in [0, train.epochs].

    Warm-up: linear from `warmup_start_lr` to `base_lr` over `warmup_epochs`; then the
    half-period cosine over the remaining epochs (n counted from the end of the warm-up,
    nmax = epochs - warmup_epochs), so the two pieces meet at `base_lr` and the rate
    reaches 0 at `train.epochs`.
    """
    total = float(train.epochs)
    warm = min(max(float(train.warmup_epochs), 0.0), total)
    if epoch < warm:
        return train.warmup_start_lr + (train.base_lr - train.warmup_start_lr) * (epoch / warm)
    if train.lr_policy == "steps":  # A.5 / A.6: x lr_decay at each listed epoch
        return train.base_lr * train.lr_decay ** sum(1 for s in train.lr_steps if epoch >= s)
    return cosine_lr(train.base_lr, epoch - warm, total - warm)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
