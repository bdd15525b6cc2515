"""The trainer and its run folder: lock, config checks before results, config written only when
training starts, leftovers of killed writes, damaged files, bad inputs caught before work,
divergence with advice that works as written, provenance."""

import json
import os
import re
import shlex
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import _train_fakes as F
from _train_fakes import read_only_dir  # noqa: F401 - a fixture
from avsf.config import ConfigError
from avsf.run import RunConfigMismatch, RunDir, RunFolderError, RunLocked
from avsf.train import TrainingDiverged
from avsf.train import train as _train


def train(cfg, out, *, factories=F.TOYS, **kw):
    return _train(cfg, out, progress=False, factories=factories, **kw)


_cli = F.cli


def _files(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_a_second_trainer_on_the_same_folder_gets_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", F.HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=f"in use by pid {holder.pid}"):
            train(F.toy_config(), run)
        argv = ["train", "--config", os.devnull, "--scale", "tiny", "--out", str(run), "--no-progress"]
        assert _cli(argv) == 2
        assert f"is in use by pid {holder.pid}" in capsys.readouterr().err
        assert not RunDir(run).config_path.exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(F.toy_config(**{"train.epochs": 1}), run)["epochs"] == 1  # a dead holder blocks nothing


def test_a_finished_folder_with_another_config_is_an_error_not_its_old_result(tmp_path):
    first = train(F.toy_config(**{"train.epochs": 1}), tmp_path / "run")
    with pytest.raises(RunConfigMismatch, match="train.epochs: 1 there, 2 now"):
        train(F.toy_config(**{"train.epochs": 2}), tmp_path / "run")
    assert train(F.toy_config(**{"train.epochs": 1, "data.num_threads": 1}), tmp_path / "run") == first


def test_nothing_is_written_before_the_checks_pass_and_a_corrected_config_is_accepted(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="train.batch_size: 100 is not allowed"):
        train(F.toy_config(**{"train.batch_size": 100}), run)
    with pytest.raises(ConfigError, match="model.num_classes: 2 is not allowed; .* 4 classes"):
        train(F.toy_config(**{"model.num_classes": 2}), run)
    with pytest.raises(ConfigError, match="eval.split: 'nope' is not allowed"):
        train(F.toy_config(**{"eval.split": "nope"}), run)  # before training, not after it
    assert not RunDir(run).config_path.exists() and not RunDir(run).metrics_path.exists()
    # a run killed before its first checkpoint leaves config.json and rows: no progress, so a
    # corrected config is accepted and the stale rows are dropped
    RunDir(run).write_config(F.toy_config(**{"train.base_lr": 5.0}))
    RunDir(run).append_metrics({"epoch": 1, "split": "train", "loss": 9.0})
    r = train(F.toy_config(**{"train.epochs": 1}), run)
    assert json.loads(RunDir(run).config_path.read_text())["train"]["base_lr"] == 0.1
    assert [m["split"] for m in RunDir(run).read_metrics()] == ["train", "val"] and r["epochs"] == 1


def test_a_label_outside_the_head_names_the_manifest_row(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "manifest.csv").write_text("path,label,split\na.mp4,0,train\nb.mp4,3,train\nc.mp4,7,train\n"
                                       "d.mp4,1,val\ne.mp4,2,test\n")

    def info(cfg):
        return SimpleNamespace(root=root, num_classes=4, class_names=list("abcd"), groups={}, multi_label=False,
                               verb_noun=False, split_sizes={"train": 3, "val": 1, "test": 1})

    toys = F.factories()
    bad = type(toys)(model=toys.model, loader=toys.loader, dataset_info=info, count_flops=toys.count_flops)
    with pytest.raises(ConfigError, match=r"manifest.csv: split 'train', row 3 \(.*c.mp4\): label 7 outside "
                                          r"the head's classes 0..3"):
        train(F.toy_config(**{"train.batch_size": 1}), tmp_path / "run", factories=bad)
    assert _files(tmp_path / "run") in ([], [".lock"])


def test_leftover_temporaries_are_removed_and_a_damaged_result_is_redone(tmp_path):
    run = RunDir(tmp_path / "run")
    first = train(F.toy_config(**{"train.epochs": 1}), run.path)
    stale = [run.checkpoint_path.parent / ".last.pt.k1ll3d.tmp", run.path / ".result.json.x.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    run.result_path.write_text('{"top1": 0.')  # torn by hand: not done
    again = train(F.toy_config(**{"train.epochs": 1}), run.path)  # tests the final checkpoint again
    assert not any(p.exists() for p in stale)
    assert run.read_result() == again and again["top1"] == first["top1"]


def test_read_only_output_folder_fails_before_work(read_only_dir):
    calls = []
    toys = F.factories()

    def info(cfg):
        calls.append(1)
        return toys.dataset_info(cfg)

    spy = type(toys)(model=toys.model, loader=toys.loader, dataset_info=info, count_flops=toys.count_flops)
    with pytest.raises(RunFolderError, match="not writable"):
        train(F.toy_config(), read_only_dir / "run" if os.geteuid() != 0 else read_only_dir, factories=spy)
    assert calls == []


def _unused_param(m):
    m.unused = torch.nn.Parameter(torch.zeros(1))
    return m


def test_blown_up_weights_keep_the_last_good_checkpoint_and_resume_with_works_as_written(tmp_path, capsys):
    run = RunDir(tmp_path / "run")

    def blow(m):
        with torch.no_grad():
            m.unused.fill_(1e7)  # the loss stays finite: only the weight check can see it

    wrap = F.after_forwards(8, blow)  # 6 steps per epoch: weights blow up in epoch 2
    toys = F.factories(wrap_model=lambda m: wrap(_unused_param(m)))
    with pytest.raises(TrainingDiverged, match=r"weights reached \|w\| = 1e\+07") as e:
        train(F.toy_config(), run.path, factories=toys)
    ck = run.load_checkpoint()
    assert ck["state"]["epoch"] == 1 and float(ck["model"]["unused"].abs().max()) == 0.0
    msg = str(e.value)
    assert "last good checkpoint (epoch 1, step 6)" in msg
    command = re.search(r"resume from it with a lower learning rate: (avsf train .*)$", msg).group(1)
    argv = shlex.split(command)[1:] + ["--no-progress"]
    assert argv[:3] == ["train", "--out", str(run.path)] and "train.base_lr=0.01" in argv
    assert _cli(argv, F.factories(wrap_model=_unused_param)) == 0
    cfg = run.read_config()
    assert cfg["train"]["base_lr"] == 0.01
    assert cfg["resumed_with"][0]["set"] == {"train.base_lr": 0.01} and cfg["resumed_with"][0]["epoch"] == 1
    assert run.is_done()
    with pytest.raises(RunFolderError, match="finished"):
        train(run.load_config(), run.path, resume_with=["train.base_lr=0.001"])


def test_a_loss_blow_up_before_any_checkpoint_advises_a_fresh_run_that_is_accepted(tmp_path):
    def huge(m):
        with torch.no_grad():
            m.head.weight.mul_(1e8)

    toys = F.factories(wrap_model=F.after_forwards(2, huge))
    with pytest.raises(TrainingDiverged, match=r"loss became .* at epoch 1, step 3") as e:
        train(F.toy_config(), tmp_path / "run", factories=toys)
    assert not RunDir(tmp_path / "run").has_checkpoint()
    assert "no checkpoint was kept" in str(e.value) and "--set train.base_lr=0.01" in str(e.value)
    assert train(F.toy_config(**{"train.base_lr": 0.01, "train.epochs": 1}), tmp_path / "run")["epochs"] == 1


def test_resume_with_refuses_keys_that_change_the_model_and_folders_without_a_checkpoint(tmp_path):
    class Stop(Exception):
        pass

    def stop(epoch, metrics):
        raise Stop

    run = RunDir(tmp_path / "run")
    with pytest.raises(RunFolderError, match="holds no checkpoint"):
        train(F.toy_config(), run.path, resume_with=["train.base_lr=0.01"])
    with pytest.raises(Stop):
        train(F.toy_config(), run.path, on_epoch=stop)
    with pytest.raises(RunFolderError, match="only optimisation keys"):
        train(F.toy_config(), run.path, resume_with=["model.dropout=0.1"])
    with pytest.raises(ConfigError, match="train.base_lr: -1.0 is not allowed"):
        train(F.toy_config(), run.path, resume_with=["train.base_lr=-1"])
    assert "resumed_with" not in run.read_config()


def test_result_records_provenance(tmp_path):
    r = train(F.toy_config(**{"train.epochs": 1}), tmp_path / "run")
    prov = r["provenance"]
    assert set(prov) == {"avsf_version", "git_commit", "git_dirty", "torch", "python", "host", "created"}
    assert prov["torch"] == torch.__version__
    assert prov["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"])
    assert RunDir(tmp_path / "run").read_result()["provenance"] == prov


def test_git_dirty_counts_code_changes_not_reports(tmp_path, monkeypatch):
    import avsf.provenance as prov

    seen = []

    def fake_git(*args):
        seen.append(args)
        return "abc\n" if args[0] == "rev-parse" else ""

    monkeypatch.setattr(prov, "_git", fake_git)
    prov.code_version.cache_clear()
    try:
        assert prov.code_version()["git_dirty"] is False
    finally:
        prov.code_version.cache_clear()
    status = next(a for a in seen if a[0] == "status")
    assert status[status.index("--") + 1:] == prov.CODE_PATHS and "reports" not in status
