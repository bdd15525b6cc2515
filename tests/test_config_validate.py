"""Config.validate: every bad value fails when the config is built, naming the key, the value
and what is allowed, before any file is written."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from avsf.config import (
    SCALES, Config, ConfigError, build_config, config_from_dict, fusion_names, load_config, validate_for_dataset,
)
from avsf.model.variants import VARIANTS


@pytest.mark.parametrize("override, key, value, allowed", [
    ("train.base_lr=-0.1", "train.base_lr", "-0.1", "(0, inf)"),
    ("train.base_lr=nan", "train.base_lr", "nan", "(0, inf)"),
    ("train.base_lr=inf", "train.base_lr", "inf", "finite"),
    ("train.avs_weight=-1", "train.avs_weight", "-1.0", "[0, inf)"),
    ("train.warmup_epochs=-2", "train.warmup_epochs", "-2.0", "[0, inf)"),
    ("train.batch_size=0", "train.batch_size", "0", "[1, inf)"),
    ("train.batch_size=-4", "train.batch_size", "-4", "[1, inf)"),
    ("train.epochs=0", "train.epochs", "0", "[1, inf)"),
    ("train.precision=fp16", "train.precision", "'fp16'", "fp32, bf16"),
    ("train.lr_policy=linear", "train.lr_policy", "'linear'", "cosine, steps"),
    ("train.momentum=1.0", "train.momentum", "1.0", "[0, 1)"),
    ("train.lr_steps=[1, 99]", "train.lr_steps", "99.0", "within train.epochs"),
    ("eval.temporal_views=0", "eval.temporal_views", "0", "[1, inf)"),
    ("eval.spatial_views=0", "eval.spatial_views", "0", "[1, inf)"),
    ("model.drop_pathway=1.5", "model.drop_pathway", "1.5", "[0, 1]"),
    ("model.fusion=a-fss", "model.fusion", "'a-fss'", "a-fs, a-f-s, av-nonlocal"),
    ("model.fusion_stages=[res9]", "model.fusion_stages", "'res9'", "pool1, res2, res3, res4, pool5"),
    ("model.depth=34", "model.depth", "34", "50, 101"),
    ("model.tau=7", "model.tau", "7", "multiple of model.alpha_f"),
    ("model.fs_fusion_kernel=4", "model.fs_fusion_kernel", "4", "odd"),
    ("model.num_classes=-1", "model.num_classes", "-1", "[0, inf)"),
    ("model.dropout=1.0", "model.dropout", "1.0", "[0, 1)"),
    ("data.loader=fast", "data.loader", "'fast'", "auto, dali, reference"),
    ("data.synth_scale=huge", "data.synth_scale", "'huge'", "tiny, small"),
    ("data.short_side_range=[80, 64]", "data.short_side_range", "[80, 64]", "low <= high"),
    ("data.max_failure_share=2", "data.max_failure_share", "2.0", "[0, 1]"),
    ("data.num_threads=0", "data.num_threads", "0", "[1, inf)"),
    ("scale=gigantic", "scale", "'gigantic'", "paper, small, tiny"),
])
def test_bad_value_names_key_value_and_allowed(override, key, value, allowed):
    with pytest.raises(ConfigError) as e:
        build_config(scale="tiny", overrides=[override])
    msg = str(e.value)
    assert msg.startswith(f"{key}: {value} is not allowed; "), msg
    assert allowed in msg


def test_every_scale_and_paper_row_is_valid():
    for scale in SCALES:
        build_config(scale=scale).validate()
        for v in VARIANTS.values():
            build_config(scale="paper", base=v.overrides)


@pytest.mark.parametrize("section", ["model", "data", "train", "eval"])
def test_every_field_checks_its_type(section):
    for f in dataclasses.fields(getattr(Config(), section)):
        cfg = Config()
        setattr(getattr(cfg, section), f.name, object())
        with pytest.raises(ConfigError, match=rf"^{section}\.{f.name}: <object object"):
            cfg.validate()


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="model.alpha_a: 2 .*shorter than the 9-frame audio stem"):
        build_config(scale="tiny", overrides={"model.alpha_a": 2})
    # tiny: T = 2 Slow, 4 Fast frames; alpha_a 18 gives 36 log-mel frames, 18 after res3:
    # a multiple of Slow's 2 (A->FS) but not of Fast's 4 (A->F->S)
    at_res3 = {"model.alpha_a": 18, "model.fusion_stages": ["res3", "pool5"]}
    build_config(scale="tiny", overrides={"model.fusion": "a-fs", **at_res3})
    with pytest.raises(ConfigError, match="model.alpha_a: 18 .*18 frames long after res3 but the Fast pathway has 4"):
        build_config(scale="tiny", overrides={"model.fusion": "a-f-s", **at_res3})
    with pytest.raises(ConfigError, match="model.beta_f"):
        build_config(scale="tiny", overrides={"model.beta_f": 0.01})
    # The audio rules do not apply to a visual-only model
    build_config(scale="tiny", overrides={"model.pathways": "slowfast", "model.alpha_a": 1})


def test_num_classes_zero_is_the_datasets_until_the_model_is_built():
    cfg = build_config(scale="tiny")
    assert cfg.model.num_classes == 0
    with pytest.raises(ConfigError, match="model.num_classes: 0 .*the trainer fills it in"):
        cfg.model.validate(resolved=True)


def test_config_json_and_toml_are_validated(tmp_path):
    tree = build_config(scale="tiny").to_dict()
    assert config_from_dict(tree).to_dict() == tree
    tree["train"]["base_lr"] = -1.0
    with pytest.raises(ConfigError, match="train.base_lr: -1.0 is not allowed"):
        config_from_dict(tree)
    p = tmp_path / "c.toml"
    p.write_text('scale = "tiny"\n[model]\nfusion = "a-fss"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: model\.fusion: 'a-fss' is not allowed"):
        load_config(p)


def test_fusion_names_is_what_validation_reads(monkeypatch):
    assert "a-fs" in fusion_names()
    monkeypatch.setattr("avsf.config.fusion_names", lambda: ("a-fs", "extra"))
    build_config(scale="tiny", overrides={"model.fusion": "a-fs"})
    with pytest.raises(ConfigError, match="choose one of: a-fs, extra"):
        build_config(scale="tiny", overrides={"model.fusion": "a-f-s"})


def _info(**kw):
    base = dict(root="/data/x", num_classes=10, split_sizes={"train": 30, "val": 10, "test": 10})
    return SimpleNamespace(**{**base, **kw})


def test_validate_for_dataset():
    cfg = build_config(scale="tiny")
    validate_for_dataset(cfg, _info())  # num_classes 0: the dataset's count
    with pytest.raises(ConfigError, match=r"eval.split: 'tset' is not allowed; the dataset at /data/x .*train, val"):
        validate_for_dataset(build_config(scale="tiny", overrides={"eval.split": "tset"}), _info())
    with pytest.raises(ConfigError, match="eval.split: 'val'.*train, test"):
        validate_for_dataset(build_config(scale="tiny", overrides={"eval.split": "val"}),
                             _info(split_sizes={"train": 30, "val": 0, "test": 10}))
    with pytest.raises(ConfigError, match="model.num_classes: 5 is not allowed; .* 10 classes"):
        validate_for_dataset(build_config(scale="tiny", overrides={"model.num_classes": 5}), _info())
    validate_for_dataset(build_config(scale="tiny", overrides={"model.num_classes": 400}), _info())  # paper head
    with pytest.raises(ConfigError, match="train.batch_size: 64 is not allowed; .* 30 training clips"):
        validate_for_dataset(build_config(scale="tiny", overrides={"train.batch_size": 64}), _info())
    with pytest.raises(ConfigError, match="train.batch_size: 8 .* 4 training clips"):
        validate_for_dataset(build_config(scale="tiny", overrides={"train.batch_size": 8, "train.max_train_clips": 4}),
                             _info())


@pytest.mark.parametrize("argv, words", [
    (["--set", "scale=gigantic"], "scale: 'gigantic' is not allowed"),
    (["--set", "model.drop_pathway=1.5"], "model.drop_pathway: 1.5 is not allowed"),
    (["--set", "train.base_lr=nan"], "train.base_lr: nan is not allowed"),
])
def test_train_cli_refuses_before_writing(tmp_path, capsys, argv, words):
    from avsf.cli import main

    out = tmp_path / "run"
    assert main(["train", "--variant", "table3/avslowfast-r50", "--scale", "tiny",
                 *argv, "--out", str(out)]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_flops_cli_refuses_input_size_zero(capsys):
    from avsf.cli import main

    with pytest.raises(SystemExit) as e:
        main(["flops", "--variant", "table5a/a-fs", "--input-size", "0"])
    assert e.value.code == 2
    assert "--input-size: '0' is not allowed; must be an integer >= 1" in capsys.readouterr().err


def test_run_config_json_roundtrips_through_validation(tmp_path):
    cfg = build_config(scale="small", overrides={"model.num_classes": 10})
    tree = json.loads(cfg.to_json())
    assert config_from_dict(tree) == cfg
