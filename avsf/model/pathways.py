"""The Slow, Fast and Audio pathways: a stem and four residual stages each (Table 1).

Pathways only hold layers; the network (avslowfast.py) runs them stage by stage so that
lateral connections can fuse between stages.
"""

from __future__ import annotations

import torch
from torch import nn

from avsf.config import RES_STAGES
from avsf.model.blocks import (
    AudioBottleneck, Bottleneck3d, FactorisedBottleneck, NonLocal3d, SpaceToDepthConv3d, TimeFrequencyBottleneck,
    conv_bn_relu,
)


def nonlocal_after(num_blocks: int) -> set[int]:
    """Blocks followed by a non-local block: every other block in R50's res4, every 7th in R101's."""
    step = 7 if num_blocks >= 14 else 2
    return set(range(step - 1, num_blocks, step))


class Stage(nn.Sequential):
    """One ResNet stage; the first block carries the stride and the channel change."""


class VisualPathway(nn.Module):
    """Slow or Fast pathway: 3D ResNet with per-stage temporal kernels.

    `extra_in[stage]` widens a stage's input for the Fast->Slow concatenation before it.
    Only the first `temporal_kernel_blocks[i]` blocks of stage i get its temporal kernel, the
    rest are 1 (PySlowFast's NUM_BLOCK_TEMP_KERNEL: R101's res4 uses 3 in 6 of 23 blocks).
    `res5_dilation` 2 (detection, Sec. 5): res5 keeps the spatial size (stride 1) and dilates
    its spatial filters by 2 instead, so the final map is 1/16 of the input, as PySlowFast's
    AVA configs.
    """

    def __init__(
        self,
        *,
        width: int,
        blocks: list[int],
        stem_temporal_kernel: int,
        temporal_kernels: list[int],
        temporal_kernel_blocks: list[int],
        extra_in: dict[str, int],
        nonlocal_stages: list[str],
        num_frames: int = 2,
        res5_dilation: int = 1,
    ):
        super().__init__()
        t = stem_temporal_kernel
        self.stem = conv_bn_relu(
            SpaceToDepthConv3d(3, width, (t, 7, 7), stride=(1, 2, 2), padding=(t // 2, 3, 3), bias=False), width
        )
        self.pool1 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.out_channels: dict[str, int] = {"pool1": width}
        dim_in = width
        stages = []
        for i, (name, n) in enumerate(zip(RES_STAGES, blocks)):
            inner = width * 2**i
            dim_out = 4 * inner
            layers: list[nn.Module] = []
            prev = ("pool1",) + RES_STAGES
            d = dim_in + extra_in.get(prev[i], 0)
            nl_at = nonlocal_after(n) if name in nonlocal_stages else set()
            dilation = res5_dilation if name == "res5" else 1
            for j in range(n):
                layers.append(
                    Bottleneck3d(
                        d, inner, dim_out, temporal_kernel=temporal_kernels[i] if j < temporal_kernel_blocks[i] else 1,
                        stride=(2 if i > 0 and j == 0 and dilation == 1 else 1), dilation=dilation,
                    )
                )
                if j in nl_at:
                    layers.append(NonLocal3d(dim_out, temporal_pool=2 if num_frames % 2 == 0 else 1))
                d = dim_out
            stages.append(Stage(*layers))
            dim_in = dim_out
            self.out_channels[name] = dim_out
        self.stages = nn.ModuleList(stages)


class AudioStem(nn.Module):
    """Two parallel filters, k x 1 over time and 1 x k over frequency, summed, then BN and ReLU."""

    def __init__(self, dim_out: int, kernel: int):
        super().__init__()
        self.time = nn.Conv2d(1, dim_out, (kernel, 1), padding=(kernel // 2, 0), bias=False)
        self.freq = nn.Conv2d(1, dim_out, (1, kernel), padding=(0, kernel // 2), bias=False)
        self.bn = nn.BatchNorm2d(dim_out)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.time(x) + self.freq(x)))


AUDIO_BLOCKS = {"factorised": TimeFrequencyBottleneck, "table1": FactorisedBottleneck, "3x3": AudioBottleneck}
"""`model.audio_kernels` -> the block of audio res2 and res3 (res4, res5: always the 3x3 one)."""
FACTORISED_STAGES = ("res2", "res3")


class AudioPathway(nn.Module):
    """2D ResNet over the (time x frequency) log-mel; no pool1; stride-2 downsampling per stage.

    res2 and res3 use `AUDIO_BLOCKS[block]` (time and frequency filtered apart, Sec. 3.4); res4
    and res5 a plain 3x3 bottleneck.
    """

    def __init__(self, *, width: int, blocks: list[int], stem_kernel: int, res2_stride: int, block: str):
        super().__init__()
        self.stem = AudioStem(width, stem_kernel)
        self.out_channels: dict[str, int] = {"pool1": width}
        self.strides: dict[str, int] = {}
        dim_in = width
        stages = []
        for i, (name, n) in enumerate(zip(RES_STAGES, blocks)):
            inner = width * 2**i
            dim_out = 4 * inner
            stride = res2_stride if i == 0 else 2
            kind = AUDIO_BLOCKS[block] if name in FACTORISED_STAGES else AudioBottleneck
            layers = [kind(dim_in if j == 0 else dim_out, inner, dim_out, stride=stride if j == 0 else 1) for j in range(n)]
            stages.append(Stage(*layers))
            dim_in = dim_out
            self.out_channels[name] = dim_out
            self.strides[name] = stride
        self.stages = nn.ModuleList(stages)
