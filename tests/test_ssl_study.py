"""'Pretrain, then probe' in study files: the `pretrain` tables, the runner's order and
dependency, and studies/ssl_linear.toml run for real at the tiny scale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsf.study import format_status, load_study, load_study_dir, run_study
from avsf.study.runner import plan_study
from avsf.study.spec import StudyError, study_from_dict

ROOT = Path(__file__).resolve().parents[1]


def _spec(**changes):
    tree = {
        "name": "ssl",
        "default_scale": "tiny",
        "base": {"train.freeze": "all-but-head", "data.label_fraction": 0.5},
        "pretrain": {"train.objective": "pretext", "data.label_free": True, "train.freeze": "none",
                     "data.label_fraction": 1.0},
        "variant": [
            {"name": "random", "reference": True},
            {"name": "rot", "set": {"model.pathways": "slowfast"},
             "pretrain": {"set": {"model.rot_head": True, "train.rot_weight": 1.0}}},
            {"name": "avs", "pretrain": {"set": {}}},
            {"name": "avs-short", "set": {"train.epochs": 1}, "pretrain": {"name": "avs", "set": {}}},
        ],
        "scale": {"tiny": {"seeds": 2, "set": {"train.epochs": 2},
                           "pretrain": {"train.epochs": 3, "train.base_lr": 0.02}}},
    }
    tree.update(changes)
    return study_from_dict(tree, source="ssl.toml")


def test_a_pretraining_run_layers_on_the_variant_then_pretrain_tables():
    spec = _spec()
    rot = spec.config_for("rot", seed=1, pretrain=True)
    assert rot.model.pathways == "slowfast" and rot.model.rot_head and rot.train.rot_weight == 1.0
    assert rot.train.objective == "pretext" and rot.train.freeze == "none" and rot.data.label_fraction == 1.0
    assert (rot.train.epochs, rot.train.base_lr, rot.train.seed) == (3, 0.02, 1)
    assert rot.name == "ssl/_pretrain/rot/seed1"
    probe = spec.config_for("rot", seed=1)
    assert probe.train.freeze == "all-but-head" and probe.data.label_fraction == 0.5 and probe.train.epochs == 2
    # study.json keeps the pretraining tables: read back, the same configs
    again = study_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.config_for("rot", seed=1, pretrain=True).to_dict() == rot.to_dict()
    assert again.variant("avs-short").pretrain.name == "avs" and again.variant("random").pretrain is None


def test_the_plan_trains_each_pretraining_run_once_before_the_runs_that_start_from_it(tmp_path):
    plan = plan_study(_spec(), tmp_path)
    names = [(p.variant, p.seed) for p in plan]
    assert names == [("random", 0), ("random", 1), ("_pretrain/rot", 0), ("rot", 0), ("_pretrain/rot", 1),
                     ("rot", 1), ("_pretrain/avs", 0), ("avs", 0), ("_pretrain/avs", 1), ("avs", 1),
                     ("avs-short", 0), ("avs-short", 1)]
    by = {(p.variant, p.seed): p for p in plan}
    pre = tmp_path / "_pretrain" / "avs" / "seed1"
    assert by[("_pretrain/avs", 1)].path == pre and by[("avs-short", 1)].needs == pre
    assert by[("avs-short", 1)].cfg.train.init_from == str(pre) and by[("random", 0)].cfg.train.init_from == ""


@pytest.mark.parametrize("change, key, words", [
    ({"variant": [{"name": "a", "pretrain": {"sets": {}}}]}, "variant[0] ('a').pretrain.sets", "unknown key"),
    ({"variant": [{"name": "a", "pretrain": {"name": "x y"}}]}, "variant[0] ('a').pretrain.name", "folder name"),
    ({"variant": [{"name": "a", "pretrain": {"set": {"train.avs_weight": 0.0}}}]},
     "variant[0] ('a').pretrain at scale tiny", "no pretext loss"),
    ({"variant": [{"name": "a", "set": {"train.init_from": "runs/x"}, "pretrain": {}}]},
     "variant[0] ('a').pretrain", "must not set train.init_from"),
    ({"variant": [{"name": "a", "pretrain": {"name": "p"}},
                  {"name": "b", "pretrain": {"name": "p", "set": {"train.rot_weight": 1.0, "model.rot_head": True}}}]},
     "variant[1] ('b').pretrain.name", "another config"),
    ({"pretrain": {"train.objectiv": "pretext"}}, "pretrain", "unknown config key"),
    ({"scale": {"tiny": {"seeds": 1, "pretrain": {"train.epoch": 1}}}}, "scale.tiny.pretrain", "unknown config key"),
])
def test_wrong_pretraining_tables_are_refused_naming_the_key(change, key, words):
    with pytest.raises(StudyError) as e:
        _spec(**change)
    assert f"key '{key}'" in str(e.value) and words in str(e.value)


def test_a_run_whose_pretraining_failed_fails_without_training_and_is_retried(tmp_path):
    calls = []

    def trainer(cfg, out, *, on_epoch=None, progress=True):
        calls.append(cfg.name)
        if "_pretrain/rot" in cfg.name and not hasattr(trainer, "healed"):
            raise RuntimeError("diverged")
        (Path(out) / "result.json").write_text(json.dumps({"top1": 0.5}))
        return {"top1": 0.5}

    spec = _spec()
    outcome = run_study(spec, tmp_path, seeds=1, train_fn=trainer, log=lambda m: None)
    assert sorted((v, s) for v, s, _ in outcome.failed) == [("_pretrain/rot", 0), ("rot", 0)]
    assert "ssl/rot/seed0" not in calls  # never trained from a missing pretraining run
    failed = json.loads((tmp_path / "rot" / "seed0" / "failed.json").read_text())
    assert "pretraining run" in failed["error"] and "_pretrain/rot/seed0" in failed["error"]
    status = format_status(tmp_path).splitlines()
    assert any(line.split()[:3] == ["_pretrain/rot", "seed0", "failed"] for line in status)
    assert status[-1].endswith("pretraining runs: 1 of 2 done")
    trainer.healed = True
    calls.clear()
    outcome = run_study(spec, tmp_path, seeds=1, train_fn=trainer, log=lambda m: None)
    assert outcome.ok and calls == ["ssl/_pretrain/rot/seed0", "ssl/rot/seed0"]
    assert format_status(tmp_path).splitlines()[-1].endswith("pretraining runs: 2 of 2 done")


@pytest.mark.slow
def test_ssl_linear_at_tiny_pretrains_then_probes_and_reports(tmp_path, monkeypatch):
    """`nox -s study_ssl_linear -- --scale tiny --seeds 1` in-process: the real trainer."""
    from avsf.report import write_report

    monkeypatch.setenv("AVSF_CACHE", str(tmp_path / "cache"))
    spec = load_study(ROOT / "studies" / "ssl_linear.toml")
    out = tmp_path / "runs" / "ssl_linear"
    outcome = run_study(spec, out, scale="tiny", seeds=1, overrides=["train.num_threads=1"], progress=False,
                        log=lambda m: None)
    assert outcome.ok, outcome.failed
    for name in ("rot", "avs", "avs-rot"):
        pre = json.loads((out / "_pretrain" / name / "seed0" / "result.json").read_text())
        assert 0.0 <= pre["pretext_top1"] <= 1.0 and "top1" not in pre
        probe = json.loads((out / name / "seed0" / "config.json").read_text())["train"]
        assert probe["init_from"] == str(out / "_pretrain" / name / "seed0") and probe["freeze"] == "all-but-head"
    rot = json.loads((out / "_pretrain" / "rot" / "seed0" / "result.json").read_text())
    assert "avs_top1" not in rot  # SlowFast: ROT only
    assert {r.variant: r.state for r in load_study_dir(out).runs} == dict.fromkeys(spec.variant_names, "done")
    write_report(out, tmp_path / "report")
    assert (tmp_path / "report" / "ssl_linear.tex").exists()
