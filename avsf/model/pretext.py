"""The rotation pretext task (ROT, Sec. 6 and A.1): the clip turned by k x 90 degrees, and the
model's `rot_logits` (`model.rot_head`) predict k as a four-way softmax."""

from __future__ import annotations

import torch

ROTATIONS = 4


def rotate_clip(batch: dict[str, torch.Tensor], k: int | torch.Tensor) -> dict[str, torch.Tensor]:
    """A shallow copy of `batch` whose `slow` and `fast` clips are rotated by k x 90 degrees
    (counter-clockwise in the H x W plane, every frame alike); other keys are shared.

    `k` is one int for the whole batch or a (B,) integer tensor, one rotation per clip (the
    ROT target). Per-clip quarter turns of a non-square clip would give clips of two shapes in
    one batch, so they need H == W.
    """
    out = dict(batch)
    for key in ("slow", "fast"):
        if key in batch:
            out[key] = _rotate(batch[key], k, key)
    return out


def _rotate(clip: torch.Tensor, k: int | torch.Tensor, key: str) -> torch.Tensor:
    if not torch.is_tensor(k):
        return torch.rot90(clip, int(k) % ROTATIONS, dims=(-2, -1))
    if k.shape != (clip.shape[0],):
        raise ValueError(f"rotate_clip: k has shape {tuple(k.shape)}; want one rotation per clip ({clip.shape[0]},)")
    k = k.to(clip.device).long() % ROTATIONS
    if clip.shape[-1] != clip.shape[-2] and bool((k % 2 == 1).any()):
        raise ValueError(f"rotate_clip: per-clip quarter turns need square frames; {key} is "
                         f"{clip.shape[-2]}x{clip.shape[-1]}")
    out = clip.clone()
    for r in range(1, ROTATIONS):
        rows = (k == r).nonzero().squeeze(1)
        if rows.numel():
            out[rows] = torch.rot90(clip[rows], r, dims=(-2, -1))
    return out


__all__ = ["ROTATIONS", "rotate_clip"]
