"""What a training or evaluation run builds its pieces with: model, loader, dataset description,
FLOP count. The trainer and `avsf eval` take a `Factories` argument (production defaults), so
tests hand them a toy model and loader instead of patching module internals.

    train(cfg, out, factories=Factories(model=lambda cfg: ToyModel(...), loader=..., dataset_info=...))

The defaults import avsf.model / avsf.data / avsf.flops only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from avsf.config import Config


def build_model(cfg: Config) -> Any:
    from avsf.model import build_model as build

    return build(cfg.model)


def build_loader(cfg: Config, split: str, mode: str, **kw: Any) -> Any:
    """`avsf.data.build_loader(cfg, split, mode, shard_id=, num_shards=, epoch=, with_shifted_audio=)`."""
    from avsf.data import build_loader as build

    return build(cfg, split, mode, **kw)


def dataset_info(cfg: Config) -> Any:
    from avsf.data import dataset_info as info

    return info(cfg)


def count_flops(cfg: Config) -> dict[str, float]:
    """GFLOPs and parameters (millions) of `cfg.model` at the test crop."""
    from avsf.flops import count

    rep = count(cfg.model, input_size=cfg.data.test_crop_size)
    return {"gflops": float(rep.gflops), "params_m": float(rep.params_m)}


@dataclass(frozen=True)
class Factories:
    model: Callable[[Config], Any] = build_model
    loader: Callable[..., Any] = build_loader
    dataset_info: Callable[[Config], Any] = dataset_info
    count_flops: Callable[[Config], dict[str, float]] = count_flops
