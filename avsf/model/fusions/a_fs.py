"""A->FS (the default, Fig. 2 centre): audio added to the Slow features after the Fast->Slow
concatenation, resampled to the Slow frame rate. Fusing into the temporally coarse Slow
features tolerates audio/visual misalignment."""

from __future__ import annotations

from torch import nn

from avsf.config import ModelConfig
from avsf.model.fusions import register_fusion
from avsf.model.fusions.base import Fusion, Junction
from avsf.model.laterals import AudioTemporalLateral


@register_fusion("a-fs")
class AudioToSlowFast(Fusion):
    into = "slow"
    aligns_to = "slow"

    def build(self, j: Junction, cfg: ModelConfig) -> nn.Module:
        return AudioTemporalLateral(j.audio_channels, self.channels(j), inner=cfg.afs_channels,
                                    kernel=cfg.afs_kernel, stride=j.audio_frames // self.target_frames(j))
