"""What a checkpoint holds to make a resumed run exact, in a form `torch.load(weights_only=True)`
reads: tensors, numbers, strings, lists and dicts only (RunDir saves and loads the file).

    {"model": state dict, "optimizer": state dict, "state": the loop's counters,
     "config": Config.to_dict(), "rng": [per-rank rng_state()], "epoch_start_rng": [...] (mid-epoch)}
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

BLOW_UP = 1e6
"""A weight or a loss at or above this magnitude counts as diverged: such a checkpoint is never kept."""


def rng_state() -> dict[str, Any]:
    """The state of every random generator a training step may draw from, as tensors and lists."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": int(version), "words": list(words), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["words"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def largest_weight(model: torch.nn.Module) -> float:
    """max |w| over the model's floating-point parameters (inf / nan when any is not finite)."""
    peaks = [p.detach().abs().max().float() for p in model.parameters() if p.is_floating_point() and p.numel()]
    if not peaks:
        return 0.0
    top = torch.stack(peaks)
    return float("nan") if not torch.isfinite(top).all() else float(top.max())


def weights_ok(model: torch.nn.Module) -> bool:
    w = largest_weight(model)
    return w == w and w < BLOW_UP
