"""Lateral connections between pathways (Sec. 3.3, 3.4, Fig. 2) and DropPathway (Sec. 3.5)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

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


class LateralAudioToSlowFast(AudioTemporalLateral):
    """A->FS (default, Fig. 2 centre): audio added to the output of the Fast->Slow fusion.

    Fusing into the temporally coarse Slow features tolerates audio/visual misalignment.
    """


class LateralAudioToFast(AudioTemporalLateral):
    """A->F->S (Fig. 2 left): audio summed into the Fast pathway at its fine temporal rate; the
    Fast->Slow lateral then carries it on to Slow. Enforces strong temporal alignment.
    """


class AudioVisualNonLocal(nn.Module):
    """Audiovisual non-local (Fig. 2 right): audio queries select visual locations.

    Each audio time step (averaged over frequency) is a query; keys and values are the visual
    features at every (T, H, W) location (1x2x2 max-pooled, as in non-local nets). The
    attended visual features, pooled to the visual length, are projected back to the visual
    width and added to the visual features (zero-initialised BN, so training starts from
    SlowFast). Returns only the additive term, like the other laterals.
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


class DropPathway(nn.Module):
    """Drop the whole Audio pathway with probability Pd, once per training iteration.

    The audio pathway still runs; every audio->visual term is replaced by zeros (or, in
    "running-average" mode, by a running mean of that term, the paper's alternative).
    Never drops in evaluation.
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
