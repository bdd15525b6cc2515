"""GFLOPs and parameters of one model variant, counted with fvcore.

fvcore counts one multiply-add as one FLOP, the convention behind the paper's GFLOPs. The
count is for one clip (one spacetime view) in evaluation mode, at `input_size` (an int for a
square clip, or (height, width): the paper's detection and SSL rows use 256x320, footnote 2).
Detection models are counted with one person box covering the clip (the RoI head's cost per
box is a few MFLOPs; fvcore counts roi_align itself as zero).

`count(..., cache=True)` keeps each result under $AVSF_CACHE/flops/ (default
~/.cache/avsf/flops/), keyed by the model config, the input size and a digest of the model
code, so a second `avsf flops --list` reads instead of tracing, and any change to the model
code counts afresh.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from avsf.config import ModelConfig
from avsf.io import atomic_write_json

Size = int | tuple[int, int]


@dataclass
class FlopReport:
    gflops: float
    params_m: float
    by_pathway: dict[str, float] = field(default_factory=dict)  # GFLOPs per pathway

    @property
    def audio_share(self) -> float:
        return self.by_pathway.get("audio", 0.0) / self.gflops if self.gflops else 0.0

    def to_dict(self) -> dict:
        """Six significant digits: a tiny model's 0.00188 GFLOPs keeps its digits."""
        return {
            "gflops": _sig(self.gflops),
            "params_m": _sig(self.params_m),
            "audio_share": round(self.audio_share, 4),
            "by_pathway": {k: _sig(v) for k, v in self.by_pathway.items()},
        }


def _sig(value: float) -> float:
    return float(f"{value:.6g}")


def hw(input_size: Size) -> tuple[int, int]:
    """(height, width) of an input size given as an int (square) or a pair."""
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


class _TensorInputs(nn.Module):
    """fvcore traces tensors, not dicts: adapt positional tensors to the model's batch dict."""

    def __init__(self, model: nn.Module, keys: list[str]):
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.model(dict(zip(self.keys, tensors)))
        return out["box_logits"] if "box_logits" in out else out["logits"]


def example_inputs(cfg: ModelConfig, input_size: Size, batch: int = 1) -> dict[str, torch.Tensor]:
    h, w = hw(input_size)
    inputs = {
        "slow": torch.zeros(batch, 3, cfg.num_frames, h, w),
        "fast": torch.zeros(batch, 3, cfg.fast_frames, h, w),
        "audio": torch.zeros(batch, 1, cfg.audio_frames, cfg.mel_bins),
    }
    if cfg.head == "detection":  # one box over the whole keyframe per clip
        inputs["boxes"] = torch.tensor([0.0, 0.0, w, h]).expand(batch, 1, 4).contiguous()
        inputs["box_mask"] = torch.ones(batch, 1, dtype=torch.bool)
    return inputs


_PATHWAY_OF_MODULE = {
    "slow": "slow", "fast": "fast", "audio": "audio",
    "fs_laterals": "fusion", "av_laterals": "fusion", "head": "head",
}


def _networks(model: nn.Module) -> list[str]:
    """Module-name prefixes of the networks inside: one, or two for a late ensemble."""
    return ["model.visual.", "model.audio."] if hasattr(model, "visual") else ["model."]


def _counted_config(cfg: ModelConfig) -> ModelConfig:
    cfg = copy.deepcopy(cfg)
    if cfg.num_classes <= 0:
        cfg.num_classes = 400  # FLOPs of the fc are negligible; the paper counts 400 classes
    return cfg


def count(cfg: ModelConfig, input_size: Size = 256, model: nn.Module | None = None, *,
          cache: bool = False) -> FlopReport:
    """FLOPs of one clip at `input_size` for `cfg` (a model is built unless given; a given
    model is never cached, since it need not be the one `cfg` describes)."""
    cfg = _counted_config(cfg)
    path = _cache_path(cfg, input_size) if cache and model is None else None
    if path is not None and path.exists():
        try:
            return FlopReport(**json.loads(path.read_text())["report"])
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: count again and overwrite it
    report = _trace(cfg, input_size, model)
    if path is not None:
        atomic_write_json(path, {"report": dataclasses.asdict(report), "input": list(hw(input_size)),
                                 "model": dataclasses.asdict(cfg)})
    return report


def _trace(cfg: ModelConfig, input_size: Size, model: nn.Module | None) -> FlopReport:
    from fvcore.nn import FlopCountAnalysis

    from avsf.model import build_model

    model = model if model is not None else build_model(cfg)
    was_training = model.training
    model.eval()
    inputs = example_inputs(cfg, input_size)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad():
        analysis = FlopCountAnalysis(_TensorInputs(model, list(inputs)), tuple(inputs.values()))
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


def cache_dir() -> Path:
    return Path(os.environ.get("AVSF_CACHE") or Path.home() / ".cache" / "avsf") / "flops"


def _cache_path(cfg: ModelConfig, input_size: Size) -> Path:
    import fvcore

    key = json.dumps({"model": dataclasses.asdict(cfg), "input": list(hw(input_size)), "code": _code_digest(),
                      "torch": torch.__version__, "fvcore": getattr(fvcore, "__version__", "")}, sort_keys=True)
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _code_digest() -> str:
    """Digest of the code that decides a count: the model package and this file."""
    here = Path(__file__).resolve().parent
    files = sorted((here / "model").rglob("*.py")) + [Path(__file__).resolve()]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(here)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()
