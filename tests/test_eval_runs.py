"""`evaluate(run_dir, views)` and the per-class comparison of two runs (toy model and loader)."""

import json

import pytest

import _train_fakes as F
from avsf.cli import build_parser
from avsf.config import ConfigError
from avsf.eval import compare_runs, evaluate, parse_views
from avsf.train import train


@pytest.fixture
def runs(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    train(F.toy_config(), a, progress=False, factories=F.TOYS)
    train(F.toy_config(**{"train.seed": 1, "train.epochs": 1}), b, progress=False, factories=F.TOYS)
    return a, b


def _cli(argv):
    args = build_parser().parse_args(argv)
    return args.func(args, factories=F.TOYS)


def test_parse_views():
    assert parse_views("10x3") == (10, 3)
    assert parse_views(None) is None
    with pytest.raises(ConfigError):
        parse_views("ten")


def test_evaluate_matches_the_training_result_and_writes_view_files(runs):
    a, _ = runs
    result = json.loads((a / "result.json").read_text())
    again = evaluate(a, progress=False, factories=F.TOYS)  # the run's own views (2x1)
    assert again["top1"] == pytest.approx(result["top1"]) and again["top1_visual"] == pytest.approx(result["top1_visual"])
    m = evaluate(a, "3x1", progress=False, factories=F.TOYS)
    assert (m["temporal_views"], m["spatial_views"]) == (3, 1)
    assert json.loads((a / "eval_3x1.json").read_text()) == m
    assert len(json.loads((a / "per_class_3x1.json").read_text())["accuracy"]) == F.NUM_CLASSES


def test_compare_runs_per_class(runs, capsys):
    a, b = runs
    rows = compare_runs(a, b)
    assert len(rows) == F.NUM_CLASSES
    assert [r["diff"] for r in rows] == sorted((r["diff"] for r in rows), reverse=True)
    pa = json.loads((a / "per_class.json").read_text())["accuracy"]
    assert {r["index"]: r["a"] for r in rows} == dict(enumerate(pa))
    assert {r["group"] for r in rows} == {"visual", "audio"}
    assert _cli(["eval", str(a), "--compare", str(b)]) == 0
    out = capsys.readouterr().out
    assert "mean difference by group" in out and "c0" in out


def test_eval_cli_prints_metrics(runs, capsys):
    a, _ = runs
    assert _cli(["eval", str(a), "--views", "2x1", "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(json.loads((a / "result.json").read_text())["top1"])


def test_eval_with_set_overrides_writes_its_own_files(runs):
    a, _ = runs
    m = evaluate(a, sets=["eval.split=val"], progress=False, factories=F.TOYS)
    assert m["clips"] == F.N_CLIPS["val"] and m["set"] == ["eval.split=val"]
    tagged = [p.name for p in a.glob("eval_2x1-*.json")]
    assert len(tagged) == 1 and json.loads((a / tagged[0]).read_text()) == m
    assert not (a / "eval_2x1.json").exists()  # the run's own views file is not overwritten
    with pytest.raises(ConfigError, match="unknown config key"):
        evaluate(a, sets=["eval.splitt=val"], progress=False, factories=F.TOYS)


def test_eval_a_bare_checkpoint_with_a_config(runs, tmp_path, capsys):
    import torch

    from avsf.run import RunDir

    a, _ = runs
    result = json.loads((a / "result.json").read_text())
    bare = tmp_path / "bare.pt"
    torch.save(RunDir(a).load_checkpoint()["model"], bare)  # a plain state dict
    argv = ["eval", "--checkpoint", str(bare), "--config", "/dev/null", "--scale", "tiny", "--no-progress", "--json"]
    assert _cli(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["top1"] == pytest.approx(result["top1"])
    partial = {k: v for k, v in torch.load(bare).items() if not k.startswith("a.")}
    torch.save({"model_state": partial}, bare)
    with pytest.raises(ConfigError, match="lacks 2 of the model's tensors"):
        _cli(argv)
    with pytest.raises(ConfigError, match="needs --config FILE or --variant NAME"):
        _cli(["eval", "--checkpoint", str(bare)])
    with pytest.raises(ConfigError, match="one of them"):
        _cli(["eval"])


def test_human_output_is_in_percent(runs, capsys):
    a, _ = runs
    result = json.loads((a / "result.json").read_text())
    assert _cli(["eval", str(a), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"top1 {100 * result['top1']:.1f}%" in out and "temporal_views 2" in out
