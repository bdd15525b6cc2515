"""avsf.run.RunDir: the one owner of a run folder's files (config match, metrics, results, lock)."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

import _train_fakes as F
from _train_fakes import read_only_dir  # noqa: F401 - a fixture

from avsf.config import build_config
from avsf.io import atomic_write_json
from avsf.run import (
    NOT_COMPARED,
    RunConfigMismatch,
    RunDir,
    RunFolderError,
    RunLocked,
    config_diff,
    numbers_only,
    read_jsonl,
)


def _cfg(**sets):
    return build_config(scale="tiny", overrides=sets)


def test_torn_metrics_line_is_skipped_and_never_swallows_the_next_row(tmp_path):
    run = RunDir(tmp_path / "r")
    run.append_metrics({"x": 1})
    with open(run.metrics_path, "a") as f:
        f.write('{"x": 2, "tor')  # a write torn by a kill: no newline
    assert run.read_metrics() == [{"x": 1}]
    run.append_metrics({"x": 3})
    assert run.read_metrics() == [{"x": 1}, {"x": 3}]
    with open(run.metrics_path, "a") as f:
        f.write("[1, 2]\n\n")  # valid JSON but not a row; blank line
    assert read_jsonl(run.metrics_path) == [{"x": 1}, {"x": 3}]
    run.keep_metrics(1)
    assert run.metrics_path.read_text() == '{"x": 1}\n'
    run.keep_metrics(0)
    assert not run.metrics_path.exists() and run.read_metrics() == []


def test_config_diff_skips_where_and_how_fast_keys_and_data_resolved_class_counts():
    a = _cfg().to_dict()
    b = _cfg(**{"data.num_threads": 1, "data.loader": "reference", "train.num_threads": 3, "name": "x"}).to_dict()
    assert config_diff(a, b) == []
    assert {"data.num_threads", "data.loader", "name"} <= NOT_COMPARED
    resolved = dict(a, model=dict(a["model"], num_classes=10))
    assert config_diff(resolved, a) == []  # planned 0: take the data's
    assert config_diff(resolved, dict(a, model=dict(a["model"], num_classes=5))) == [
        "model.num_classes: 10 there, 5 now"]
    # an EPIC run's verb / noun heads come from its data (6 nouns there), the plan keeps EPIC-100's 300
    epic = dict(a, model=dict(a["model"], num_verbs=4, num_nouns=6))
    assert config_diff(epic, a) == [] and a["model"]["num_nouns"] == 300
    assert config_diff(a, _cfg(**{"train.base_lr": 0.5}).to_dict()) == ["train.base_lr: 0.05 there, 0.5 now"]
    assert config_diff(a, dict(a, train=dict(a["train"], base_lr=0.05 * (1 + 1e-12)))) == []
    old = json.loads(json.dumps(a))
    del old["train"]["seed"]  # a key a newer avsf added: an older folder stays resumable ...
    assert config_diff(old, a) == []
    # ... unless the plan sets it to something else than what the older avsf did (its default)
    assert config_diff(old, _cfg(**{"train.seed": 4}).to_dict()) == ["train.seed: absent (the default 0) there, 4 now"]
    gone = dict(a, train=dict(a["train"], retired_field=1))  # a field since removed: not compared
    assert config_diff(gone, a) == []


def test_a_config_binds_only_once_the_folder_holds_progress(tmp_path):
    run = RunDir(tmp_path / "r")
    run.write_config(_cfg())
    corrected = _cfg(**{"train.base_lr": 0.01})
    assert run.config_for(corrected) is corrected  # config.json, nothing else: the run never started
    run.save_checkpoint({"model": {}})
    with pytest.raises(RunConfigMismatch, match=r"train.base_lr: 0.05 there, 0.01 now.*--resume-with"):
        run.config_for(corrected)
    same = _cfg(**{"data.num_threads": 1})
    assert run.config_for(same) is same


def test_resume_with_is_recorded_and_the_original_config_still_names_the_run(tmp_path):
    run = RunDir(tmp_path / "r")
    run.write_config(_cfg())
    run.save_checkpoint({"model": {}})
    new = run.record_resume_with({"train.base_lr": 0.01}, epoch=1, step=8)
    assert new.train.base_lr == 0.01 and run.load_config().train.base_lr == 0.01
    raw = run.read_config()
    assert raw["resumed_with"][0]["set"] == {"train.base_lr": 0.01}
    assert raw["resumed_with"][0]["was"] == {"train.base_lr": 0.05}
    assert (raw["resumed_with"][0]["epoch"], raw["resumed_with"][0]["step"]) == (1, 8)
    # a study rerun plans the original config: it finds this run, which goes on with the new rate
    assert run.config_for(_cfg()).train.base_lr == 0.01
    assert run.config_for(new).train.base_lr == 0.01
    with pytest.raises(RunConfigMismatch):
        run.config_for(_cfg(**{"train.epochs": 9}))
    with pytest.raises(RunFolderError, match="only optimisation keys"):
        run.record_resume_with({"model.drop_pathway": 0.1}, epoch=1, step=8)


def test_state_and_a_damaged_result_is_not_done(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.state() == "pending"
    run.write_config(_cfg())
    assert run.state() == "partial"
    run.write_failed("RuntimeError: x", "tb")
    assert run.state() == "failed" and run.read_failed()["error"] == "RuntimeError: x"
    run.result_path.write_text('{"top1": 0.5')  # torn by hand: not JSON
    assert run.read_result() is None and not run.is_done() and run.state() == "failed"
    run.write_result({"top1": 0.5})
    assert run.state() == "done"
    run.clear_failed()
    assert run.read_failed() is None


def test_load_config_errors_name_the_folder(tmp_path):
    with pytest.raises(RunFolderError, match="not a run folder: config.json is missing"):
        RunDir(tmp_path).load_config()
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(RunFolderError, match="config.json is damaged"):
        RunDir(tmp_path).load_config()


def test_lock_is_exclusive_and_a_dead_holder_does_not_block(tmp_path):
    run = RunDir(tmp_path / "r")
    holder = subprocess.Popen([sys.executable, "-c", F.HOLD_LOCK, str(run.path)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=rf"in use by pid {holder.pid}"):
            with run.lock():
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup in the holder
        holder.wait()
    with run.lock():
        assert f"pid {os.getpid()}" in (run.path / ".lock").read_text()
    with run.lock():  # released on exit
        pass


def test_stale_temporaries_of_own_files_are_removed(tmp_path):
    run = RunDir(tmp_path / "r")
    run.save_checkpoint({"model": {}})
    stale = [run.path / ".result.json.abc123.tmp", run.checkpoint_path.parent / ".last.pt.x9y8.tmp",
             run.path / ".metrics.jsonl.q.tmp"]
    other = [run.path / ".notes.txt.x.tmp", run.path / "keep.tmp"]
    for p in stale + other:
        p.write_bytes(b"x" * 10)
    assert sorted(run.clean_stale_tmp()) == sorted(stale)
    assert all(p.exists() for p in other) and run.has_checkpoint()


def test_files_get_the_umask_mode_not_mkstemp_0600(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "a.json", {"a": 1})
        RunDir(tmp_path / "r").save_checkpoint({"model": {}})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE(RunDir(tmp_path / "r").checkpoint_path.stat().st_mode) == 0o640


def test_read_only_folder_is_a_clear_error(read_only_dir):
    with pytest.raises(RunFolderError, match="not writable"):
        RunDir(read_only_dir).ensure_writable()
    with pytest.raises(RunFolderError, match="cannot create the run folder"):
        RunDir(read_only_dir / "sub").ensure_writable()


def test_numbers_only():
    assert numbers_only({"a": 1, "b": True, "c": float("nan"), "d": "x", "e": 0.5, "f": {"g": 1}}) == {
        "a": 1, "b": 1, "e": 0.5}


def test_lock_waits_for_nobody(tmp_path):
    t0 = time.monotonic()
    with RunDir(tmp_path / "r").lock():
        pass
    assert time.monotonic() - t0 < 5
