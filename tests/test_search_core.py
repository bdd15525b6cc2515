"""Search spec validation, single-objective mode (budget, pruner) and the search report."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from avsf.report.search import write_search_report  # noqa: E402
from avsf.study.search import (  # noqa: E402
    SearchError, default_storage_url, load_search, open_study, parse_search, run_search,
)
from test_search_workers import SPEC, fake_flops, fake_train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUIET = {"progress": False, "log": lambda m: None}


def spec_tree(**changes) -> dict:
    tree = tomllib.loads(SPEC.format(trials=4, seed=0))
    tree.update(changes)
    return tree


def test_shipped_search_file_loads():
    spec = load_search(REPO / "studies" / "search_pd_beta.toml")
    assert spec.name == "search_pd_beta" and spec.default_scale == "small"
    assert [(o.key, o.direction) for o in spec.objectives] == [("val_top1", "maximize"), ("gflops", "minimize")]
    by = {p.name: p for p in spec.space}
    assert (by["drop_pathway"].low, by["drop_pathway"].high) == (0.0, 0.95)
    assert by["beta_a"].choices == ["1/8", "1/4", "1/2", "1"]
    cfg = spec.config_for("tiny", {"drop_pathway": 0.3, "beta_a": "1/8"})
    assert cfg.model.beta_a == 0.125 and cfg.model.drop_pathway == 0.3 and cfg.scale == "tiny"
    assert spec.trials_at("tiny") == 4


@pytest.mark.parametrize("change, words", [
    ({"objectives": ["val_top1:maximize", "top1:maximize"]}, "gflops"),
    ({"objectives": ["loss:minimize"]}, "unknown"),
    ({"gflops_budget": 1.0}, "single accuracy objective"),
    ({"space": {"pd": {"key": "model.nope", "low": 0, "high": 1}}}, "model.nope"),
    ({"space": {"pd": {"key": "model.drop_pathway", "type": "float"}}}, "low"),
    ({"trials": 0}, "trials"),
    ({"colour": 1}, "colour"),
    ({"space": {"pd": {"key": "model.drop_pathway", "low": 0.5, "high": 0.1}}}, r"'space.pd.low'.*above"),
    ({"space": {"pd": {"key": "model.drop_pathway", "low": 0.0, "high": 1.5}}},
     r"'space.pd': 1.5 at scale tiny: model.drop_pathway: 1.5 is not allowed; must be a finite number in \[0, 1\]"),
    ({"space": {"b": {"key": "model.beta_a", "choices": ["1/2", "1/64"]}}}, r"'space.b': '1/64' at scale tiny"),
    ({"space": {"pd": {"key": "model.drop_pathway", "low": 0.0, "high": 1.0, "log": True}}}, r"'space.pd.log'"),
    ({"space": {"pd": {"key": "model.drop_pathway", "low": 0.0, "high": 1.0, "step": 0}}}, r"'space.pd.step'"),
    ({"space": {"pd": {"key": "model.drop_pathway", "type": "uniform", "low": 0, "high": 1}}}, r"'space.pd.type'"),
    ({"space": {"a": {"key": "model.drop_pathway", "choices": [0.1]},
                "b": {"key": "model.drop_pathway", "choices": [0.2]}}}, r"'space.a.key'.*two"),
    ({"sampler": {"name": "grid"}}, r"'sampler.name': 'grid' unknown"),
    ({"sampler": {"seed": -1}}, r"'sampler.seed': must be an integer >= 0"),
    ({"pruner": {"n_warmup_steps": "2"}}, r"'pruner.n_warmup_steps': must be an integer"),
    ({"pruner": {"percentile": 150}}, r"'pruner.percentile'"),
    ({"storage": {"heartbeat_interval": 0}}, r"'storage.heartbeat_interval': must be an integer >= 1"),
    ({"storage": {"hearbeat": 1}}, r"'storage.hearbeat': unknown key"),
    ({"base": {"train": {"precision": "fp16"}}}, r"'scale tiny': train.precision: 'fp16' is not allowed"),
    ({"scale": {"tiny": {"trials": 0}}}, r"'scale.tiny.trials'"),
])
def test_bad_search_files_name_the_key(change, words):
    with pytest.raises(SearchError, match=words) as e:
        parse_search(spec_tree(**change), "bad.toml")
    assert str(e.value).startswith("bad.toml: key '")


def test_scale_mismatch_is_refused(tmp_path):
    spec = parse_search(spec_tree(), "s.toml")
    run_search(spec, out=tmp_path, trials=1, train_fn=fake_train, flops_fn=fake_flops, **QUIET)
    with pytest.raises(SearchError, match="scale"):
        run_search(spec, out=tmp_path, trials=1, scale="small", train_fn=fake_train, flops_fn=fake_flops, **QUIET)


def test_single_objective_budget_and_pruner(tmp_path):
    tree = spec_tree(objectives=["val_top1:maximize"], gflops_budget=0.35, trials=8,
                     pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    tree["base"] = {"train": {"epochs": 3}}
    spec = parse_search(tree, "single.toml")
    trained = []

    def counting_train(cfg, out_dir, **kw):
        trained.append(cfg.model.beta_a)
        return fake_train(cfg, out_dir, **kw)

    res = run_search(spec, out=tmp_path, train_fn=counting_train, flops_fn=fake_flops, **QUIET)
    study = optuna.load_study(study_name="wsearch", storage=res.storage)
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 8 and res.summary["n_complete"] + res.summary["n_pruned"] == 8
    over = [t for t in study.trials if "over budget" in t.user_attrs.get("pruned_reason", "")]
    assert all(t.user_attrs["gflops"] > 0.35 for t in over)
    # Over-budget trials never reached the trainer; everything trained is within budget.
    assert all(0.1 + 0.4 * b <= 0.35 for b in trained)
    assert len(trained) == 8 - len(over)
    for t in study.trials:
        if t.state.name == "COMPLETE":
            assert sorted(t.intermediate_values) == [0, 1, 2]
            assert t.value == pytest.approx(t.intermediate_values[2])
    best = res.summary["best_trials"]
    assert len(best) == 1 and best[0]["values"][0] == pytest.approx(study.best_value)


def test_pruner_stops_a_bad_trial(tmp_path):
    tree = spec_tree(objectives=["val_top1:maximize"], trials=2,
                     pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    tree["base"] = {"train": {"epochs": 3}}
    spec = parse_search(tree, "p.toml")
    study = open_study(spec, default_storage_url(tmp_path), scale="tiny")
    study.enqueue_trial({"drop_pathway": 0.6, "beta_a": "1/2"})  # good: sets the median
    study.enqueue_trial({"drop_pathway": 0.0, "beta_a": "1"})  # bad: below it from epoch 0
    res = run_search(spec, out=tmp_path, train_fn=fake_train, flops_fn=fake_flops, **QUIET)
    study = optuna.load_study(study_name="wsearch", storage=res.storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    pruned = study.trials[1]
    assert sorted(pruned.intermediate_values) == [0]  # stopped after its first epoch
    assert not (tmp_path / "trial1" / "result.json").exists()
    assert (tmp_path / "trial0" / "result.json").exists()


def test_report_of_a_multi_objective_search(tmp_path):
    spec = parse_search(spec_tree(trials=5), "m.toml")
    run = tmp_path / "runs" / "wsearch"
    run_search(spec, out=run, train_fn=fake_train, flops_fn=fake_flops, **QUIET)
    out = tmp_path / "reports" / "wsearch"
    files = write_search_report(run, out)
    for name in ("pareto", "history", "importances"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.pdf").exists()
    tex = (out / "best_trials.tex").read_text()
    assert r"\toprule" in tex and r"$P_d$" in tex and r"$\beta_A$" in tex and r"\bottomrule" in tex
    rows = list(csv.DictReader((out / "best_trials.csv").open()))
    study = optuna.load_study(study_name="wsearch", storage=f"sqlite:///{run / 'optuna.db'}")
    assert sorted(int(r["trial"]) for r in rows) == sorted(t.number for t in study.best_trials)
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 5
    summary = (out / "summary.md").read_text()
    assert "5 complete" in summary and "Pareto" in summary
    assert all(f.exists() for f in files)


def test_report_with_one_trial_skips_importances(tmp_path):
    tree = spec_tree(objectives=["val_top1:maximize"], gflops_budget=10.0)
    spec = parse_search(tree, "one.toml")
    run = tmp_path / "run"
    run_search(spec, out=run, trials=1, train_fn=fake_train, flops_fn=fake_flops, **QUIET)
    out = tmp_path / "rep"
    write_search_report(run, out)
    assert (out / "pareto.png").exists() and (out / "history.png").exists()
    assert not (out / "importances.png").exists()
    assert "importances skipped" in (out / "summary.md").read_text()
    assert json.loads((run / "search.json").read_text())["gflops_budget"] == 10.0


def test_cli_reports_a_bad_file_and_exits_2(tmp_path, capsys):
    from avsf.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntrials = 2\n')
    assert main(["search", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "space" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "missing.toml")]) == 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_surplus_rule_counts_live_trials_created_earlier(tmp_path):
    from avsf.study.search import _is_surplus

    spec = parse_search(spec_tree(trials=2), "s.toml")
    study = open_study(spec, default_storage_url(tmp_path), scale="tiny")
    a, b, c = study.ask(), study.ask(), study.ask()  # three workers asked at once for a target of 2
    assert not _is_surplus(study, a.number, 2) and not _is_surplus(study, b.number, 2)
    assert _is_surplus(study, c.number, 2)
    study.tell(a, state=optuna.trial.TrialState.FAIL)  # a failed trial leaves room
    assert not _is_surplus(study, c.number, 2)


def test_interrupt_fails_and_requeues_the_running_trial(tmp_path):
    spec = parse_search(spec_tree(trials=3), "i.toml")

    def interrupted(cfg, out_dir, **kw):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(spec, out=tmp_path, train_fn=interrupted, flops_fn=fake_flops, **QUIET)
    res = run_search(spec, out=tmp_path, train_fn=fake_train, flops_fn=fake_flops, **QUIET)
    study = optuna.load_study(study_name="wsearch", storage=res.storage)
    first = study.trials[0]
    assert first.state.name == "FAIL" and "KeyboardInterrupt" in first.user_attrs["error"]
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert retry.state.name == "COMPLETE" and retry.params == first.params
    assert res.summary["n_complete"] == 3
