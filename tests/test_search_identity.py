"""A search's identity and storage: another search's study is refused before anything is
written; storage URLs are checked before use; nothing is created that the user did not ask for."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from avsf.study.search import SearchError, SearchOptions, default_storage_url, parse_search, run_search  # noqa: E402
from test_search_workers import SPEC, fake_flops, fake_train  # noqa: E402

QUIET = {"progress": False, "log": lambda m: None, "train_fn": fake_train, "flops_fn": fake_flops}


def tree(**space_changes) -> dict:
    t = tomllib.loads(SPEC.format(trials=2, seed=0))
    for name, change in space_changes.items():
        t["space"][name] = {**t["space"].get(name, {}), **change}
    return t


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def done(tmp_path):
    """A finished 1-trial search in tmp_path/run."""
    run = tmp_path / "run"
    run_search(parse_search(tree(), "s.toml"), out=run, trials=1, **QUIET)
    return run


@pytest.mark.parametrize("change, words", [
    ({"drop_pathway": {"key": "model.dropout"}}, "'drop_pathway' = {'key': 'model.drop_pathway'"),
    ({"drop_pathway": {"high": 0.5}}, "'high': 0.95"),
    ({"drop_pathway": {"step": 0.05}}, "'step': None"),
    ({"beta_a": {"choices": ["1/4", "1/2"]}}, "'beta_a' = {'key': 'model.beta_a', 'type': 'categorical', 'choices'"),
    ({"dropout": {"key": "model.dropout", "low": 0.0, "high": 0.5}}, "parameter 'dropout' = absent"),
])
def test_a_changed_parameter_is_refused_and_nothing_changes(done, change, words):
    before = snapshot(done)
    with pytest.raises(SearchError) as e:
        run_search(parse_search(tree(**change), "s.toml"), out=done, trials=1, **QUIET)
    msg = str(e.value)
    assert words in msg and "study 'wsearch'" in msg and "new `name`" in msg
    assert snapshot(done) == before  # search.json, optuna.db and the trial folders as they were
    study = optuna.load_study(study_name="wsearch", storage=default_storage_url(done))
    assert len(study.trials) == 1


def test_same_search_continues_and_a_new_name_starts_a_new_study(done):
    run_search(parse_search(tree(), "s.toml"), out=done, trials=1, **QUIET)
    renamed = tree(drop_pathway={"key": "model.dropout"})
    renamed["name"] = "wsearch_dropout"
    run_search(parse_search(renamed, "s.toml"), SearchOptions(out=done, trials=1, storage=default_storage_url(done),
                                                              **QUIET))
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(default_storage_url(done))}
    assert names == {"wsearch": 2, "wsearch_dropout": 1}


def test_refused_with_another_out_creates_no_folder(done, tmp_path):
    other = tmp_path / "other"
    with pytest.raises(SearchError, match="was created with parameter 'drop_pathway'"):
        run_search(parse_search(tree(drop_pathway={"high": 0.5}), "s.toml"), out=other, trials=1,
                   storage=default_storage_url(done), **QUIET)
    assert not other.exists()


def test_scale_change_is_refused_and_nothing_changes(done):
    before = snapshot(done)
    with pytest.raises(SearchError, match="scale 'tiny', not 'small'"):
        run_search(parse_search(tree(), "s.toml"), out=done, trials=1, scale="small", **QUIET)
    assert snapshot(done) == before


def test_a_study_from_before_definitions_were_stored_is_checked_by_key(tmp_path):
    spec = parse_search(tree(), "s.toml")
    url = default_storage_url(tmp_path)
    study = optuna.create_study(study_name="wsearch", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("avsf_scale", "tiny")
    study.set_user_attr("avsf_objectives", ["val_top1:maximize", "gflops:minimize"])
    study.set_user_attr("avsf_space", {"drop_pathway": "model.dropout", "beta_a": "model.beta_a"})
    with pytest.raises(SearchError, match="'drop_pathway' = model.dropout, the file now says model.drop_pathway"):
        run_search(spec, out=tmp_path, trials=1, **QUIET)
    study.set_user_attr("avsf_space", {"drop_pathway": "model.drop_pathway", "beta_a": "model.beta_a"})
    run_search(spec, out=tmp_path, trials=1, **QUIET)
    attrs = optuna.load_study(study_name="wsearch", storage=url).user_attrs
    assert attrs["avsf_params"]["drop_pathway"]["high"] == 0.95  # recorded once it proved the same search


@pytest.mark.parametrize("url, words", [
    ("nonsense", "'nonsense' is not a database URL"),
    ("foo://x/y", "unknown database 'foo'"),
    ("mysql+mysqldb://u:secret@h/db", "the Python driver for 'mysql+mysqldb' is not installed"),
    ("sqlite://", "in-memory SQLite"),
    ("sqlite:///{tmp}/new/dir/x.db", "the folder {tmp}/new/dir does not exist"),
])
def test_bad_storage_urls_are_clear_errors_before_any_write(tmp_path, url, words):
    url, words = url.format(tmp=tmp_path), words.format(tmp=tmp_path)
    out = tmp_path / "run"
    with pytest.raises(SearchError) as e:
        run_search(parse_search(tree(), "s.toml"), out=out, trials=1, storage=url, **QUIET)
    assert words in str(e.value)
    assert "secret" not in str(e.value)  # a password never reaches the message
    assert not out.exists() and not (tmp_path / "new").exists()


def test_cli_bad_storage_exits_2_without_traceback(tmp_path, capsys):
    from avsf.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(trials=1, seed=0))
    assert main(["search", str(spec), "--out", str(tmp_path / "r"), "--storage", f"sqlite:///{tmp_path}/no/x.db"]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and f"{tmp_path}/no does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_search_json_is_written_after_the_checks(tmp_path):
    out = tmp_path / "run"
    res = run_search(parse_search(tree(), "s.toml"), out=out, trials=1, **QUIET)
    meta = json.loads((out / "search.json").read_text())
    assert meta["scale"] == "tiny" and meta["storage"] == "optuna.db" and res.summary["n_complete"] == 1
    study = optuna.load_study(study_name="wsearch", storage=res.storage)
    assert study.user_attrs["avsf_params"] == {
        "drop_pathway": {"key": "model.drop_pathway", "type": "float", "low": 0.0, "high": 0.95, "step": None,
                         "log": False},
        "beta_a": {"key": "model.beta_a", "type": "categorical", "choices": ["1/8", "1/4", "1/2", "1"]},
    }
