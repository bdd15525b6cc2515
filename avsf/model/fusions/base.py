"""What a fusion type is: an object that builds one audio->visual lateral per junction and
says how its output joins the visual pathways (contract 9 of the coordination plan).

A fusion adds a term computed from the audio (and, if it wants, the visual) features to one
visual pathway at each junction of `model.fusion_stages` (pool5 excluded: that is the head's
concatenation). Where it joins fixes the order of operations at a junction:

    into = "fast": fast += term, before the Fast->Slow lateral (which carries it on to Slow)
    into = "slow": slow += term, after the Fast->Slow concatenation

The network owns DropPathway: it multiplies the term by zero (or swaps in its running mean)
before `combine`, so a fusion declares the term's width (`channels`) and nothing else about it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avsf.config import ModelConfig


@dataclass(frozen=True)
class Junction:
    """Sizes at one junction, as a fusion sees them when it builds its lateral."""

    name: str
    audio_channels: int
    audio_frames: int  # audio time length after this junction
    slow_channels: int  # Slow width after this junction's Fast->Slow concatenation
    fast_channels: int
    slow_frames: int
    fast_frames: int


class Fusion:
    """Base class of a fusion type; subclasses are registered by name (`register_fusion`)."""

    name = ""
    into = "slow"  # "slow" | "fast": the pathway the term is added to
    # The pathway whose frame count the audio is resampled to with an integer time stride
    # ("slow" | "fast"); None when the lateral needs no such alignment. Checked by
    # ModelConfig.validate, so a bad alpha_a fails when the config is built.
    aligns_to: str | None = "slow"
    # True when the term depends on the audio only; the authors' AVS ("fused" inputs) then
    # reads the lateral's output as the junction's audio features.
    audio_only = True

    def channels(self, j: Junction) -> int:
        """Width of the term this fusion adds at `j` (DropPathway keeps one buffer per term)."""
        return j.fast_channels if self.into == "fast" else j.slow_channels

    def target_frames(self, j: Junction) -> int:
        return j.fast_frames if self.aligns_to == "fast" else j.slow_frames

    def build(self, j: Junction, cfg: ModelConfig) -> nn.Module:
        """The lateral module of junction `j` (stored as `av_laterals.<junction>`)."""
        raise NotImplementedError(f"fusion '{self.name}' must implement build()")

    def term(self, lateral: nn.Module, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """The additive term, broadcastable to `visual` (the pathway it joins)."""
        return lateral(audio)

    def combine(self, visual: torch.Tensor, term: torch.Tensor) -> torch.Tensor:
        return visual + term
