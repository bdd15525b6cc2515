"""Tiny model configs and random input batches shared by the tests/test_model_*.py files."""

from __future__ import annotations

import torch

from avsf.config import ModelConfig, build_config


def tiny(classes: int = 3, **overrides) -> ModelConfig:
    """The `tiny` scale's model with `classes` classes and dotted `overrides`."""
    return build_config(scale="tiny", overrides={"model.num_classes": classes, **overrides}).model


def batch_for(cfg: ModelConfig, b: int = 2, *, h: int = 32, w: int = 32, seed: int = 0,
              negative: bool = False) -> dict[str, torch.Tensor]:
    """Random `slow`, `fast`, `audio` (and `audio_negative`) for `cfg` at h x w."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        "slow": torch.randn(b, 3, cfg.num_frames, h, w, generator=g),
        "fast": torch.randn(b, 3, cfg.fast_frames, h, w, generator=g),
        "audio": torch.randn(b, 1, cfg.audio_frames, cfg.mel_bins, generator=g),
    }
    if negative:
        batch["audio_negative"] = torch.randn(b, 1, cfg.audio_frames, cfg.mel_bins, generator=g)
    return batch
