"""Helpers of the weights-interop tests: a reproducible, non-trivial state dict from names and
shapes alone, and BatchNorm statistics that make eval-mode equality mean something.

tests/data/make_pyslowfast_fixture.py fills PySlowFast's model with `seeded_state` and records
its outputs; the tests rebuild the same tensors from the recorded names and shapes.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def seeded_tensor(index: int, name: str, shape: list[int]) -> torch.Tensor:
    """The `index`-th tensor of a state dict: BN statistics and affine terms near their usual
    values, weights ~ N(0, 1/fan_in) so activations stay O(1) through deep stacks."""
    g = torch.Generator().manual_seed(1000 + index)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.tensor(0, dtype=torch.long)
    if leaf == "running_var":
        return torch.rand(shape, generator=g) + 0.5
    if leaf in ("running_mean", "bias"):
        return torch.randn(shape, generator=g) * 0.1
    if len(shape) == 1:  # a BatchNorm weight
        return torch.rand(shape, generator=g) + 0.5
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) / math.sqrt(fan_in)


def seeded_state(shapes: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
    return {name: seeded_tensor(i, name, list(shape)) for i, (name, shape) in enumerate(shapes)}


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms (a fresh BN is the identity in eval,
    and the last BN of each block starts at zero, which would hide a wrong mapping)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def seeded_clip(shape: list[int], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
