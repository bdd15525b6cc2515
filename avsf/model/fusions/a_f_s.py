"""A->F->S (Fig. 2 left): audio summed into the Fast pathway at its fine temporal rate, before
the Fast->Slow lateral, which then carries it on to Slow. Enforces strong temporal alignment."""

from __future__ import annotations

from avsf.model.fusions import register_fusion
from avsf.model.fusions.a_fs import AudioToSlowFast


@register_fusion("a-f-s")
class AudioToFastToSlow(AudioToSlowFast):
    into = "fast"
    aligns_to = "fast"
