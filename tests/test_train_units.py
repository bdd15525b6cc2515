"""Schedule, losses, AVS negatives, checkpoints: behaviour on hand-made tensors."""

import json
import math

import pytest
import torch

from avsf.config import build_config
from avsf.io import atomic_write_json
from avsf.train import checkpoint as C
from avsf.train.losses import avs_enabled, avs_loss, hard_negative_mask, task_loss, with_audio_negative
from avsf.train.schedule import lr_at


def _train_cfg(**kw):
    return build_config(scale="paper", overrides={f"train.{k}": v for k, v in kw.items()})


def test_lr_warmup_is_linear_then_half_period_cosine():
    t = _train_cfg(epochs=10, warmup_epochs=2.0, warmup_start_lr=0.01, base_lr=0.1).train
    assert lr_at(t, 0.0) == pytest.approx(0.01)
    assert lr_at(t, 1.0) == pytest.approx(0.055)
    assert lr_at(t, 2.0) == pytest.approx(0.1)
    assert lr_at(t, 6.0) == pytest.approx(0.05)  # half way through the cosine: eta * 0.5
    assert lr_at(t, 10.0) == pytest.approx(0.0, abs=1e-12)
    # A.4's formula after the warm-up: eta * 0.5 * (cos(pi n / nmax) + 1)
    assert lr_at(t, 4.0) == pytest.approx(0.1 * 0.5 * (math.cos(math.pi * 2 / 8) + 1))
    lrs = [lr_at(t, e / 10) for e in range(20, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_lr_without_warmup():
    t = _train_cfg(epochs=4, warmup_epochs=0.0, base_lr=0.2).train
    assert lr_at(t, 0.0) == pytest.approx(0.2)
    assert lr_at(t, 2.0) == pytest.approx(0.1)


def test_lr_step_policy_for_fine_tuning():
    t = _train_cfg(epochs=12, warmup_epochs=0.0, base_lr=0.01, lr_policy="steps", lr_steps=[8, 10]).train
    assert [lr_at(t, e) for e in (0, 7.9, 8, 10.5)] == pytest.approx([0.01, 0.01, 0.001, 0.0001])


def test_task_losses_ce_bce_verb_noun_and_late_ensemble():
    cfg = build_config(scale="tiny")
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    label = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(logits, label)
    assert task_loss({"logits": logits}, {"label": label}, cfg) == pytest.approx(ce.item())
    # late ensemble: the sum of the members' own losses
    out = {"logits": logits, "member_logits": (logits, logits * 0)}
    want = ce + torch.nn.functional.cross_entropy(logits * 0, label)
    assert task_loss(out, {"label": label}, cfg) == pytest.approx(want.item())
    # multi-label: per-class sigmoid BCE
    cfg.model.head = "sigmoid"
    target = torch.tensor([[1.0, 0, 1], [0, 0, 1]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert task_loss({"logits": logits}, {"label": target}, cfg) == pytest.approx(bce.item())
    cfg.model.head = "verb-noun"
    v, n = torch.randn(2, 4), torch.randn(2, 5)
    b = {"verb": torch.tensor([1, 2]), "noun": torch.tensor([0, 4])}
    want = torch.nn.functional.cross_entropy(v, b["verb"]) + torch.nn.functional.cross_entropy(n, b["noun"])
    assert task_loss({"verb_logits": v, "noun_logits": n, "logits": torch.cat([v, n], 1)}, b, cfg) == pytest.approx(want.item())


def test_avs_contrastive_loss_matches_formula_and_averages_junctions():
    cfg = build_config(scale="tiny", overrides={"model.avs_margin": 0.99, "train.avs_weight": 2.0,
                                                "model.avs_loss_form": "avsf"})
    d_pos, d_neg = torch.tensor([0.1, 0.3]), torch.tensor([0.5, 1.5])
    s = torch.stack([-d_pos, -d_neg], 1)
    one = d_pos.mean() + torch.clamp(0.99 - d_neg, min=0).pow(2).mean()
    assert avs_loss({"res3": s}, cfg).item() == pytest.approx(2.0 * one.item())
    assert avs_loss({"res3": s, "res4": s * 0}, cfg).item() == pytest.approx(2.0 * (one.item() + 0.99**2) / 2)
    assert avs_loss({}, cfg) is None


def test_avs_bce_loss():
    cfg = build_config(scale="tiny", overrides={"model.avs_loss": "bce", "train.avs_weight": 1.0})
    s = torch.tensor([[3.0, -2.0], [0.0, 1.0]])
    want = torch.nn.functional.binary_cross_entropy_with_logits(s, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert avs_loss({"res4": s}, cfg).item() == pytest.approx(want.item())


def test_avs_curriculum_easy_then_quarter_hard():
    cfg = build_config(scale="tiny")
    g = torch.Generator().manual_seed(0)
    assert not hard_negative_mask(1000, 0.49, cfg, g).any()
    share = hard_negative_mask(20000, 0.5, cfg, g).float().mean().item()
    assert share == pytest.approx(0.25, abs=0.02)


def test_audio_negative_is_a_shallow_copy_with_easy_and_hard_negatives():
    cfg = build_config(scale="tiny", overrides={"train.avs_hard_fraction": 1.0})
    audio = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    batch = {"audio": audio, "audio_shifted": -audio, "label": torch.zeros(4, dtype=torch.long)}
    easy = with_audio_negative(batch, 0.1, cfg, torch.Generator().manual_seed(0))
    assert "audio_negative" not in batch and easy["audio"] is audio
    assert torch.equal(easy["audio_negative"][:, 0, 0, 0], torch.tensor([3.0, 0.0, 1.0, 2.0]))  # another clip's
    hard = with_audio_negative(batch, 0.9, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(hard["audio_negative"], -audio)  # the same clip, shifted


def test_avs_enabled_only_for_joint_av_models():
    assert avs_enabled(build_config(scale="tiny"))
    assert not avs_enabled(build_config(scale="tiny", overrides={"model.pathways": "slowfast"}))
    assert not avs_enabled(build_config(scale="tiny", overrides={"model.avs_layers": []}))


def test_atomic_json(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"a": 1})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # no temporary left
    with pytest.raises(ValueError):
        atomic_write_json(p, {"a": float("nan")})
    assert json.loads(p.read_text()) == {"a": 1}  # the old file survives a failed write


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    import random

    import numpy as np

    np.random.randn()  # a cached gaussian in numpy's state
    torch.save(C.rng_state(), tmp_path / "rng.pt")
    s = torch.load(tmp_path / "rng.pt", weights_only=True)  # tensors, numbers and lists only
    a = (torch.rand(3), np.random.rand(), random.random())
    C.set_rng_state(s)
    b = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_channels_last_3d_touches_only_video_weights():
    from avsf.model.fuse import to_channels_last

    m = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.Conv2d(4, 4, 3))
    to_channels_last(m, video_only=True)
    assert m[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert m[1].weight.dim() == 4 and m[1].weight.is_contiguous()
    x = torch.randn(1, 3, 4, 5, 5).contiguous(memory_format=torch.channels_last_3d)
    assert m[0](x).shape == (1, 4, 2, 3, 3)
