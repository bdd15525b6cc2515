"""The training loop on a toy model and loader (the contracts of docs/architecture.md):
run folder, exact resumes, the on_epoch hook, NaN stop, broken-clip share, config guard."""

import json

import pytest
import torch

import _train_fakes as F
from avsf.run import RunConfigMismatch, RunDir
from avsf.train import TooManyFailedClips, TrainingDiverged
from avsf.train import train as _train

VOLATILE = {"train_time_s", "test_time_s", "provenance"}  # wall clock, and when/where it ran


def train(cfg, out, *, factories=F.TOYS, **kw):
    return _train(cfg, out, factories=factories, **kw)


def load_checkpoint(path):
    return RunDir(path.parent.parent).load_checkpoint()


def _stable(result):
    return {k: v for k, v in result.items() if k not in VOLATILE}


def _lines(run):
    return F.metric_rows(run)


def test_run_folder_contents(tmp_path):
    run = tmp_path / "run"
    result = train(F.toy_config(), run, progress=False)
    assert set(p.name for p in run.iterdir()) >= {"config.json", "metrics.jsonl", "checkpoints", "result.json",
                                                   "per_class.json"}
    on_disk = json.loads((run / "result.json").read_text())
    assert on_disk == result
    # numbers at the top level, plus the nested provenance record (PLAN contract 4)
    assert all(isinstance(v, (int, float)) for k, v in result.items() if k != "provenance")
    assert isinstance(result["provenance"], dict)
    for key in ("top1", "top5", "val_top1", "top1_visual", "top1_audio", "gflops", "params_m", "epochs",
                "train_time_s", "failed_clips", "best_epoch"):
        assert key in result, key
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["num_classes"] == F.NUM_CLASSES  # 0 resolved from the dataset
    rows = _lines(run)
    assert [r["split"] for r in rows] == ["train", "val"] * 3
    assert [r["epoch"] for r in rows] == [1, 1, 2, 2, 3, 3]
    for r in rows[::2]:
        assert {"loss", "lr", "train_error", "top1", "avs_loss"} <= set(r)
        assert r["train_error"] == pytest.approx(1 - r["top1"])
    assert {"top1", "top5", "top1_visual", "top1_audio"} <= set(rows[1])
    pc = json.loads((run / "per_class.json").read_text())
    assert len(pc["accuracy"]) == F.NUM_CLASSES and pc["groups"] == {"visual": [0, 1], "audio": [2, 3]}
    # a finished run is not redone
    assert train(F.toy_config(), run, progress=False) == result


def test_resume_after_interruption_is_exact(tmp_path):
    straight = train(F.toy_config(), tmp_path / "a", progress=False)

    class Stop(Exception):
        pass

    def stop_after_2(epoch, metrics):
        assert "val_top1" in metrics and "train_error" in metrics
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(F.toy_config(), tmp_path / "b", on_epoch=stop_after_2, progress=False)
    assert not (tmp_path / "b" / "result.json").exists()
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["state"]["epoch"] == 2
    resumed = train(F.toy_config(), tmp_path / "b", progress=False)
    assert _stable(resumed) == _stable(straight)
    assert _lines(tmp_path / "b") == _lines(tmp_path / "a")


def test_mid_epoch_checkpoint_resume_is_exact(tmp_path):
    cfg = F.toy_config(**{"train.checkpoint_every_steps": 4})
    straight = train(cfg, tmp_path / "a", progress=False)

    # kill inside epoch 2 (6 steps per epoch): the model raises at its 10th training forward,
    # after the step-8 checkpoint
    class Crash(Exception):
        pass

    def crashing(m):
        fwd = m.forward

        def forward(batch):
            if m.training:
                m.n = getattr(m, "n", 0) + 1
                if m.n == 10:
                    raise Crash
            return fwd(batch)

        m.forward = forward
        return m

    with pytest.raises(Crash):
        train(cfg, tmp_path / "b", progress=False, factories=F.factories(wrap_model=crashing))
    st = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["state"]
    assert (st["epoch"], st["batch"], st["step"]) == (1, 2, 8)
    resumed = train(cfg, tmp_path / "b", progress=False)
    assert _stable(resumed) == _stable(straight)
    assert _lines(tmp_path / "b") == _lines(tmp_path / "a")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    # 6 steps per epoch: step 9 of epoch 2 is NaN
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 9"):
        train(F.toy_config(), tmp_path / "run", progress=False, factories=F.factories(nan_after=8))
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ck["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "result.json").exists()


def test_too_many_broken_clips_fail_with_a_clear_message(tmp_path):
    # 4 failed per 8 read: 33% > 10%
    with pytest.raises(TooManyFailedClips, match="max_failure_share") as e:
        train(F.toy_config(), tmp_path / "run", progress=False, factories=F.factories(fail_every=2))
    assert "avsf data check" not in str(e.value) and "avsf data preview" in str(e.value)
    # 1 failed per 9 seen: 11% <= 20%
    r = train(F.toy_config(**{"data.max_failure_share": 0.2}), tmp_path / "ok", progress=False,
              factories=F.factories(fail_every=8))
    assert r["failed_clips"] == 3 * (6 + 2) + 4  # train + val (1 view) batches per epoch, test (2 views) batches


def test_resume_with_another_config_is_refused(tmp_path):
    class Stop(Exception):
        pass

    def stop(epoch, metrics):
        raise Stop

    with pytest.raises(Stop):
        train(F.toy_config(), tmp_path / "run", on_epoch=stop, progress=False)
    with pytest.raises(RunConfigMismatch, match="train.base_lr"):
        train(F.toy_config(**{"train.base_lr": 0.5}), tmp_path / "run", progress=False)


def test_frozen_bn_keeps_statistics_and_affine_fixed(tmp_path):
    from avsf.train.setup import param_groups

    a = train(F.toy_config(**{"train.epochs": 1}), tmp_path / "a", progress=False)
    assert a
    cfg = F.toy_config(**{"train.epochs": 1, "train.frozen_bn": True, "train.init_from": str(tmp_path / "a")})
    before = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    train(cfg, tmp_path / "b", progress=False)
    after = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    for k in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["head.weight"], after["head.weight"])
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    groups = param_groups(m, cfg)
    assert [g["weight_decay"] for g in groups] == [cfg.train.weight_decay, cfg.train.weight_decay_bn]
    assert len(groups[1]["params"]) == 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_and_channels_last_on_cuda(tmp_path):
    r = train(F.toy_config(**{"train.precision": "bf16", "train.channels_last": True, "train.deterministic": False}),
              tmp_path / "run", progress=False)
    assert 0.0 <= r["top1"] <= 1.0


def test_bf16_without_cuda_runs_fp32(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    r = train(F.toy_config(**{"train.precision": "bf16", "train.epochs": 1}), tmp_path / "run", progress=False)
    assert 0.0 <= r["top1"] <= 1.0


_cli = F.cli


def test_cli_reports_the_data_packages_too_many_failed_clips(tmp_path, capsys):
    import avsf.data

    assert TooManyFailedClips is avsf.data.TooManyFailedClips  # one class: the loader's is the one caught
    argv = ["train", "--config", "/dev/null", "--scale", "tiny", "--out", str(tmp_path / "run"), "--no-progress",
            "--set", "train.batch_size=8", "--set", "model.num_classes=0"]
    assert _cli(argv, F.factories(fail_every=2)) == 1
    err = capsys.readouterr().err
    assert "could not be decoded" in err and "avsf data preview" in err and "Traceback" not in err


def test_cli_prints_percent_and_json_and_turns_tensorboard_on(tmp_path, capsys):
    argv = ["train", "--config", "/dev/null", "--scale", "tiny", "--out", str(tmp_path / "run"), "--no-progress",
            "--set", "train.batch_size=8", "--set", "train.epochs=1", "--tensorboard"]
    assert _cli(argv, F.TOYS) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    out = capsys.readouterr().out
    assert f"top1 {100 * result['top1']:.1f}%" in out and "provenance" not in out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["tensorboard"] is True
    assert any((tmp_path / "run" / "tb").iterdir())
    assert _cli(argv + ["--json"], F.TOYS) == 0  # finished: the result again, as JSON fractions
    assert json.loads(capsys.readouterr().out) == result
