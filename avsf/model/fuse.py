"""Speed-ups that compute the same function (outputs equal up to float rounding, same FLOPs).

- `to_channels_last(model)`: every conv weight in channels-last memory format (3D convs
  `channels_last_3d`, 2D `channels_last`), so oneDNN runs the convs without reordering to and
  from NCDHW. With BN folded it speeds up the eval forward on the CPU; for a CPU training step it
  is a wash (CPU BatchNorm is slow in channels-last at few channels), so the trainer applies it
  on CUDA only (`train.channels_last`; docs/performance.md).
- `fuse_for_inference(model)`: BatchNorm folded into the conv before it (below).

`fuse_for_inference(model)` returns a copy in eval mode whose every `conv -> BN [-> ReLU]`
(`blocks.conv_bn_relu`) has the BN's affine map folded into the conv's weight and bias, and
whose audio stem's two summed convs carry the stem BN. Eval BN is `y = (x - mean) / sqrt(var +
eps) * gamma + beta`, an affine map per channel, so the fused conv gives the same outputs up to
float rounding (checked to 1e-4 relative in
bench/test_models.py::test_fold_keeps_outputs) while skipping one pass over
every activation. The original model is untouched; use it for training.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _fold_sequential(seq: nn.Sequential) -> bool:
    if len(seq) >= 2 and isinstance(seq[0], _CONV) and isinstance(seq[1], _BN):
        seq[0] = fuse_conv_bn_eval(seq[0], seq[1])
        seq[1] = nn.Identity()
        return True
    return False


def _fold_audio_stem(stem: nn.Module) -> bool:
    """AudioStem: relu(bn(time(x) + freq(x))): scale both convs, put the shift in one bias."""
    from avsf.model.pathways import AudioStem

    if not isinstance(stem, AudioStem) or not isinstance(stem.bn, _BN):
        return False
    bn = stem.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    with torch.no_grad():
        for i, conv in enumerate((stem.time, stem.freq)):
            conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
            bias = bias * scale + (shift if i == 0 else 0.0)
            conv.bias = nn.Parameter(bias)
    stem.bn = nn.Identity()
    return True


@torch.no_grad()
def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with BatchNorm folded into the preceding convs."""
    fused = copy.deepcopy(model).eval()
    for m in list(fused.modules()):
        if isinstance(m, nn.Sequential):
            _fold_sequential(m)
        else:
            _fold_audio_stem(m)
    return fused


@torch.no_grad()
def to_channels_last(model: nn.Module, *, video_only: bool = False) -> nn.Module:
    """Convert every conv weight (in place) to channels-last; returns `model`.

    `video_only`: the 3-D (video) convs only, as the trainer does on CUDA (`train.channels_last`),
    where only the 5-D inputs are made channels-last. (`Module.to(memory_format=
    channels_last_3d)` cannot do this: it fails on the audio pathway's 4-D weights.)
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last_3d)
        elif isinstance(m, nn.Conv2d) and not video_only:
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
    return model


__all__ = ["fuse_for_inference", "to_channels_last"]
