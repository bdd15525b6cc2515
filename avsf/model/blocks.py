"""Residual building blocks of the Slow, Fast and Audio pathways (Table 1)."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(conv: nn.Module, channels: int, *, relu: bool = True, zero_init: bool = False) -> nn.Sequential:
    bn = nn.BatchNorm3d(channels) if isinstance(conv, nn.Conv3d) else (
        nn.BatchNorm2d(channels) if isinstance(conv, nn.Conv2d) else nn.BatchNorm1d(channels)
    )
    bn.zero_init = zero_init  # read by init_weights
    layers: list[nn.Module] = [conv, bn]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Bottleneck3d(nn.Module):
    """SlowFast bottleneck: Tx1x1 -> 1x3x3 (spatial stride here) -> 1x1x1, plus shortcut."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, *, temporal_kernel: int, stride: int):
        super().__init__()
        t = temporal_kernel
        self.a = conv_bn_relu(nn.Conv3d(dim_in, dim_inner, (t, 1, 1), padding=(t // 2, 0, 0), bias=False), dim_inner)
        self.b = conv_bn_relu(
            nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            dim_inner,
        )
        self.c = conv_bn_relu(nn.Conv3d(dim_inner, dim_out, 1, bias=False), dim_out, relu=False, zero_init=True)
        self.shortcut = (
            conv_bn_relu(nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False), dim_out, relu=False)
            if dim_in != dim_out or stride != 1
            else None
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.c(self.b(self.a(x))) + identity)


class AudioBottleneck(nn.Module):
    """ResNet bottleneck on a (time x frequency) log-mel: 1x1 -> 3x3 (stride here) -> 1x1."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, *, stride: int):
        super().__init__()
        self.a = conv_bn_relu(nn.Conv2d(dim_in, dim_inner, 1, bias=False), dim_inner)
        self.b = conv_bn_relu(nn.Conv2d(dim_inner, dim_inner, 3, stride=stride, padding=1, bias=False), dim_inner)
        self.c = conv_bn_relu(nn.Conv2d(dim_inner, dim_out, 1, bias=False), dim_out, relu=False, zero_init=True)
        self.shortcut = _audio_shortcut(dim_in, dim_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.c(self.b(self.a(x))) + identity)


class TimeFrequencyBottleneck(nn.Module):
    """The factorised audio block of res2/res3 (authors' "time-frequency bottleneck v1").

    Two parallel branches read the block input, a 3x1 filter over time and a 1x3 filter over
    frequency, each to the inner width; they are concatenated and a 1x1 conv maps to the output.
    Time and frequency are treated separately because spectrogram statistics are not isotropic.
    """

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, *, stride: int):
        super().__init__()
        self.time = conv_bn_relu(
            nn.Conv2d(dim_in, dim_inner, (3, 1), stride=stride, padding=(1, 0), bias=False), dim_inner
        )
        self.freq = conv_bn_relu(
            nn.Conv2d(dim_in, dim_inner, (1, 3), stride=stride, padding=(0, 1), bias=False), dim_inner
        )
        self.c = conv_bn_relu(nn.Conv2d(2 * dim_inner, dim_out, 1, bias=False), dim_out, relu=False, zero_init=True)
        self.shortcut = _audio_shortcut(dim_in, dim_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.c(torch.cat([self.time(x), self.freq(x)], dim=1)) + identity)


def _audio_shortcut(dim_in: int, dim_out: int, stride: int) -> nn.Module | None:
    if dim_in == dim_out and stride == 1:
        return None
    return conv_bn_relu(nn.Conv2d(dim_in, dim_out, 1, stride=stride, bias=False), dim_out, relu=False)


class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al.); keys and values are max-pooled 2x2x2
    (1x2x2 when the clip has an odd number of frames), as PySlowFast's R101+NL configs."""

    def __init__(self, dim: int, dim_inner: int | None = None, *, temporal_pool: int = 2):
        super().__init__()
        inner = dim_inner or dim // 2
        self.theta = nn.Conv3d(dim, inner, 1)
        self.phi = nn.Conv3d(dim, inner, 1)
        self.g = nn.Conv3d(dim, inner, 1)
        self.pool = nn.MaxPool3d((temporal_pool, 2, 2), (temporal_pool, 2, 2))
        self.out = conv_bn_relu(nn.Conv3d(inner, dim, 1), dim, relu=False, zero_init=True)
        self.scale = inner**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        q = self.theta(x).flatten(2)  # (B, C', THW)
        k = self.phi(self.pool(x)).flatten(2)
        v = self.g(self.pool(x)).flatten(2)
        attn = torch.softmax(torch.einsum("bcn,bcm->bnm", q, k) * self.scale, dim=-1)
        y = torch.einsum("bnm,bcm->bcn", attn, v).reshape(b, -1, t, h, w)
        return x + self.out(y)
