"""End to end on the built-in synthetic `tiny` data with the real model and loader:
the CLI run folder, SIGKILL-and-resume equality, and a 2-process torchrun (gloo) run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import _train_fakes as F

VOLATILE = {"train_time_s", "test_time_s", "provenance"}  # wall clock, and when/where it ran
TINY = ["--config", os.devnull, "--scale", "tiny", "--set", "train.num_threads=1", "--no-progress", "--json"]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _train_cmd(out, *sets):
    args = [sys.executable, "-m", "avsf", "train", *TINY, "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return args


def _result(run):
    return {k: v for k, v in json.loads((run / "result.json").read_text()).items() if k not in VOLATILE}


def _metric_lines(run):
    return F.metric_rows(run)


@pytest.mark.slow
def test_cli_tiny_run_writes_the_run_folder_and_is_not_redone(tmp_path):
    run = tmp_path / "run"
    p = subprocess.run(_train_cmd(run), env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads((run / "result.json").read_text())
    assert json.loads(p.stdout) == result
    for key in ("top1", "top5", "val_top1", "top1_visual", "top1_audio", "top1_sync", "gflops", "params_m",
                "epochs", "train_time_s", "failed_clips", "best_epoch"):
        assert isinstance(result[key], (int, float)), key
    assert (run / "checkpoints" / "last.pt").exists() and (run / "per_class.json").exists()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["scale"] == "tiny" and cfg["model"]["num_classes"] > 0
    rows = _metric_lines(run)
    assert [r["split"] for r in rows] == ["train", "val"] * cfg["train"]["epochs"]
    # `avsf eval` folds BN into the convs by default: the same scores as the model as trained
    views = f"{cfg['eval']['temporal_views']}x{cfg['eval']['spatial_views']}"
    for flags in ([], ["--no-fuse"]):
        p = subprocess.run([sys.executable, "-m", "avsf", "eval", str(run), "--no-progress", "--json", *flags], env=_env(),
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        tested = json.loads(p.stdout)
        for key in ("top1", "top5", "top1_visual", "top1_audio"):
            assert tested[key] == pytest.approx(result[key], abs=1e-9), (flags, key)
        assert json.loads((run / f"eval_{views}.json").read_text()) == tested
    # the same command on a finished run returns its result without training: no file of the
    # run is rewritten (a timing comparison would be flaky on a loaded machine)
    before = {f: f.stat().st_mtime_ns for f in run.rglob("*") if f.is_file()}
    p = subprocess.run(_train_cmd(run), env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout) == result
    after = {f: f.stat().st_mtime_ns for f in run.rglob("*") if f.is_file() and f.name != ".lock"}
    assert after == {f: t for f, t in before.items() if f.name != ".lock"}


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_result(tmp_path):
    sets = ["train.deterministic=true", "train.epochs=3", "train.checkpoint_every_steps=3"]
    straight = subprocess.Popen(_train_cmd(tmp_path / "a", *sets), env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_train_cmd(tmp_path / "b", *sets), env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "b" / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)  # a real kill, wherever the run happens to be
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "b" / "result.json").exists()
    out, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err[-3000:]
    resumed = subprocess.run(_train_cmd(tmp_path / "b", *sets), env=_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _result(tmp_path / "b") == _result(tmp_path / "a")
    assert _metric_lines(tmp_path / "b") == _metric_lines(tmp_path / "a")


@pytest.mark.slow
def test_kill_at_a_mid_epoch_checkpoint_then_resume_gives_the_same_result(tmp_path):
    """The twin of the test above at a chosen kind of boundary: killed right after a mid-epoch
    checkpoint, the resume must restore the loader position and every generator."""
    sets = ["train.deterministic=true", "train.epochs=2", "train.checkpoint_every_steps=2"]
    a = subprocess.Popen(_train_cmd(tmp_path / "a", *sets), env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(_train_cmd(tmp_path / "b", *sets), env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    st = F.kill_at_a_mid_epoch_checkpoint(b, tmp_path / "b")
    assert b.returncode == -signal.SIGKILL and st["batch"] > 0 and st["step"] % 2 == 0
    assert not (tmp_path / "b" / "result.json").exists()
    out, err = a.communicate(timeout=300)
    assert a.returncode == 0, err[-3000:]
    b = subprocess.run(_train_cmd(tmp_path / "b", *sets), env=_env(), capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stderr[-3000:]
    assert _result(tmp_path / "b") == _result(tmp_path / "a")
    assert _metric_lines(tmp_path / "b") == _metric_lines(tmp_path / "a")


@pytest.mark.slow
def test_torchrun_two_cpu_processes_gloo(tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "avsf", "train", *TINY, "--set", "train.epochs=1", "--set", "data.num_threads=1",
           "--set", "train.precise_bn_batches=2", "--out", str(run)]  # precise BN's all-reduce too
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-4000:])
    result = json.loads((run / "result.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    rows = _metric_lines(run)
    train_row = next(r for r in rows if r["split"] == "train")
    per_rank = train_row["step"] * cfg["train"]["batch_size"]
    assert train_row["clips"] == 2 * per_rank  # both shards' clips counted (all-reduced)
    from avsf.config import config_from_dict
    from avsf.data import dataset_info

    sizes = dataset_info(config_from_dict(cfg)).split_sizes
    assert result["clips"] == sizes[cfg["eval"]["split"]]  # every test clip scored once over the shards
    assert 0.0 <= result["top1"] <= 1.0
    assert len(rows) == 2  # rank 0 alone wrote the metrics
    assert rows[1]["split"] == "val" and rows[1]["precise_bn_s"] >= 0
    assert p.stdout.count('"top1"') == 1  # and printed the result
