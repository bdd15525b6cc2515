"""What one training epoch measures: its running sums (kept on the device) and its clock.

`EpochSums` adds each step's loss, auxiliary losses (AVS, ...), correct count and clip count to a float64 tensor on
the training device, and notes the first step whose loss was not finite or blew up, without
reading anything back: a step never waits for the device. The host reads the sums (`read`)
every few steps for the progress bar and the divergence check, at checkpoints and at the end
of the epoch.

`EpochClock` times the epoch's training part: wall time, the time spent blocked on the loader
(`data_wait_share`), clips/s and peak memory (metrics.jsonl's train row, PLAN contract 5).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from avsf.train.checkpoint import BLOW_UP
from avsf.train.setup import peak_memory_mb, reset_peak_memory

_KEYS = ("loss", "correct", "count")


class EpochSums:
    """Running sums of one epoch: loss, correct, count, and one loss sum per auxiliary (`aux`
    names, e.g. "avs"), all on the training device."""

    def __init__(self, device: torch.device, start: dict[str, Any] | None = None, aux: tuple[str, ...] = ()):
        start = start or {}
        self.keys = _KEYS + tuple(aux)
        self.sums = torch.tensor([float(start.get(k, 0.0)) for k in self.keys], dtype=torch.float64, device=device)
        self.first_bad = torch.tensor(int(start.get("first_bad", -1)), dtype=torch.int64, device=device)
        self.bad_loss = torch.tensor(float(start.get("bad_loss", 0.0)), dtype=torch.float64, device=device)
        self.last_loss = torch.tensor(float(start.get("last_loss", math.nan)), dtype=torch.float64, device=device)
        self.batches = int(start.get("seen_batches", 0))

    def add(self, step: int, loss: torch.Tensor, aux: dict[str, torch.Tensor], correct: torch.Tensor,
            n: int | torch.Tensor) -> None:
        """Add one step (all tensors on the device, nothing read back); `aux`: name -> that
        auxiliary's loss (a missing name adds zero); `n` what the step counted (clips, or a
        device tensor such as detection's valid boxes)."""
        loss = loss.detach().double()
        bad = ~torch.isfinite(loss) | (loss.abs() >= BLOW_UP)
        first = bad & (self.first_bad < 0)
        self.first_bad = torch.where(first, torch.full_like(self.first_bad, step), self.first_bad)
        self.bad_loss = torch.where(first, loss, self.bad_loss)
        zero = torch.zeros_like(loss)
        count = torch.as_tensor(n, dtype=loss.dtype, device=loss.device)
        extra = [aux[k].detach().double() * count if k in aux else zero for k in self.keys[len(_KEYS):]]
        self.sums += torch.stack([loss * count, correct.double(), count, *extra])
        self.last_loss = loss
        self.batches += 1

    def read(self) -> dict[str, Any]:
        """The sums on the host (one device sync): loss, correct, count, one per auxiliary,
        seen_batches, first_bad (-1: none), bad_loss, last_loss. A checkpoint stores this to
        resume exactly."""
        n = len(self.keys)
        values = torch.cat([self.sums, self.bad_loss.view(1), self.last_loss.view(1)]).tolist()
        out = dict(zip(self.keys, values[:n]))
        out.update(first_bad=int(self.first_bad), bad_loss=values[n], last_loss=values[n + 1],
                   seen_batches=float(self.batches))
        return out


class EpochClock:
    """Wall time, loader wait and peak memory of an epoch's training part."""

    def __init__(self, device: torch.device):
        self.device = device
        reset_peak_memory(device)
        self.start = time.perf_counter()
        self.wait = 0.0

    def next_batch(self, it: Any) -> Any:
        """`next(it)` (None at the end), timed as time blocked on the loader."""
        t = time.perf_counter()
        batch = next(it, None)
        self.wait += time.perf_counter() - t
        return batch

    def row(self, clips: float) -> dict[str, float]:
        """clips_per_s, data_wait_share (of the training part's wall time) and peak_mem_mb."""
        wall = max(time.perf_counter() - self.start, 1e-9)
        return {"clips_per_s": clips / wall, "data_wait_share": min(self.wait / wall, 1.0),
                "peak_mem_mb": peak_memory_mb(self.device)}
