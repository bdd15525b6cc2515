"""avsf.weights: safe loading (weights only), the layouts it reads, the load report and its errors;
train.init_from and checkpoints going through it."""

import pytest
import torch

import _train_fakes as F
from avsf.config import ConfigError
from avsf.io import UnreadableFile, load_torch_file
from avsf.run import RunDir
from avsf.train import train
from avsf.weights import KEY_MAPS, LoadReport, WeightsError, load_weights, register_key_map


def _crafted(path, target):
    """A .pt whose unpickling would create `target` (via builtins.exec)."""

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(target)!r}, 'w').write('pwned')",))

    torch.save({"model": {"w": torch.zeros(1)}, "x": Payload()}, path)


def _toy():
    return F.ToyModel(F.NUM_CLASSES)


def test_a_crafted_pickle_never_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    _crafted(evil, target)
    with pytest.raises(UnreadableFile, match=r"evil.pt holds objects other than tensors.*never runs code"):
        load_torch_file(evil)
    with pytest.raises(ConfigError):
        load_weights(_toy(), evil)
    # as a run's checkpoint: resuming and evaluating refuse it
    run = RunDir(tmp_path / "run")
    run.write_config(F.toy_config())
    run.checkpoint_path.parent.mkdir(parents=True)
    evil.replace(run.checkpoint_path)
    with pytest.raises(UnreadableFile, match="last.pt holds objects"):
        train(F.toy_config(), run.path, progress=False, factories=F.TOYS)
    from avsf.eval import evaluate

    with pytest.raises(UnreadableFile):
        evaluate(run.path, progress=False, factories=F.TOYS)
    assert not target.exists()


def test_truncated_checkpoint_is_a_clear_error_before_work(tmp_path):
    cfg = F.toy_config(**{"train.epochs": 1})
    train(cfg, tmp_path / "a", progress=False, factories=F.TOYS)
    run = RunDir(tmp_path / "a")
    data = run.checkpoint_path.read_bytes()
    run.result_path.unlink()  # as if killed before the test
    run.checkpoint_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFile, match="last.pt cannot be read: it is truncated or damaged.*move it away"):
        train(cfg, run.path, progress=False, factories=F.TOYS)
    assert not run.result_path.exists()


@pytest.mark.parametrize("layout", ["bare", "model_state", "model", "state_dict", "ddp"])
def test_layouts_load_and_report(tmp_path, layout):
    src = _toy()
    sd = src.state_dict()
    obj = {"bare": sd, "model_state": {"model_state": sd, "epoch": 3}, "model": {"model": sd, "optimizer": {}},
           "state_dict": {"state_dict": sd}, "ddp": {f"module.{k}": v for k, v in sd.items()}}[layout]
    torch.save(obj, tmp_path / "w.pt")
    dst = _toy()
    report = load_weights(dst, tmp_path / "w.pt")
    assert isinstance(report, LoadReport)
    assert sorted(report.loaded) == sorted(sd) and not report.missing and not report.unexpected
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert f"{len(sd)} of {len(sd)} model tensors loaded" in str(report)


def test_report_missing_unexpected_and_new_heads(tmp_path):
    sd = F.ToyModel(7).state_dict()  # another class count: a different head
    sd["extra.weight"] = torch.zeros(2)
    del sd["a.bias"]
    with pytest.raises(WeightsError, match=r"tensor 'head.weight' has shape \[7, 16\], the model's is \[4, 16\]"):
        load_weights(_toy(), sd)
    dst = _toy()
    fresh = dst.head.weight.clone()
    report = load_weights(dst, sd, new_heads=("head.*",))
    assert report.missing == ["a.bias"] and report.unexpected == ["extra.weight"]
    assert [k for k, _, _ in report.new_heads] == ["head.weight", "head.bias"]
    assert torch.equal(dst.head.weight, fresh) and torch.equal(dst.v.weight, sd["v.weight"])
    text = str(report)
    assert "missing: a.bias" in text and "unexpected: extra.weight" in text and "head.weight [7, 16] -> [4, 16]" in text


def test_nothing_matching_is_an_error_and_key_maps_plug_in(tmp_path):
    sd = {f"backbone.{k}": v for k, v in _toy().state_dict().items()}
    with pytest.raises(WeightsError, match=r"none of its \d+ tensors matches.*need a key map"):
        load_weights(_toy(), sd)
    with pytest.raises(WeightsError, match="unknown key map 'nope'"):
        load_weights(_toy(), sd, key_map="nope")
    name = "test-strip-backbone"
    if name not in KEY_MAPS:
        register_key_map(name)(lambda s: {k.removeprefix("backbone."): v for k, v in s.items()})
    assert len(load_weights(_toy(), sd, key_map=name).loaded) == len(sd)
    with pytest.raises(ValueError, match="registered twice"):
        register_key_map(name)(lambda s: s)
    with pytest.raises(WeightsError, match="no state dict found"):
        load_weights(_toy(), {"epoch": 3, "note": "x"})


def test_init_from_prints_the_report_and_fails_when_nothing_matches(tmp_path, capsys):
    a = tmp_path / "a"
    train(F.toy_config(**{"train.epochs": 1}), a, progress=False, factories=F.TOYS)
    capsys.readouterr()
    train(F.toy_config(**{"train.epochs": 1, "train.init_from": str(a)}), tmp_path / "b", progress=False,
          factories=F.TOYS)
    assert "train.init_from: weights from" in capsys.readouterr().err
    torch.save({"model_state": {"x.weight": torch.zeros(3)}}, tmp_path / "other.pyth")
    with pytest.raises(WeightsError, match="none of its 1 tensors matches"):
        train(F.toy_config(**{"train.epochs": 1, "train.init_from": str(tmp_path / "other.pyth")}), tmp_path / "c",
              progress=False, factories=F.TOYS)
    assert not RunDir(tmp_path / "c").has_checkpoint()
    with pytest.raises(UnreadableFile, match="does not exist"):
        train(F.toy_config(**{"train.init_from": str(tmp_path / "missing.pt")}), tmp_path / "d", progress=False,
              factories=F.TOYS)
