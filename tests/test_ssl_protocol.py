"""Downstream protocols: the linear protocol (train.freeze = "all-but-head"), starting from a
pretraining run (train.init_from / avsf train --init) with its load report, and the labelled
subset (data.label_fraction)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import _train_fakes as F
from avsf.config import ConfigError
from avsf.data.subset import labelled_subset
from avsf.io import UnreadableFile
from avsf.run import RunDir
from avsf.train import train
from avsf.train.setup import apply_freezing, load_init, set_train_mode
from avsf.weights import WeightsError

PRETEXT = {"train.objective": "pretext", "data.label_free": True, "model.rot_head": True, "train.rot_weight": 1.0}
LINEAR = {"train.freeze": "all-but-head"}


def _weights(run):
    return RunDir(run).load_checkpoint()["model"]


@pytest.fixture
def pretrained(tmp_path):
    """A finished toy pretraining run (AVS+ROT, no label read)."""
    run = tmp_path / "pre"
    train(F.toy_config(**PRETEXT, **{"train.epochs": 1}), run, progress=False, factories=F.TOYS)
    return run


def test_linear_protocol_trains_only_the_classifier_and_keeps_bn_statistics(tmp_path, pretrained, capsys):
    cfg = F.toy_config(**LINEAR, **{"train.init_from": str(pretrained), "train.epochs": 2})
    train(cfg, tmp_path / "probe", progress=False, factories=F.TOYS)
    before, after = _weights(pretrained), _weights(tmp_path / "probe")
    changed = sorted(k for k in after if k in before and not torch.equal(before[k], after[k]))
    assert changed == ["head.bias", "head.weight"]  # BN running statistics and affine included in the rest
    for k in ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "bn.weight", "v.weight"):
        assert torch.equal(before[k], after[k]), k
    err = capsys.readouterr().err
    assert "2 kept fresh (the linear protocol trains a new classifier)" in err
    assert "unexpected: rot_head.weight, rot_head.bias" in err  # the probe has no rotation head


def test_frozen_layers_compute_as_in_evaluation_and_have_no_gradient():
    cfg = F.toy_config(**LINEAR)
    model = F.ToyModel(4)
    apply_freezing(model, cfg)
    set_train_mode(model, cfg)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["head.bias", "head.weight"]
    assert not model.training and not model.bn.training and not model.drop.training and model.head.training
    # under DDP the names carry a `module.` prefix: the same layers train
    wrapped = torch.nn.ModuleDict({"module": F.ToyModel(4)})
    apply_freezing(wrapped, cfg)
    set_train_mode(wrapped, cfg)
    assert sorted(n for n, p in wrapped.named_parameters() if p.requires_grad) == ["module.head.bias",
                                                                                 "module.head.weight"]
    assert wrapped["module"].head.training and not wrapped["module"].bn.training


def test_fine_tuning_from_a_pretext_run_keeps_its_untrained_classifier_fresh(tmp_path, pretrained):
    model = F.ToyModel(4)
    head = model.head.weight.detach().clone()
    report = load_init(model, F.toy_config(**{"train.init_from": str(pretrained)}))
    assert report.fresh == ["head.weight", "head.bias"] and "label-free run" in str(report)
    assert torch.equal(model.head.weight, head)
    assert torch.equal(model.v.weight, _weights(pretrained)["v.weight"])
    # a supervised source's classifier is loaded when fine-tuning all layers (same classes) ...
    sup = tmp_path / "sup"
    train(F.toy_config(**{"train.epochs": 1}), sup, progress=False, factories=F.TOYS)
    report = load_init(F.ToyModel(4), F.toy_config(**{"train.init_from": str(sup / "checkpoints" / "last.pt")}))
    assert report.fresh == [] and "head.weight" in report.loaded
    # ... and left out by the linear protocol, which trains a new one
    report = load_init(F.ToyModel(4), F.toy_config(**LINEAR, **{"train.init_from": str(sup)}))
    assert report.fresh == ["head.weight", "head.bias"]


def test_a_shape_mismatch_names_the_tensor_and_a_missing_source_fails_before_any_write(tmp_path):
    state = F.ToyModel(4).state_dict()
    state["v.weight"] = torch.zeros(9, 3)
    torch.save({"model": state}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match=r"tensor 'v.weight' has shape \[9, 3\], the model's is \[8, 3\]"):
        load_init(F.ToyModel(4), F.toy_config(**{"train.init_from": str(tmp_path / "other.pt")}))
    for source, error in ((tmp_path / "nothing.pt", UnreadableFile), (tmp_path, WeightsError)):
        out = tmp_path / f"run-{source.name}"
        with pytest.raises(error):
            train(F.toy_config(**{"train.init_from": str(source)}), out, progress=False, factories=F.TOYS)
        assert sorted(p.name for p in out.iterdir()) in ([], [".lock"])  # no config.json, nothing


def test_cli_init_starts_a_linear_probe_from_a_pretraining_run(tmp_path, pretrained, capsys):
    out = tmp_path / "probe"
    argv = ["train", "--config", "/dev/null", "--scale", "tiny", "--out", str(out), "--no-progress", "--init",
            str(pretrained), "--set", "train.freeze=all-but-head", "--set", "train.batch_size=8",
            "--set", "train.epochs=1", "--json"]
    assert F.cli(argv) == 0
    captured = capsys.readouterr()
    assert "train.init_from: weights from" in captured.err and "kept fresh" in captured.err
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["init_from"] == str(pretrained) and config["train"]["freeze"] == "all-but-head"
    assert 0.0 <= json.loads(captured.out)["top1"] <= 1.0
    with pytest.raises(ConfigError, match="drop --variant, --config, --set, --init"):
        F.cli(["train", "--out", str(out), "--resume-with", "train.base_lr=0.1", "--init", str(pretrained)])


def _rows(labels):
    return [SimpleNamespace(label=lab, verb=-1, noun=-1) for lab in labels]


def test_labelled_subset_keeps_each_class_share_by_seed_nested():
    rows = _rows([c for c in range(5) for _ in range(20)] + [5])  # 5 classes x 20 clips, 1 clip of class 5
    ten = labelled_subset(rows, 0.1, seed=3)
    assert ten == sorted(ten) and ten == labelled_subset(rows, 0.1, seed=3)
    counts = torch.bincount(torch.tensor([rows[i].label for i in ten]), minlength=6).tolist()
    assert counts == [2, 2, 2, 2, 2, 1]  # 10% of 20 each; at least one of the lone clip's class
    assert set(ten) <= set(labelled_subset(rows, 0.5, seed=3))  # nested: more labels add clips
    assert ten != labelled_subset(rows, 0.1, seed=4)
    assert labelled_subset(rows, 1.0, seed=3) == list(range(len(rows)))
    multi = [SimpleNamespace(label=[1, 2], verb=-1, noun=-1)] * 10 + [SimpleNamespace(label=[3], verb=-1, noun=-1)] * 10
    assert len(labelled_subset(multi, 0.2, seed=0)) == 4


def test_the_real_loader_trains_on_the_labelled_subset(tmp_path, monkeypatch):
    from avsf.config import build_config
    from avsf.data import build_loader, dataset_info, load_rows

    monkeypatch.setenv("AVSF_CACHE", str(tmp_path / "cache"))
    cfg = build_config(scale="tiny", overrides={"data.label_fraction": 0.34, "data.loader": "reference",
                                                "data.num_threads": 1, "train.batch_size": 2})
    rows = load_rows(dataset_info(cfg).root, "train")
    loader = build_loader(cfg, "train", "train")
    kept = [rows[i] for i in labelled_subset(rows, 0.34, cfg.train.seed)]
    assert loader.rows == kept and len(kept) < len(rows)
    per_class = torch.bincount(torch.tensor([r.label for r in kept])).tolist()
    assert len(set(per_class)) == 1  # the same share of every class
    cfg.train.batch_size = len(kept) + 1
    from avsf.train.checks import check_label_fraction

    with pytest.raises(ConfigError, match=r"data.label_fraction: 0.34 is not allowed .* less than one batch"):
        check_label_fraction(cfg, dataset_info(cfg))


def test_avsf_eval_refuses_a_pretraining_run_with_advice(pretrained):
    from avsf.eval import evaluate

    with pytest.raises(ConfigError, match=r"trained train.objective = 'pretext'.*avsf train --init"):
        evaluate(pretrained, factories=F.TOYS)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pretraining_and_the_linear_protocol_on_cuda_in_bf16_channels_last(tmp_path):
    cuda = {"train.precision": "bf16", "train.channels_last": True, "train.deterministic": False, "train.epochs": 1}
    pre = train(F.toy_config(**PRETEXT, **cuda), tmp_path / "pre", progress=False, factories=F.TOYS)
    assert 0.0 <= pre["rot_top1"] <= 1.0 and 0.0 <= pre["avs_top1"] <= 1.0
    probe = train(F.toy_config(**LINEAR, **cuda, **{"train.init_from": str(tmp_path / "pre")}), tmp_path / "probe",
                  progress=False, factories=F.TOYS)
    assert 0.0 <= probe["top1"] <= 1.0
    before, after = _weights(tmp_path / "pre"), _weights(tmp_path / "probe")
    assert torch.equal(before["bn.running_mean"], after["bn.running_mean"])
