"""Training: `train(cfg, out_dir)` and the config resolution the CLI uses.

See docs/training.md for the recipe, the run folder and the resume / distributed behaviour.
"""

from __future__ import annotations

from pathlib import Path

from avsf.config import Config, ConfigError, build_config, load_config
from avsf.train.loop import TooManyFailedClips, TrainingDiverged, train

__all__ = ["train", "resolve_config", "TrainingDiverged", "TooManyFailedClips"]


def resolve_config(
    variant: str | None = None,
    config: str | Path | None = None,
    scale: str | None = None,
    sets: list[str] | None = None,
) -> Config:
    """A paper variant (`avsf.model.variants.VARIANTS`) or a TOML file, at a scale, with
    `key=value` overrides on top. With neither, the defaults at that scale."""
    sets = list(sets or [])
    if variant and config:
        raise ConfigError("give either a variant or a config file, not both")
    if config:
        return load_config(config, scale=scale, overrides=sets)
    if variant:
        from avsf.model.variants import VARIANTS

        if variant not in VARIANTS:
            raise ConfigError(f"unknown variant '{variant}' (known: {', '.join(sorted(VARIANTS))})")
        cfg = build_config(scale=scale, base=dict(VARIANTS[variant].overrides), overrides=sets)
        if not cfg.name:
            cfg.name = variant
        return cfg
    return build_config(scale=scale, overrides=sets)
