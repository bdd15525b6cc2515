"""The trainer takes its task objective and auxiliary losses from avsf.train.objectives:
a new one is a registration, with no edit of the loop."""

import pytest
import torch

import _train_fakes as F
from avsf.train import train
from avsf.train import objectives as O


def test_builtin_objectives_cover_every_head():
    from avsf.config import HEADS

    assert set(HEADS) <= set(O.OBJECTIVES), f"heads without a training objective: {set(HEADS) - set(O.OBJECTIVES)}"


def test_registered_auxiliary_is_prepared_trained_and_logged(tmp_path, monkeypatch):
    seen = {"prepare": 0, "loss": 0}

    def prepare(batch, progress, cfg, generator):
        assert 0.0 <= progress < 1.0
        seen["prepare"] += 1
        return {**batch, "toy_extra": torch.ones(1)}

    def loss(out, batch, cfg):
        assert "toy_extra" in batch  # the model saw the prepared batch
        seen["loss"] += 1
        return out["logits"].float().pow(2).mean() * 0.0 + 0.25

    toy = O.Auxiliary("toy", enabled=lambda cfg: cfg.name == "with-toy", loss=loss, prepare=prepare)
    monkeypatch.setitem(O.AUXILIARIES, "toy", toy)
    cfg = F.toy_config()
    cfg.name = "with-toy"
    train(cfg, tmp_path / "run", factories=F.TOYS, progress=False)
    rows = [r for r in F.metric_rows(tmp_path / "run") if r["split"] == "train"]
    assert seen["prepare"] == seen["loss"] > 0
    assert all(r["toy_loss"] == pytest.approx(0.25) for r in rows)


def test_disabled_auxiliary_is_not_called(tmp_path, monkeypatch):
    def never(*a):
        raise AssertionError("a disabled auxiliary must not run")

    monkeypatch.setitem(O.AUXILIARIES, "never", O.Auxiliary("never", enabled=lambda cfg: False, loss=never,
                                                             prepare=never))
    train(F.toy_config(), tmp_path / "run", factories=F.TOYS, progress=False)
    assert "never_loss" not in F.metric_rows(tmp_path / "run")[0]


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        O.register_auxiliary(O.AUXILIARIES["avs"])
