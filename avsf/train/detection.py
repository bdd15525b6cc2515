"""The detection head's training objective (`model.head = "detection"`, Sec. 5 / A.7): a per-class
sigmoid cross-entropy over the valid person boxes of the batch, as PySlowFast trains AVA.

The model returns `box_logits` (N, C) for the N boxes whose `box_mask` is set and `box_index` (N,)
= b * K + k (docs/model.md); their targets are `box_labels.flatten(0, 1)[box_index]`. Registered
in avsf.train.objectives; the validation number is frame-level mAP (avsf.eval.detection).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def box_targets(out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
    """(N, C) multi-hot targets of the scored boxes; zero columns where the head has more classes
    than the data (a head built for AVA's 80 actions on a set that uses 60)."""
    logits = out["box_logits"]
    y = batch["box_labels"].flatten(0, 1)[out["box_index"]].to(logits.dtype)
    if y.shape[1] > logits.shape[1]:
        raise ValueError(f"box_labels have {y.shape[1]} classes but the head has {logits.shape[1]} "
                         "(model.num_classes): use >= the data's class count, or 0 to take it")
    return F.pad(y, (0, logits.shape[1] - y.shape[1]))


def box_loss(out: dict[str, Any], batch: dict[str, Any], cfg: Any = None) -> torch.Tensor:
    """Mean binary cross-entropy over the valid boxes and classes; a batch without a valid box
    gives a zero that still reaches every head weight (so DDP sees the same graph everywhere)."""
    logits = out["box_logits"].float()
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits, box_targets(out, batch).float())


def box_correct(out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
    """Boxes whose top-scoring action is one of theirs (the train row's `top1` for detection)."""
    with torch.no_grad():
        logits = out["box_logits"].float()
        if logits.shape[0] == 0:
            return logits.new_zeros((), dtype=torch.int64)
        top = logits.argmax(dim=1, keepdim=True)
        return (box_targets(out, batch).gather(1, top) > 0.5).sum()


def box_count(batch: dict[str, Any]) -> torch.Tensor:
    """Valid boxes of the batch, as a device tensor (the loop does not wait for it)."""
    return batch["box_mask"].sum()
