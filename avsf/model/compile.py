"""`compile_model`: torch.compile by region, for `train.compile`.

Compiling the whole AVSlowFast graph at once took more than 80 s at R50 on an H100 (issue 11):
one graph with three pathways, laterals and data-dependent AVS/DropPathway branches. Regional
compilation compiles each residual block (or each stage) on its own; blocks of the same shape
share one compiled graph, so the R50 model compiles a few dozen small graphs, and the glue
between them (stems, laterals, DropPathway's draw, heads) stays eager, where its Python
branches cost nothing. `Module.compile` compiles in place: parameter names, state dicts and
checkpoints are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from avsf.model.blocks import AudioBottleneck, Bottleneck3d, FactorisedBottleneck, NonLocal3d, TimeFrequencyBottleneck
from avsf.model.pathways import Stage

MODES = ("blocks", "stages", "model")
"""blocks: every residual (and non-local) block; stages: every pathway stage; model: one graph."""

_BLOCKS = (Bottleneck3d, AudioBottleneck, TimeFrequencyBottleneck, FactorisedBottleneck, NonLocal3d)


def compile_regions(model: nn.Module, mode: str) -> list[nn.Module]:
    """The modules `compile_model` compiles, outermost first (a block inside a compiled stage is
    left to the stage's graph)."""
    if mode not in MODES:
        raise ValueError(f"compile mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "model":
        return [model]
    kinds = _BLOCKS if mode == "blocks" else (Stage,)
    return [m for m in model.modules() if isinstance(m, kinds)]


def compile_model(model: nn.Module, mode: str = "blocks", *, backend: str = "inductor",
                  compile_mode: str | None = None) -> nn.Module:
    """Compile `model`'s regions in place with torch.compile; returns `model`.

    `backend` and `compile_mode` go to torch.compile ("inductor", "aot_eager", ...; None,
    "reduce-overhead", "max-autotune", ...).
    """
    regions = compile_regions(model, mode)
    for region in regions:
        region.compile(backend=backend, mode=compile_mode)
    # Every compiled region runs the same code object (Module._call_impl), so dynamo counts
    # their graphs against one recompile limit (8 by default); each region may need one graph
    # per mode (train, eval) and one more once the batch size changes (then dynamic).
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, 3 * len(regions) + 8)
    return model


__all__ = ["MODES", "compile_model", "compile_regions"]
