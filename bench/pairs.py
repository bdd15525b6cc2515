"""avsf and pytorchvideo 0.1.5 built to the same AVSlowFast configuration, plus their inputs.

pytorchvideo's `create_audio_visual_slowfast` is fixed in design: A->FS laterals after the stem
and after res2, res3, res4 (every junction), Fast->Slow laterals at the same four junctions, the
audio pooled into the head, no DropPathway, no AVS heads. `avsf_config(scale)` sets the avsf
fields that reproduce that design; `build_peer(cfg.model, crop)` passes our sizes (widths,
depths, frames, ratios, lateral kernels and strides) to the peer's builder.

The visual pathways, both kinds of laterals and the head match exactly at tiny/small (the
bench asserts their FLOPs agree to 0.1%; at R50 to 0.5%, see the last point); the audio pathway
cannot (the bench asserts the totals agree within `FLOP_TOLERANCE`):

- the peer puts the audio's temporal stride of res3..res5 in the leading 1x1 conv (its
  `stage_conv_a_stride`), so that conv runs on half the frames; avsf strides in the 3x3 conv.
- the peer's res2/res3 "acoustic" bottleneck is 1x1 -> (3x1 and 1x3 branches, summed) -> 1x1;
  avsf's factorised block has no leading 1x1 and concatenates the branches. We use avsf's plain
  3x3 audio block (`audio_kernels = "3x3"`), the closer of the two in FLOPs.
  Net: avsf's audio pathway does more work than the peer's: +0.6% of the whole model at R50,
  +2.8% at tiny, +3.7% at small (measured; the audio share is larger at small widths).
- the peer's A->FS inner width is a quarter of the audio channels at each junction (8, 32, 64,
  128 at R50); avsf has one `afs_channels` (64 = the peer's width at res3). For tiny/small the
  peer is given our integer inner width, which its builder accepts, so the laterals match.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
from torch import nn

from avsf.config import Config, ModelConfig, build_config

FLOP_TOLERANCE = 0.05  # relative; see the module docstring for why not 0

# Fields that make avsf's AVSlowFast the peer's design (every scale).
PEER_DESIGN = {
    "model.pathways": "avslowfast",
    "model.fusion": "a-fs",
    "model.fusion_stages": ["pool1", "res2", "res3", "res4", "pool5"],
    "model.fs_fusion_stages": ["pool1", "res2", "res3", "res4"],
    "model.audio_kernels": "3x3",
    "model.audio_res2_stride": 1,
    "model.audio_stem_kernel": 9,
    "model.afs_kernel": 5,
    "model.fs_fusion_ratio": 2,
    "model.beta_a": 0.5,
    "model.drop_pathway": 0.0,  # the peer has no DropPathway
    "model.avs_layers": [],  # nor AVS heads
    "model.nonlocal_stages": [],
    "model.dropout": 0.5,
    "model.head": "softmax",
    "model.num_classes": 400,
}

# The paper's R50 8x8 AVSlowFast: what `create_audio_visual_slowfast()` builds by default
# (Slow 8 frames, Fast 32, audio 128 x 80 log-mel, 224 crops, Fast->Slow kernel 7 stride 4).
R50_8X8 = {
    "model.depth": 50,
    "model.stage_blocks": [],
    "model.width": 64,
    "model.num_frames": 8,
    "model.tau": 8,
    "model.alpha_f": 4,
    "model.beta_f": 1 / 8,
    "model.alpha_a": 16,
    "model.mel_bins": 80,
    "model.fs_fusion_kernel": 7,
    "model.afs_channels": 64,
    "data.crop_size": 224,
}

BENCH_SCALES = ("tiny", "small", "r50")


@dataclass
class Pair:
    scale: str  # tiny | small | r50
    cfg: Config
    crop: int
    batch_size: int

    @property
    def model_cfg(self) -> ModelConfig:
        return self.cfg.model


def avsf_config(scale: str) -> Config:
    """The avsf config that matches the peer at `scale` (tiny | small | r50)."""
    if scale == "r50":
        return build_config(scale="paper", overrides={**PEER_DESIGN, **R50_8X8})
    cfg = build_config(scale=scale, overrides=PEER_DESIGN)
    return cfg


def pair(scale: str, batch_size: int | None = None) -> Pair:
    cfg = avsf_config(scale)
    if batch_size is None:
        batch_size = 1 if scale == "r50" else cfg.train.batch_size
    return Pair(scale, cfg, cfg.data.crop_size, batch_size)


def _depth_key(blocks: list[int]) -> int:
    """The peer picks stage depths from a table keyed by model depth (18 -> 1,1,1,1 bottlenecks)."""
    from pytorchvideo.models import slowfast

    for key, depths in slowfast._MODEL_STAGE_DEPTH.items():
        if list(depths) == list(blocks):
            return key
    raise ValueError(f"pytorchvideo has no model depth with stage blocks {blocks}")


def audio_lengths(m: ModelConfig) -> list[int]:
    """Audio time length at the peer's four fusion points (stem, res2, res3, res4)."""
    length = m.audio_frames
    out = [length]
    for stride in (m.audio_res2_stride, 2, 2):
        length = (length - 1) // stride + 1
        out.append(length)
    return out


def build_peer(m: ModelConfig, crop: int) -> nn.Module:
    """pytorchvideo's AVSlowFast with avsf's sizes (its builder's arguments, nothing patched)."""
    from pytorchvideo.models.audio_visual_slowfast import AudioToSlowFastFusionBuilder, create_audio_visual_slowfast

    from avsf.model.avslowfast import stage_blocks

    w_fast = round(m.width * m.beta_f)
    w_audio = round(m.width * m.beta_a)
    ratio_f, ratio_a = m.width // w_fast, m.width // w_audio
    assert ratio_f * w_fast == m.width and ratio_a * w_audio == m.width, "peer needs integer channel ratios"
    a_len = audio_lengths(m)
    strides_a = tuple((a // m.num_frames, 1, 1) for a in a_len)
    is_paper = m.width == 64 and m.afs_channels == 64 and stage_blocks(m) == [3, 4, 6, 3]
    fusion = AudioToSlowFastFusionBuilder(
        slowfast_channel_reduction_ratio=ratio_f,
        slowfast_audio_reduction_ratio=ratio_a,
        conv_fusion_channel_ratio=m.fs_fusion_ratio,
        conv_kernel_size=(m.fs_fusion_kernel, 1, 1),
        conv_kernel_size_a=(m.afs_kernel, 1, 1),
        conv_stride=(m.alpha_f, 1, 1),
        conv_stride_a=strides_a,
        # R50: the peer's default (a quarter of the audio channels); else our integer width.
        conv_fusion_channel_interm_dim=0.25 if is_paper else m.afs_channels,
        norm=nn.BatchNorm3d,
        activation=nn.ReLU,
    ).create_module
    res5 = crop // 32
    a_t, a_f = a_len[-1] // 2, m.mel_bins // (m.audio_res2_stride * 8)
    return create_audio_visual_slowfast(
        slowfast_channel_reduction_ratio=(ratio_f, ratio_a),
        slowfast_conv_channel_fusion_ratio=m.fs_fusion_ratio,
        fusion_builder=fusion,
        model_depth=_depth_key(stage_blocks(m)),
        model_num_class=m.num_classes,
        dropout_rate=m.dropout,
        stem_dim_outs=(m.width, w_fast, w_audio),
        stem_conv_kernel_sizes=((1, 7, 7), (5, 7, 7), (m.audio_stem_kernel, 1, m.audio_stem_kernel)),
        head_pool_kernel_sizes=((m.num_frames, res5, res5), (m.fast_frames, res5, res5), (a_t, 1, a_f)),
    )


# The visual-only SlowFast pair: avsf's SlowFast and pytorchvideo's `create_slowfast` (Fast->Slow
# laterals after pool1, res2, res3, res4 in both; no audio, so every tensor maps and computes the same).
SLOWFAST_DESIGN = {**PEER_DESIGN, "model.pathways": "slowfast", "model.fusion_stages": [], "model.avs_layers": []}


def slowfast_config(scale: str) -> Config:
    """avsf's SlowFast that matches pytorchvideo's `create_slowfast` at `scale` (tiny | small | r50)."""
    if scale == "r50":
        return build_config(scale="paper", overrides={**SLOWFAST_DESIGN, **R50_8X8})
    return build_config(scale=scale, overrides=SLOWFAST_DESIGN)


def build_peer_slowfast(m: ModelConfig, crop: int) -> nn.Module:
    """pytorchvideo's SlowFast with avsf's sizes (its builder's arguments, nothing patched)."""
    from pytorchvideo.models.slowfast import create_slowfast

    from avsf.model.avslowfast import stage_blocks

    w_fast = round(m.width * m.beta_f)
    res5 = crop // 32
    return create_slowfast(
        slowfast_channel_reduction_ratio=(m.width // w_fast,),
        slowfast_conv_channel_fusion_ratio=m.fs_fusion_ratio,
        slowfast_fusion_conv_kernel_size=(m.fs_fusion_kernel, 1, 1),
        slowfast_fusion_conv_stride=(m.alpha_f, 1, 1),
        model_depth=_depth_key(stage_blocks(m)),
        model_num_class=m.num_classes,
        dropout_rate=m.dropout,
        stem_dim_outs=(m.width, w_fast),
        head_pool_kernel_sizes=((m.num_frames, res5, res5), (m.fast_frames, res5, res5)),
    )


def inputs(m: ModelConfig, crop: int, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "slow": torch.randn(batch, 3, m.num_frames, crop, crop, generator=g),
        "fast": torch.randn(batch, 3, m.fast_frames, crop, crop, generator=g),
        "audio": torch.randn(batch, 1, m.audio_frames, m.mel_bins, generator=g),
        "label": torch.randint(0, m.num_classes, (batch,), generator=g),
    }


def peer_inputs(batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """A fresh list per call: the peer's forward overwrites the list it is given."""
    return [batch["slow"], batch["fast"], batch["audio"].unsqueeze(3)]  # audio (B, 1, T, 1, F)


class PeerAsDict(nn.Module):
    """Peer with avsf's calling convention (batch dict in, {"logits"} out), for fvcore and timing."""

    def __init__(self, peer: nn.Module):
        super().__init__()
        self.peer = peer

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.peer(peer_inputs(batch))}


def peer_gflops(peer: nn.Module, m: ModelConfig, crop: int) -> tuple[float, float]:
    """fvcore GFLOPs of one clip (eval), total and audio pathway, counted as avsf.flops.count does."""
    import contextlib
    import io
    import logging

    from fvcore.nn import FlopCountAnalysis

    class _Tensors(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, slow, fast, audio):
            return self.net([slow, fast, audio])

    x = inputs(m, crop, 1)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    was = peer.training
    peer.eval()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the peer prints in forward
        a = FlopCountAnalysis(_Tensors(peer), (x["slow"], x["fast"], x["audio"].unsqueeze(3)))
        a.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = a.total()
        by_module = a.by_module()
    peer.train(was)
    # Pathway 2 of every multi-pathway stage is the audio pathway (stem, res2..res5).
    audio = sum(v for k, v in by_module.items() if re.fullmatch(r"net\.blocks\.\d+\.multipathway_blocks\.2", k))
    return total / 1e9, audio / 1e9


def avsf_gflops(m: ModelConfig, crop: int, model: nn.Module | None = None) -> tuple[float, float]:
    """fvcore GFLOPs of one clip (eval), total and audio pathway (avsf.flops.count)."""
    from avsf.flops import count

    r = count(copy.deepcopy(m), input_size=crop, model=model)
    return r.gflops, r.by_pathway.get("audio", 0.0)
