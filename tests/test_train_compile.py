"""train.compile: the trainer hands its model to avsf.model.compile_model once, before training;
the switch does not change what a run is (a finished run is the same run with it on or off)."""

from __future__ import annotations

import pytest

import _train_fakes as F
from avsf.config import ConfigError, build_config
from avsf.train import train


def test_train_compile_hands_the_model_to_compile_model(tmp_path, monkeypatch):
    import avsf.model

    seen = []

    def compile_model(model, *args, **kwargs):
        seen.append(type(model).__name__)
        return model

    monkeypatch.setattr(avsf.model, "compile_model", compile_model, raising=False)
    result = train(F.toy_config(**{"train.compile": True, "train.epochs": 1}), tmp_path / "run", factories=F.TOYS,
                   progress=False)
    assert seen == ["ToyModel"]
    again = train(F.toy_config(**{"train.epochs": 1}), tmp_path / "run", factories=F.TOYS, progress=False)
    assert again == result and seen == ["ToyModel"]  # the same run, returned as it is: nothing compiled


def test_train_compile_off_by_default_and_a_bool():
    assert build_config(scale="tiny").train.compile is False
    with pytest.raises(ConfigError, match="train.compile"):
        build_config(scale="tiny", overrides={"train.compile": "maybe"})
