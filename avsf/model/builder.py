"""Build a model from `ModelConfig`, validated first (`ModelConfig.validate`: errors name the field)."""

from __future__ import annotations

import copy

from torch import nn

from avsf.config import ModelConfig
from avsf.model.avslowfast import AVSlowFast, LateEnsemble, stage_blocks


def validate(cfg: ModelConfig) -> None:
    """Every model rule lives in `ModelConfig.validate`; building also needs concrete class counts."""
    cfg.validate(resolved=True)


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
