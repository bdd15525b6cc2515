"""Every row of the paper's GFLOPs columns as a named variant (`avsf flops --variant NAME`).

A variant is config overrides on top of the `paper` scale plus the paper's figure for that
row. FLOPs are for one clip at 256x256 (the paper's test crop) with 400 classes unless the row
says otherwise (detection and SSL rows: 256x320, the paper's footnote 2). docs/model.md
explains rows our count cannot match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    paper_gflops: float
    overrides: dict[str, Any] = field(default_factory=dict)
    input_size: int | tuple[int, int] = 256  # square side, or (height, width)
    paper_params_m: float | None = None  # the paper's parameter count, where it gives one


R50_8x8 = {"model.num_frames": 8, "model.tau": 8, "model.alpha_f": 4, "model.alpha_a": 16, "model.fs_fusion_kernel": 7}
R101_8x8 = {**R50_8x8, "model.depth": 101}
# Charades (Table 4): 16x8 (Fast 64 frames at stride 2), R101 with non-local blocks in Slow res4,
# 157 classes, sigmoid head; audio covers the 4.3 s clip (256 log-mel frames).
R101_NL_16x8 = {
    "model.num_frames": 16, "model.tau": 8, "model.alpha_f": 4, "model.alpha_a": 16,
    "model.depth": 101, "model.nonlocal_stages": ["res4"], "model.num_classes": 157,
    "model.head": "sigmoid",
}
SLOWFAST = {"model.pathways": "slowfast"}
# AVA detection (Table 7, Sec. 5, A.7): res5 dilated, RoI head, 80 classes (60 evaluated);
# R101 rows with non-local blocks ("For R101, both use NL blocks").
DETECTION = {"model.head": "detection", "model.num_classes": 80}
R101_NL_8x8 = {**R101_8x8, "model.nonlocal_stages": ["res4"]}
# Self-supervised rows (Table A.1): the rotation head (ROT) on top, UCF101's 101 classes in the
# linear probe's fc; T x tau = 16x4 samples 64 frames at stride 1 (Fast alpha 4), 128 log-mel.
SSL = {"model.rot_head": True, "model.num_classes": 101}
R50_16x4 = {"model.num_frames": 16, "model.tau": 4, "model.alpha_f": 4, "model.alpha_a": 8, "model.fs_fusion_kernel": 7}
FOOTNOTE_2 = (256, 320)


def _v(name: str, description: str, paper: float, **overrides: Any) -> Variant:
    return Variant(name, description, paper, {k.replace("__", "."): v for k, v in overrides.items()})


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        _v("table5a/a-fs", "A->FS fusion (default)", 39.8, model__fusion="a-fs"),
        _v("table5a/a-f-s", "A->F->S fusion", 51.4, model__fusion="a-f-s"),
        _v("table5a/av-nonlocal", "audiovisual non-local fusion", 39.9, model__fusion="av-nonlocal"),
        _v("table5b/beta-1-8", "beta_A = 1/8", 36.0, model__beta_a=1 / 8),
        _v("table5b/beta-1-4", "beta_A = 1/4", 36.8, model__beta_a=1 / 4),
        _v("table5b/beta-1-2", "beta_A = 1/2 (default)", 39.8, model__beta_a=1 / 2),
        _v("table5b/beta-1", "beta_A = 1", 51.9, model__beta_a=1.0),
        _v("table6/slowfast", "SlowFast 4x16, R50 (no audio)", 36.1, model__pathways="slowfast"),
        _v("table6/pool5", "audio fused at pool5 only", 38.4, model__fusion_stages=["pool5"]),
        _v("table6/res4-pool5", "audio fused at res4 + pool5", 39.1, model__fusion_stages=["res4", "pool5"]),
        _v("table6/res3-4-pool5", "audio fused at res3,4 + pool5 (default)", 39.8,
           model__fusion_stages=["res3", "res4", "pool5"]),
        _v("table6/res2-3-4-pool5", "audio fused at res2,3,4 + pool5", 40.2,
           model__fusion_stages=["res2", "res3", "res4", "pool5"]),
        _v("tableA3/audio-only", "Audio-only network (full-width audio ResNet-50)", 14.2,
           model__pathways="audio", model__beta_a=1.0),
        _v("table3/slowfast-r50", "SlowFast 4x16, R50", 36.0, model__pathways="slowfast"),
        _v("table3/avslowfast-r50", "AVSlowFast 4x16, R50", 40.0),
        Variant("table3/slowfast-r101", "SlowFast 8x8, R101", 106.0, {**R101_8x8, **SLOWFAST}),
        Variant("table3/avslowfast-r101", "AVSlowFast 8x8, R101", 129.0, dict(R101_8x8)),
        Variant("table4/slowfast-r101-nl", "SlowFast 16x8, R101+NL (Charades, 157 classes)", 234.0,
                {**R101_NL_16x8, **SLOWFAST}),
        Variant("table4/avslowfast-r101-nl", "AVSlowFast 16x8, R101+NL (Charades, 157 classes)", 278.0,
                dict(R101_NL_16x8)),
        Variant("table7/slowfast-r50", "AVA detection, SlowFast 4x16, R50", 65.7, {**DETECTION, **SLOWFAST},
                FOOTNOTE_2),
        Variant("table7/avslowfast-r50", "AVA detection, AVSlowFast 4x16, R50", 67.1, dict(DETECTION), FOOTNOTE_2),
        Variant("table7/slowfast-r101-nl", "AVA detection, SlowFast 8x8, R101+NL", 184.0,
                {**R101_NL_8x8, **DETECTION, **SLOWFAST}, FOOTNOTE_2),
        Variant("table7/avslowfast-r101-nl", "AVA detection, AVSlowFast 8x8, R101+NL", 210.0,
                {**R101_NL_8x8, **DETECTION}, FOOTNOTE_2),
        Variant("tableA1/avslowfast-4x16", "SSL (AVS+ROT) AVSlowFast 4x16, R50", 36.2, dict(SSL), FOOTNOTE_2, 38.5),
        Variant("tableA1/avslowfast-8x8", "SSL (AVS+ROT) AVSlowFast 8x8, R50", 63.4, {**R50_8x8, **SSL}, FOOTNOTE_2,
                38.5),
        Variant("tableA1/avslowfast-16x4", "SSL (AVS+ROT) AVSlowFast 16x4, R50", 117.9, {**R50_16x4, **SSL},
                FOOTNOTE_2, 38.5),
        Variant("tableA1/slowfast-4x16-rot", "SSL (ROT) SlowFast 4x16, R50", 34.2, {**SSL, **SLOWFAST}, FOOTNOTE_2,
                33.0),
    ]
}


def get_variant(name: str) -> Variant:
    from avsf.config import ConfigError

    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown variant '{name}' (see `avsf flops --list`)") from None
