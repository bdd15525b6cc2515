"""Build a model from `ModelConfig`, validating every field first (errors name the field)."""

from __future__ import annotations

import copy

from torch import nn

from avsf.config import AVS_JUNCTIONS, STAGES, ConfigError, ModelConfig
from avsf.model.avslowfast import STAGE_DEPTHS, AVSlowFast, LateEnsemble, stage_blocks

PATHWAYS = ("avslowfast", "slowfast", "audio", "late-ensemble")
HEADS = ("softmax", "sigmoid", "verb-noun")


def _need(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"model.{field}: {message}")


def validate(cfg: ModelConfig) -> None:
    _need(cfg.pathways in PATHWAYS, "pathways", f"'{cfg.pathways}' is not one of {', '.join(PATHWAYS)}")
    from avsf.model.fusions import registered_fusions

    _need(cfg.fusion in registered_fusions(), "fusion", f"'{cfg.fusion}' is not one of {', '.join(registered_fusions())}")
    _need(cfg.head in HEADS, "head", f"'{cfg.head}' is not one of {', '.join(HEADS)}")
    _need(cfg.audio_kernels in ("factorised", "table1", "3x3"), "audio_kernels", "use 'factorised', 'table1' or '3x3'")
    _need(cfg.drop_pathway_mode in ("zeros", "running-average"), "drop_pathway_mode", "use 'zeros' or 'running-average'")
    _need(cfg.drop_pathway_scope in ("laterals", "laterals+head"), "drop_pathway_scope", "use 'laterals' or 'laterals+head'")
    _need(cfg.avs_loss in ("contrastive", "bce"), "avs_loss", "use 'contrastive' or 'bce'")
    _need(cfg.avs_loss_form in ("authors", "avsf"), "avs_loss_form", "use 'authors' or 'avsf'")
    _need(cfg.avs_inputs in ("fused", "pooled"), "avs_inputs", "use 'fused' or 'pooled'")
    _need(cfg.avs_silence_var >= 0, "avs_silence_var", f"must be >= 0, got {cfg.avs_silence_var}")
    _need(-1 <= cfg.avs_duplicate_cos <= 1, "avs_duplicate_cos", f"a cosine similarity in [-1, 1], got {cfg.avs_duplicate_cos}")
    if cfg.stage_blocks:
        _need(len(cfg.stage_blocks) == 4 and all(b >= 1 for b in cfg.stage_blocks), "stage_blocks",
              f"needs four positive block counts (res2..res5), got {cfg.stage_blocks}")
    else:
        _need(cfg.depth in STAGE_DEPTHS, "depth", f"{cfg.depth} is not one of {sorted(STAGE_DEPTHS)}")
    for s in cfg.fusion_stages:
        _need(s in STAGES, "fusion_stages", f"unknown fusion stage '{s}' (choose from {', '.join(STAGES)})")
    for s in cfg.fs_fusion_stages or []:
        _need(s in STAGES[:4], "fs_fusion_stages", f"unknown Fast->Slow stage '{s}' (choose from {', '.join(STAGES[:4])})")
    for s in cfg.avs_layers:
        _need(s in AVS_JUNCTIONS, "avs_layers", f"unknown AVS layer '{s}' (choose from {', '.join(AVS_JUNCTIONS)})")
    for s in cfg.nonlocal_stages:
        _need(s in ("res2", "res3", "res4", "res5"), "nonlocal_stages", f"unknown stage '{s}'")
    _need(cfg.width >= 1, "width", f"must be >= 1, got {cfg.width}")
    _need(cfg.num_frames >= 1, "num_frames", f"must be >= 1, got {cfg.num_frames}")
    _need(cfg.alpha_f >= 1, "alpha_f", f"must be >= 1, got {cfg.alpha_f}")
    _need(cfg.beta_f > 0 and round(cfg.width * cfg.beta_f) >= 1, "beta_f",
          f"must be > 0 and leave at least one Fast channel (width {cfg.width} x {cfg.beta_f})")
    _need(0.0 <= cfg.drop_pathway <= 1.0, "drop_pathway", f"Pd must be in [0, 1], got {cfg.drop_pathway}")
    _need(0.0 <= cfg.dropout < 1.0, "dropout", f"must be in [0, 1), got {cfg.dropout}")
    if cfg.head == "verb-noun":
        _need(cfg.num_verbs >= 1 and cfg.num_nouns >= 1, "num_verbs", "verb-noun head needs num_verbs and num_nouns >= 1")
    else:
        _need(cfg.num_classes >= 1, "num_classes", f"must be >= 1, got {cfg.num_classes} "
              "(0 means 'from the dataset': the trainer fills it in)")
    if cfg.pathways in ("avslowfast", "audio", "late-ensemble"):
        _validate_audio(cfg)


def _validate_audio(cfg: ModelConfig) -> None:
    _need(cfg.beta_a > 0, "beta_a", f"beta_A must be > 0, got {cfg.beta_a}")
    _need(round(cfg.width * cfg.beta_a) >= 1, "beta_a", f"width {cfg.width} x beta_A {cfg.beta_a} leaves no audio channel")
    _need(cfg.alpha_a >= 1, "alpha_a", f"must be >= 1, got {cfg.alpha_a}")
    _need(cfg.audio_res2_stride in (1, 2), "audio_res2_stride", "use 1 (authors' code) or 2 (paper text)")
    k = cfg.audio_stem_kernel
    _need(cfg.audio_frames >= k, "alpha_a",
          f"audio is {cfg.audio_frames} log-mel frames (alpha_a {cfg.alpha_a} x T {cfg.num_frames}), "
          f"shorter than the {k}-frame audio stem")
    _need(cfg.mel_bins >= k, "mel_bins", f"{cfg.mel_bins} mel bins is fewer than the {k}-bin audio stem")
    down = cfg.audio_res2_stride * 8
    _need(cfg.mel_bins >= down, "mel_bins", f"{cfg.mel_bins} mel bins cannot be downsampled {down}x by res2..res5")
    if cfg.pathways != "avslowfast":
        return
    # Every lateral resamples audio to the visual length with an integer stride.
    length = cfg.audio_frames
    lengths = {"pool1": length}
    for s, stride in zip(("res2", "res3", "res4", "res5"), (cfg.audio_res2_stride, 2, 2, 2)):
        length = (length - 1) // stride + 1
        lengths[s] = length
    from avsf.model.fusions import get_fusion

    aligns_to = get_fusion(cfg.fusion).aligns_to
    if aligns_to is None:
        return
    target = cfg.fast_frames if aligns_to == "fast" else cfg.num_frames
    for s in [s for s in cfg.fusion_stages if s != "pool5"]:
        _need(lengths[s] >= target and lengths[s] % target == 0, "alpha_a",
              f"audio is {lengths[s]} frames long after {s} but the {aligns_to.capitalize()} "
              f"pathway has {target}: choose alpha_a so that it is a multiple")


def build_model(cfg: ModelConfig) -> nn.Module:
    validate(cfg)
    if cfg.pathways == "late-ensemble":
        visual = AVSlowFast(_with(cfg, pathways="slowfast"))
        audio = AVSlowFast(_with(cfg, pathways="audio"))
        return LateEnsemble(visual, audio, cfg.head)
    return AVSlowFast(cfg)


def _with(cfg: ModelConfig, **changes) -> ModelConfig:
    out = copy.deepcopy(cfg)
    for k, v in changes.items():
        setattr(out, k, v)
    return out


__all__ = ["build_model", "validate", "stage_blocks"]
