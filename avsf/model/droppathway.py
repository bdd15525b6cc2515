"""DropPathway (Sec. 3.5): drop the Audio pathway's contributions once per training iteration."""

from __future__ import annotations

import torch
from torch import nn


class DropPathway(nn.Module):
    """Drop the whole Audio pathway with probability Pd, once per training iteration.

    The audio pathway still runs; every audio term in `channels` (the audio->visual additions,
    named by junction, and "pool5" for the audio features the head reads when the scope
    includes the head) is replaced by zeros (or, in "running-average" mode, by a running mean
    of that term, the paper's alternative). Never drops in evaluation.
    """

    def __init__(self, rate: float, mode: str, channels: dict[str, int]):
        super().__init__()
        self.rate = rate
        self.mode = mode
        for name, c in channels.items():
            self.register_buffer(f"running_{name}", torch.zeros(c))
        self.momentum = 0.1

    def draw(self) -> bool:
        """True when the audio pathway is kept for this forward."""
        if not self.training or self.rate <= 0:
            return True
        return bool(torch.rand(()) >= self.rate)

    def forward(self, name: str, term: torch.Tensor, keep: bool) -> torch.Tensor:
        running = getattr(self, f"running_{name}", None)
        use_running = self.mode == "running-average" and running is not None
        out = term if keep else (
            running.clone().view([1, -1] + [1] * (term.dim() - 2)).expand_as(term) if use_running else term * 0.0
        )
        if self.training and use_running:  # updated after use: a dropped forward ignores this batch's audio
            mean = term.detach().mean(dim=[d for d in range(term.dim()) if d != 1])
            running.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
        return out
