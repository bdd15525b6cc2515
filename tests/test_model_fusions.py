"""The fusion registry: built-in types by name, and a plug-in type registered from outside."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsf.config import ConfigError
from avsf.model import build_model
from avsf.model.fusions import FUSIONS, Fusion, Junction, get_fusion, register_fusion, registered_fusions
from _model_batches import batch_for, tiny


def test_builtin_fusions_are_registered_with_their_placement():
    assert set(registered_fusions()) >= {"a-fs", "a-f-s", "av-nonlocal"}
    assert (get_fusion("a-fs").into, get_fusion("a-fs").aligns_to) == ("slow", "slow")
    assert (get_fusion("a-f-s").into, get_fusion("a-f-s").aligns_to) == ("fast", "fast")
    assert (get_fusion("av-nonlocal").into, get_fusion("av-nonlocal").aligns_to) == ("slow", None)
    with pytest.raises(ConfigError, match="model.fusion: 'nope'"):
        get_fusion("nope")


def test_each_fusion_declares_the_width_droppathway_keeps():
    for name, into_fast in (("a-fs", False), ("a-f-s", True), ("av-nonlocal", False)):
        model = build_model(tiny(**{"model.fusion": name}))
        j = model.junctions()["res3"]
        want = j.fast_channels if into_fast else j.slow_channels
        assert model.drop_pathway.running_res3.numel() == want
        assert model.av_laterals["res3"](*([torch.randn(2, j.audio_channels, j.audio_frames, 2)] + (
            [torch.randn(2, j.slow_channels, j.slow_frames, 4, 4)] if name == "av-nonlocal" else []))).shape[1] == want


class _Gate(nn.Module):
    def __init__(self, dim_audio, dim_out):
        super().__init__()
        self.fc = nn.Linear(dim_audio, dim_out)

    def forward(self, audio):
        return torch.tanh(self.fc(audio.mean(dim=(2, 3))))[..., None, None, None]


class AudioGate(Fusion):
    """A toy plug-in: pooled audio scales the Slow channels (multiplicative, not additive)."""

    into = "slow"
    aligns_to = None

    def build(self, j: Junction, cfg):
        return _Gate(j.audio_channels, self.channels(j))

    def combine(self, visual, term):
        return visual * (1 + term)


def test_a_plugin_fusion_registers_without_touching_network_code(monkeypatch):
    monkeypatch.setattr("avsf.model.fusions.FUSIONS", dict(FUSIONS))  # leave the real registry untouched
    register_fusion("audio-gate")(AudioGate)
    with pytest.raises(ValueError, match="twice"):
        register_fusion("audio-gate")(AudioGate)
    cfg = tiny(**{"model.fusion": "audio-gate", "model.zero_init_last_bn": False, "model.drop_pathway": 0.0})
    model = build_model(cfg).eval()
    assert isinstance(model.av_laterals["res3"], _Gate)
    b = batch_for(cfg)
    out = model(b)["logits"]
    assert out.shape == (2, 3)
    with torch.no_grad():
        model.av_laterals["res3"].fc.bias.fill_(5.0)  # the gate's output reaches the logits
    assert not torch.allclose(model(b)["logits"], out)


def test_unregistered_fusion_fails_on_build_naming_the_field():
    with pytest.raises(ConfigError, match="model.fusion"):
        build_model(tiny(**{"model.fusion": "audio-gate"}))
