"""Audiovisual non-local fusion (Fig. 2 right): audio queries select visual locations."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from avsf.config import ModelConfig
from avsf.model.blocks import conv_bn_relu
from avsf.model.fusions import register_fusion
from avsf.model.fusions.base import Fusion, Junction


class AudioVisualNonLocal(nn.Module):
    """Each audio time step (averaged over frequency) is a query; keys and values are the visual
    features at every (T, H, W) location (1x2x2 max-pooled, as in non-local nets). The
    attended visual features, pooled to the visual length, are projected back to the visual
    width (zero-initialised BN, so training starts from SlowFast). Returns the additive term.
    """

    def __init__(self, dim_audio: int, dim_visual: int, *, inner: int):
        super().__init__()
        self.query = nn.Conv1d(dim_audio, inner, 1)
        self.key = nn.Conv3d(dim_visual, inner, 1)
        self.value = nn.Conv3d(dim_visual, inner, 1)
        self.pool = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.out = conv_bn_relu(nn.Conv1d(inner, dim_visual, 1, bias=False), dim_visual, relu=False, zero_init=True)
        self.scale = inner**-0.5

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        q = self.query(audio.mean(dim=3))  # (B, C', Ta)
        pooled = self.pool(visual)
        k = self.key(pooled).flatten(2)  # (B, C', N)
        v = self.value(pooled).flatten(2)
        attn = torch.softmax(torch.einsum("bca,bcn->ban", q, k) * self.scale, dim=-1)
        y = torch.einsum("ban,bcn->bca", attn, v)  # (B, C', Ta)
        y = F.adaptive_avg_pool1d(y, visual.shape[2])
        return self.out(y)[..., None, None]


@register_fusion("av-nonlocal")
class NonLocalFusion(Fusion):
    into = "slow"
    aligns_to = None  # attention pools to the visual length itself
    audio_only = False

    def build(self, j: Junction, cfg: ModelConfig) -> nn.Module:
        return AudioVisualNonLocal(j.audio_channels, self.channels(j), inner=cfg.afs_channels)

    def term(self, lateral: nn.Module, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return lateral(audio, visual)
