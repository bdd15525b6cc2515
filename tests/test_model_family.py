"""The model family on tiny configs: shapes, DropPathway, AVS heads, input safety, validation."""

from __future__ import annotations

import copy

import pytest
import torch

from avsf.config import ConfigError, build_config
from avsf.flops import count
from avsf.model import build_model
from _model_batches import batch_for
from _model_batches import tiny as _tiny

CLASSES = 5


def tiny(**overrides):
    return _tiny(CLASSES, **overrides)


def make_batch(cfg, b=2, seed=0, negative=False):
    return batch_for(cfg, b, seed=seed, negative=negative)


@pytest.mark.parametrize("fusion", ["a-fs", "a-f-s", "av-nonlocal"])
@pytest.mark.parametrize(
    "stages",
    [["pool5"], ["res4", "pool5"], ["res3", "res4", "pool5"], ["res2", "res3", "res4", "pool5"],
     ["pool1", "res2", "res3", "res4", "pool5"], ["res3", "res4"]],
)
def test_every_fusion_type_and_stage_set_gives_class_logits(fusion, stages):
    cfg = tiny(**{"model.fusion": fusion, "model.fusion_stages": stages})
    model = build_model(cfg).eval()
    out = model(make_batch(cfg))
    assert out["logits"].shape == (2, CLASSES)
    assert torch.isfinite(out["logits"]).all()


@pytest.mark.parametrize("pathways", ["slowfast", "audio", "late-ensemble"])
def test_other_pathway_sets(pathways):
    cfg = tiny(**{"model.pathways": pathways})
    out = build_model(cfg).eval()(make_batch(cfg))
    assert out["logits"].shape == (2, CLASSES)
    if pathways == "late-ensemble":
        assert len(out["member_logits"]) == 2
        # logits are log of the averaged member probabilities
        avg = sum(m.softmax(1) for m in out["member_logits"]) / 2
        torch.testing.assert_close(out["logits"].softmax(1), avg)


def test_heads_softmax_sigmoid_verb_noun():
    for head in ("softmax", "sigmoid"):
        cfg = tiny(**{"model.head": head})
        assert build_model(cfg).eval()(make_batch(cfg))["logits"].shape == (2, CLASSES)
    cfg = tiny(**{"model.head": "verb-noun", "model.num_verbs": 3, "model.num_nouns": 7})
    out = build_model(cfg).eval()(make_batch(cfg))
    assert out["verb_logits"].shape == (2, 3) and out["noun_logits"].shape == (2, 7)
    assert out["logits"].shape == (2, 10)


def test_depth_r101_and_nonlocal_build_with_small_widths():
    cfg = tiny(**{"model.stage_blocks": [], "model.depth": 101, "model.width": 4, "model.nonlocal_stages": ["res4"]})
    model = build_model(cfg).eval()
    assert sum(1 for m in model.modules() if type(m).__name__ == "NonLocal3d") == 3  # after blocks 6, 13, 20
    assert model(make_batch(cfg))["logits"].shape == (2, CLASSES)


def _audio_sensitivity(cfg, seed=0, trials=4):
    """Largest change of the output when only the audio input changes (train mode)."""
    model = build_model(cfg).train()
    torch.manual_seed(seed)
    base = make_batch(cfg, seed=1)
    other = dict(base, audio=torch.randn_like(base["audio"]) * 3)
    diffs = []
    for t in range(trials):
        twin = copy.deepcopy(model)  # same running statistics for both forwards
        torch.manual_seed(100 + t)
        a = model(base)["logits"]
        torch.manual_seed(100 + t)  # same DropPathway draw and dropout mask
        b = twin(other)["logits"]
        diffs.append((a - b).abs().max().item())
    return max(diffs)


def _nonzero_fusion(cfg):
    # Zero-initialised last BNs would hide the audio path at initialisation; open it up.
    cfg.zero_init_last_bn = False
    cfg.dropout = 0.0
    return cfg


HEAD_SCOPE = {"model.drop_pathway_scope": "laterals+head"}


def test_droppathway_pd1_makes_output_independent_of_audio_and_pd0_does_not():
    assert _audio_sensitivity(_nonzero_fusion(tiny(**{"model.drop_pathway": 1.0, **HEAD_SCOPE}))) == 0.0
    assert _audio_sensitivity(_nonzero_fusion(tiny(**{"model.drop_pathway": 0.0, **HEAD_SCOPE}))) > 1e-6


def test_droppathway_laterals_scope_drops_the_additions_and_keeps_pool5_audio():
    no_pool5 = {"model.drop_pathway": 1.0, "model.fusion_stages": ["res3", "res4"]}
    assert _audio_sensitivity(_nonzero_fusion(tiny(**no_pool5))) == 0.0
    assert _audio_sensitivity(_nonzero_fusion(tiny(**{"model.drop_pathway": 1.0}))) > 1e-6  # via the head
    assert not hasattr(build_model(tiny()).drop_pathway, "running_pool5")
    assert hasattr(build_model(tiny(**HEAD_SCOPE)).drop_pathway, "running_pool5")


def test_droppathway_running_average_mode_also_ignores_current_audio():
    cfg = _nonzero_fusion(tiny(**{"model.drop_pathway": 1.0, "model.drop_pathway_mode": "running-average", **HEAD_SCOPE}))
    assert _audio_sensitivity(cfg) == 0.0


def test_eval_mode_never_drops():
    cfg = _nonzero_fusion(tiny(**{"model.drop_pathway": 1.0}))
    model = build_model(cfg).eval()
    base = make_batch(cfg, seed=1)
    other = dict(base, audio=torch.randn_like(base["audio"]) * 3)
    with torch.no_grad():
        assert (model(base)["logits"] - model(other)["logits"]).abs().max() > 1e-6


def test_sync_heads_return_pair_logits_at_valid_junctions():
    cfg = tiny(**{"model.avs_layers": ["res3", "res4", "res5"], "model.drop_pathway": 1.0})
    model = build_model(cfg).train()
    out = model(make_batch(cfg, negative=True))
    # audio dropped: no fusion happened, so every junction may carry AVS
    assert set(out["sync"]) == {"res3", "res4", "res5"}
    assert all(v.shape == (2, 2) for v in out["sync"].values())
    cfg.drop_pathway = 0.0
    out = build_model(cfg).train()(make_batch(cfg, negative=True))
    # fused at res3: AVS only at the junctions up to the earliest fusion
    assert set(out["sync"]) == {"res3"}
    assert "sync" not in build_model(cfg).eval()(make_batch(cfg, negative=True))


def test_bce_sync_head():
    cfg = tiny(**{"model.avs_loss": "bce", "model.avs_layers": ["res5"], "model.drop_pathway": 1.0})
    out = build_model(cfg).train()(make_batch(cfg, negative=True))
    assert out["sync"]["res5"].shape == (2, 2)


def test_forward_never_mutates_inputs():
    cfg = tiny()
    batch = make_batch(cfg, negative=True)
    snapshot = {k: v.clone() for k, v in batch.items()}
    keys = list(batch)
    for mode in (True, False):
        build_model(cfg).train(mode)(batch)
    assert list(batch) == keys
    for k, v in batch.items():
        assert torch.equal(v, snapshot[k]), k


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"model.beta_a": 0.0}, "model.beta_a"),
        ({"model.beta_a": -0.5}, "model.beta_a"),
        ({"model.fusion_stages": ["res9"]}, "model.fusion_stages"),
        ({"model.fusion": "late"}, "model.fusion"),
        ({"model.alpha_a": 2}, "model.alpha_a"),  # 4 log-mel frames: shorter than the 9-frame stem
        ({"model.avs_layers": ["pool1"]}, "model.avs_layers"),
        ({"model.drop_pathway": 1.5}, "model.drop_pathway"),
        ({"model.head": "softmaxx"}, "model.head"),
        ({"model.num_classes": 0}, "model.num_classes"),
    ],
)
def test_bad_config_fails_at_build_time_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_model(tiny(**overrides))


def test_unknown_key_and_bad_value_are_named():
    with pytest.raises(ConfigError, match="model.betaa"):
        build_config(overrides=["model.betaa=0.5"])
    with pytest.raises(ConfigError, match="model.beta_a"):
        build_config(overrides=["model.beta_a=abc"])
    assert build_config(overrides=["model.beta_a=1/8"]).model.beta_a == 0.125


def test_flop_count_is_consistent_with_pathways():
    full = count(tiny(), input_size=32)
    # the same visual network (AVSlowFast keeps Fast->Slow laterals at res3, res4 only)
    visual = count(tiny(**{"model.pathways": "slowfast", "model.fs_fusion_stages": ["res3", "res4"]}), input_size=32)
    audio = count(tiny(**{"model.pathways": "audio"}), input_size=32)
    assert full.gflops > visual.gflops > 0 and full.gflops > audio.gflops > 0
    assert full.by_pathway["audio"] == audio.by_pathway["audio"]
    assert full.by_pathway["slow"] + full.by_pathway["fast"] == visual.by_pathway["slow"] + visual.by_pathway["fast"]
    assert 0 < full.audio_share < 1
    assert abs(sum(full.by_pathway.values()) - full.gflops) / full.gflops < 0.01
