"""Lateral connections between pathways (Sec. 3.3, 3.4, Fig. 2): the SlowFast Fast->Slow
lateral and the temporal audio lateral the A->FS and A->F->S fusions build on."""

from __future__ import annotations

import torch
from torch import nn

from avsf.model.blocks import conv_bn_relu


class FastToSlow(nn.Module):
    """SlowFast lateral: time-strided conv (kernel k, stride alpha_F), concatenated onto Slow."""

    def __init__(self, dim_fast: int, *, ratio: int, kernel: int, alpha: int):
        super().__init__()
        self.out_channels = dim_fast * ratio
        self.conv = conv_bn_relu(
            nn.Conv3d(dim_fast, self.out_channels, (kernel, 1, 1), stride=(alpha, 1, 1), padding=(kernel // 2, 0, 0), bias=False),
            self.out_channels,
        )

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([slow, self.conv(fast)], dim=1)


class AudioTemporalLateral(nn.Module):
    """Audio features averaged over frequency, then two temporal convs (kernel k): to `inner`
    channels at full rate, then to `dim_out` channels with a time stride that brings the audio
    length down to the visual length. Output (B, dim_out, T_visual, 1, 1) broadcasts over H, W.
    """

    def __init__(self, dim_audio: int, dim_out: int, *, inner: int, kernel: int, stride: int):
        super().__init__()
        pad = kernel // 2
        self.reduce = conv_bn_relu(nn.Conv1d(dim_audio, inner, kernel, padding=pad, bias=False), inner)
        self.project = conv_bn_relu(nn.Conv1d(inner, dim_out, kernel, stride=stride, padding=pad, bias=False), dim_out)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.project(self.reduce(audio.mean(dim=3)))
        return x[..., None, None]
