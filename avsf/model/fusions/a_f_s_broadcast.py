"""A->F->S with the audio broadcast over the Fast pathway's H x W before the lateral convs.

The same function as `a-f-s` (whose lateral filters the frequency-averaged audio over time
and broadcasts its output): the audio is constant over H x W and both convs are 1 x 1 in
space. It exists to measure what running the lateral on Fast-sized feature maps costs, one
literal reading of "audio features are subsampled to the temporal length of the Fast pathway
and then fused into the Fast pathway with a sum" (docs/model.md, Table 5a).
"""

from __future__ import annotations

import torch
from torch import nn

from avsf.config import ModelConfig
from avsf.model.blocks import conv_bn_relu
from avsf.model.fusions import register_fusion
from avsf.model.fusions.base import Fusion, Junction


class BroadcastAudioLateral(nn.Module):
    def __init__(self, dim_audio: int, dim_out: int, *, inner: int, kernel: int, stride: int):
        super().__init__()
        pad = (kernel // 2, 0, 0)
        self.reduce = conv_bn_relu(nn.Conv3d(dim_audio, inner, (kernel, 1, 1), padding=pad, bias=False), inner)
        self.project = conv_bn_relu(nn.Conv3d(inner, dim_out, (kernel, 1, 1), stride=(stride, 1, 1), padding=pad,
                                              bias=False), dim_out)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        h, w = visual.shape[-2:]
        x = audio.mean(dim=3)[..., None, None].expand(-1, -1, -1, h, w)
        return self.project(self.reduce(x))


@register_fusion("a-f-s-broadcast")
class BroadcastAudioToFast(Fusion):
    into = "fast"
    aligns_to = "fast"
    audio_only = False  # needs the Fast features' size, so AVS builds its own audio lateral

    def build(self, j: Junction, cfg: ModelConfig) -> nn.Module:
        return BroadcastAudioLateral(j.audio_channels, self.channels(j), inner=cfg.afs_channels,
                                     kernel=cfg.afs_kernel, stride=j.audio_frames // self.target_frames(j))

    def term(self, lateral: nn.Module, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return lateral(audio, visual)
