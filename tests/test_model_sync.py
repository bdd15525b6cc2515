"""AVS as the authors built it and as avsf first read it: inputs, mask, loss forms; the
Fast->Slow stage rule, DropPathway scope and the Table-1 audio block (issue 18)."""

from __future__ import annotations

import math

import pytest
import torch

from avsf.flops import count
from avsf.model import build_model
from avsf.model.avslowfast import fs_fusion_stages
from avsf.model.sync import sync_loss, sync_mask
from _model_batches import batch_for as _batch_for
from _model_batches import tiny


def batch_for(cfg):
    return _batch_for(cfg, 4, negative=True)


def test_mask_drops_silent_audio_and_duplicate_pairs():
    audio = torch.randn(5, 1, 16, 8)
    negative = torch.randn(5, 1, 16, 8)
    audio[1] = -2.44  # a silent clip: flat log-mel
    negative[2] = 0.05 * torch.randn(1, 16, 8)  # near-silent negative (variance 0.0025)
    negative[3] = audio[3] * 1.000001  # the same audio as the positive
    keep = sync_mask(audio, negative, silence_var=0.01, duplicate_cos=0.99999)
    assert keep.tolist() == [True, False, False, False, True]
    assert sync_mask(audio, negative, silence_var=0.0, duplicate_cos=1.0).tolist() == [True] * 5


def test_model_scores_only_the_unmasked_clips():
    cfg = tiny(**{"model.drop_pathway": 1.0})
    batch = batch_for(cfg)
    batch["audio"][0] = 0.0
    out = build_model(cfg).train()(batch)
    assert out["sync_mask"].tolist() == [False, True, True, True]
    assert {k: v.shape for k, v in out["sync"].items()} == {s: (3, 2) for s in ("res3", "res4", "res5")}
    cfg.avs_mask = False
    out = build_model(cfg).train()(batch)
    assert out["sync"]["res3"].shape == (4, 2) and out["sync_mask"].all()


def test_authors_loss_form_hinges_the_distance_divides_by_2n_and_sums_junctions():
    cfg = tiny(**{"model.avs_margin": 0.99})
    sq_pos, sq_neg = torch.tensor([0.1, 0.3]), torch.tensor([0.25, 1.5])
    s = torch.stack([-sq_pos, -sq_neg], 1)
    one = (0.1 + 0.3 + (0.99 - 0.5) ** 2 + 0.0) / 4  # sqrt(0.25) = 0.5; sqrt(1.5) > margin
    assert sync_loss({"res3": s}, cfg).item() == pytest.approx(one)
    assert sync_loss({"res3": s, "res4": s}, cfg).item() == pytest.approx(2 * one)
    cfg.avs_loss_form = "avsf"
    avsf = 0.2 + ((0.99 - 0.25) ** 2 + 0.0) / 2
    assert sync_loss({"res3": s, "res4": s}, cfg).item() == pytest.approx(avsf)
    assert sync_loss({}, cfg) is None


def test_a_fully_masked_junction_adds_zero_and_keeps_the_graph():
    cfg = tiny()
    empty = torch.zeros(0, 2, requires_grad=True)
    loss = sync_loss({"res3": empty}, cfg)
    assert loss.item() == 0.0 and loss.requires_grad
    full = torch.tensor([[-0.2, -0.04]], requires_grad=True)  # d_neg = 0.2
    loss = sync_loss({"res3": empty, "res4": full}, cfg)
    assert loss.item() == pytest.approx((0.2 + (0.99 - 0.2) ** 2) / 2)
    loss.backward()
    assert math.isfinite(full.grad.abs().sum().item())


def test_fused_inputs_pair_the_fused_slow_with_the_lateral_audio():
    cfg = tiny(**{"model.avs_layers": ["res3", "res4", "res5"]})
    model = build_model(cfg)
    j = model.junctions()
    for s in ("res3", "res4"):  # the A->FS lateral's output is the audio side; no extra modules
        head = model.sync_heads[s]
        assert head.visual.in_features == head.audio.in_features == j[s].slow_channels
        assert s not in model.sync_fs and s not in model.sync_laterals
    # res5 has no fusion: a Fast->Slow conv and an audio lateral for AVS alone
    assert set(model.sync_fs) == set(model.sync_laterals) == {"res5"}
    width = model.slow.out_channels["res5"] + model.sync_fs["res5"].out_channels
    assert model.sync_heads["res5"].visual.in_features == model.sync_heads["res5"].audio.in_features == width
    pooled = build_model(tiny(**{"model.avs_inputs": "pooled"}))
    assert pooled.sync_heads["res3"].visual.in_features == j["res3"].fast_channels + model.slow.out_channels["res3"]
    assert pooled.sync_heads["res3"].audio.in_features == j["res3"].audio_channels
    assert not len(pooled.sync_fs) and not len(pooled.sync_laterals)


@pytest.mark.parametrize("fusion", ["a-f-s", "av-nonlocal", "a-f-s-broadcast"])
def test_fused_inputs_with_every_fusion_type(fusion):
    cfg = tiny(**{"model.fusion": fusion, "model.drop_pathway": 1.0})
    model = build_model(cfg).train()
    out = model(batch_for(cfg))
    assert set(out["sync"]) == {"res3", "res4", "res5"}
    # A->F->S puts audio into Fast before the Fast->Slow lateral: AVS reads an audio-free copy
    assert "res3" in model.sync_fs if fusion != "av-nonlocal" else "res3" not in model.sync_fs
    loss = sync_loss(out["sync"], cfg)
    loss.backward()
    assert math.isfinite(loss.item())


def test_avs_options_and_scope_leave_the_inference_flops_unchanged():
    base = count(tiny(), input_size=32).gflops
    for sets in ({"model.avs_inputs": "pooled"}, {"model.avs_loss_form": "avsf"}, {"model.avs_mask": False},
                 {"model.drop_pathway_scope": "laterals+head"}, {"model.avs_layers": []}):
        assert count(tiny(**sets), input_size=32).gflops == base, sets


def test_fast_to_slow_stages_follow_the_audio_fusion_stages():
    assert fs_fusion_stages(tiny(**{"model.fusion_stages": ["pool5"]})) == []
    assert fs_fusion_stages(tiny(**{"model.fusion_stages": ["res4", "pool5"]})) == ["res4"]
    assert fs_fusion_stages(tiny()) == ["res3", "res4"]
    assert fs_fusion_stages(tiny(**{"model.fusion_stages": ["pool5", "res2", "res4"]})) == ["res2", "res4"]
    assert fs_fusion_stages(tiny(**{"model.pathways": "slowfast"})) == ["pool1", "res2", "res3", "res4"]
    assert fs_fusion_stages(tiny(**{"model.fusion_stages": ["pool5"], "model.fs_fusion_stages": ["res3"]})) == ["res3"]
    model = build_model(tiny(**{"model.fusion_stages": ["pool5"]}))
    assert not len(model.fs_laterals) and model(batch_for(model.cfg))["logits"].shape == (4, 3)


def test_table1_audio_block_costs_less_than_3x3_and_v1_more():
    # a full-width R50 audio pathway (with one block per stage, v1's branches read only the
    # narrow stage inputs and cost no more than 3x3), on the tiny clip's log-mel
    r50 = {"model.pathways": "audio", "model.width": 64, "model.stage_blocks": []}
    audio = {k: count(tiny(**r50, **{"model.audio_kernels": k}),
                      input_size=32).gflops for k in ("table1", "3x3", "factorised")}
    assert audio["table1"] < audio["3x3"] < audio["factorised"]
    cfg = tiny(**{"model.audio_kernels": "table1"})
    model = build_model(cfg)
    assert type(model.audio.stages[0][0]).__name__ == "FactorisedBottleneck"
    assert type(model.audio.stages[2][0]).__name__ == "AudioBottleneck"
    assert model.train()(batch_for(cfg))["logits"].shape == (4, 3)


def test_a_run_config_from_before_the_avs_form_fields_keeps_its_model():
    from avsf.config import build_config, config_from_dict

    stored = build_config(scale="tiny", overrides={"model.num_classes": 3, "model.fusion_stages": ["pool5"]}).to_dict()
    for key in ("avs_inputs", "avs_loss_form", "avs_mask", "avs_silence_var", "avs_duplicate_cos",
                "drop_pathway_scope", "rot_head"):
        del stored["model"][key]
    old = config_from_dict(stored).model
    assert (old.avs_inputs, old.avs_loss_form, old.avs_mask, old.drop_pathway_scope) == (
        "pooled", "avsf", False, "laterals+head")
    assert fs_fusion_stages(old) == ["res3", "res4"]  # the rule it was built with
    model = build_model(old)
    assert hasattr(model.drop_pathway, "running_pool5") and not len(model.sync_fs)
    default = build_config(scale="tiny").to_dict()
    for key in ("avs_inputs", "avs_loss_form", "avs_mask", "drop_pathway_scope"):
        del default["model"][key]
    assert config_from_dict(default).model.fs_fusion_stages is None  # same rule either way: left alone
