"""GFLOPs and parameters of one model variant, counted with fvcore.

fvcore counts one multiply-add as one FLOP, the convention behind the paper's GFLOPs. The
count is for one clip (one spacetime view) in evaluation mode, at `input_size` x `input_size`.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from avsf.config import ModelConfig

@dataclass
class FlopReport:
    gflops: float
    params_m: float
    by_pathway: dict[str, float] = field(default_factory=dict)  # GFLOPs per pathway

    @property
    def audio_share(self) -> float:
        return self.by_pathway.get("audio", 0.0) / self.gflops if self.gflops else 0.0

    def to_dict(self) -> dict:
        return {
            "gflops": round(self.gflops, 3),
            "params_m": round(self.params_m, 3),
            "audio_share": round(self.audio_share, 4),
            "by_pathway": {k: round(v, 3) for k, v in self.by_pathway.items()},
        }


class _TensorInputs(nn.Module):
    """fvcore traces tensors, not dicts: adapt (slow, fast, audio) to the model's batch dict."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, slow: torch.Tensor, fast: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.model({"slow": slow, "fast": fast, "audio": audio})["logits"]


def example_inputs(cfg: ModelConfig, input_size: int, batch: int = 1) -> dict[str, torch.Tensor]:
    return {
        "slow": torch.zeros(batch, 3, cfg.num_frames, input_size, input_size),
        "fast": torch.zeros(batch, 3, cfg.fast_frames, input_size, input_size),
        "audio": torch.zeros(batch, 1, cfg.audio_frames, cfg.mel_bins),
    }


_PATHWAY_OF_MODULE = {
    "slow": "slow", "fast": "fast", "audio": "audio",
    "fs_laterals": "fusion", "av_laterals": "fusion", "head": "head",
}


def _networks(model: nn.Module) -> list[str]:
    """Module-name prefixes of the networks inside: one, or two for a late ensemble."""
    return ["model.visual.", "model.audio."] if hasattr(model, "visual") else ["model."]


def count(cfg: ModelConfig, input_size: int = 256, model: nn.Module | None = None) -> FlopReport:
    """FLOPs of one clip at `input_size`^2 for `cfg` (a model is built unless given)."""
    from fvcore.nn import FlopCountAnalysis

    from avsf.model import build_model

    cfg = copy.deepcopy(cfg)
    if cfg.num_classes <= 0:
        cfg.num_classes = 400  # FLOPs of the fc are negligible; the paper counts 400 classes
    model = model if model is not None else build_model(cfg)
    was_training = model.training
    model.eval()
    inputs = example_inputs(cfg, input_size)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad():
        analysis = FlopCountAnalysis(_TensorInputs(model), (inputs["slow"], inputs["fast"], inputs["audio"]))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = analysis.total()
        per_module = analysis.by_module()
    model.train(was_training)
    by_pathway: dict[str, float] = {}
    for prefix in _networks(model):
        for child, pathway in _PATHWAY_OF_MODULE.items():
            flops = per_module.get(prefix + child, 0)
            if flops:
                by_pathway[pathway] = by_pathway.get(pathway, 0.0) + flops / 1e9
    params = sum(p.numel() for p in model.parameters())
    return FlopReport(gflops=total / 1e9, params_m=params / 1e6, by_pathway=by_pathway)
