"""Study scale-out: run claims (avsf/lease.py through RunDir.claim) and several `avsf study run`
processes splitting one study without training a run twice."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avsf.lease import Lease
from avsf.run import CLAIM_FILE, RunDir

ROOT = Path(__file__).resolve().parents[1]
HOLD = ("import sys, time; from avsf.run import RunDir; c = RunDir(sys.argv[1]).claim(worker='holder'); "
        "print('held' if c else 'refused', flush=True); time.sleep(60)")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "AVSF_CACHE": str(tmp_path / "cache")}


def _holder(tmp_path: Path, run: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=_env(tmp_path))
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_live_claim_is_refused_and_a_killed_workers_claim_is_free_at_once(tmp_path):
    run = RunDir(tmp_path / "run")
    p = _holder(tmp_path, run.path)
    try:
        assert run.claim(worker="me") is None
        assert "holder (pid" in run.claimed_by() and socket.gethostname() in run.claimed_by()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    claim = run.claim(worker="me")  # its flock died with it; its lease names this host: dead
    assert claim is not None
    with claim:
        assert json.loads((run.path / CLAIM_FILE).read_text())["worker"] == "me"
        assert run.claim(worker="other") is None  # another claim in the same process is refused too
    assert not (run.path / CLAIM_FILE).exists()  # released: the file is gone


def _remote_lease(run: RunDir, age_s: float) -> None:
    run.ensure_writable()
    (run.path / CLAIM_FILE).write_text(json.dumps({"host": "node-b", "pid": 4242, "worker": "w1",
                                                   "heartbeat": time.time() - age_s}))


def test_another_machines_claim_holds_while_its_heartbeat_is_fresh_and_expires_after_ttl(tmp_path):
    run = RunDir(tmp_path / "run")
    _remote_lease(run, age_s=5)
    assert run.claim(ttl_s=60) is None
    assert "w1 (pid 4242 on node-b)" in run.claimed_by()
    _remote_lease(run, age_s=120)
    claim = run.claim(ttl_s=60)
    assert claim is not None
    claim.release()


def test_a_stale_lease_is_taken_over_even_when_its_lock_lingers(tmp_path):
    """NFS keeps a crashed client's lock: a lock held while the lease is stale is a dead holder's."""
    run = RunDir(tmp_path / "run")
    p = _holder(tmp_path, run.path)  # holds the flock (the lingering lock)
    try:
        _remote_lease(run, age_s=120)  # ... and its lease says: another machine, silent for 2 minutes
        claim = run.claim(ttl_s=60)
        assert claim is not None and not claim.locked
        claim.release()
    finally:
        p.kill()
        p.wait()


def test_the_heartbeat_keeps_a_long_claim_fresh(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.claim(ttl_s=0.4) as claim:
        first = json.loads((run.path / CLAIM_FILE).read_text())["heartbeat"]
        time.sleep(0.35)
        assert json.loads((run.path / CLAIM_FILE).read_text())["heartbeat"] > first
        assert Lease.acquire(run.path / CLAIM_FILE, ttl_s=0.4) is None
        assert claim.locked


STUDY = """
name = "split"
title = "two workers"
metric = "top1"
variant = [{ name = "beta2", set = { model.beta_a = 0.5 } }, { name = "beta4", set = { model.beta_a = 0.25 } }]
scale.tiny = { seeds = 2, set = { train.epochs = 1 } }
"""


@pytest.mark.slow
def test_two_study_run_processes_finish_a_study_with_every_run_done_once(tmp_path):
    from avsf.data import dataset_info
    from avsf.study import load_study_dir

    env = _env(tmp_path)
    os.environ["AVSF_CACHE"], saved = env["AVSF_CACHE"], os.environ.get("AVSF_CACHE")
    try:  # the synthetic data once, before the workers (they would wait on its lock otherwise)
        from avsf.config import build_config

        dataset_info(build_config(scale="tiny"))
    finally:
        os.environ.pop("AVSF_CACHE") if saved is None else os.environ.update(AVSF_CACHE=saved)
    (tmp_path / "split.toml").write_text(STUDY)
    cmd = [sys.executable, "-m", "avsf", "study", "run", str(tmp_path / "split.toml"), "--scale", "tiny",
           "--out", str(tmp_path / "runs"), "--no-progress"]
    procs = [subprocess.Popen(cmd + ["--worker", f"w{k}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=tmp_path) for k in (1, 2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    started = [m for log in logs for m in re.findall(r"\] (beta\d) seed(\d): (?:starting|resuming)", log)]
    assert sorted(started) == [("beta2", "0"), ("beta2", "1"), ("beta4", "0"), ("beta4", "1")], logs
    assert all(re.search(r"\] beta\d seed\d: (?:starting|resuming)", log) for log in logs), logs  # both trained
    assert {r.state for r in load_study_dir(tmp_path / "runs").runs} == {"done"}
    # A third pass, as N local workers: nothing left, nothing trained again.
    again = subprocess.run(cmd[:-1] + ["--workers", "2"], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("4 already done, 0 to run") == 2 and ": starting" not in again.stdout


def test_workers_get_their_share_of_the_cores_and_the_same_arguments(tmp_path, monkeypatch):
    import avsf.cli.study as cli
    import avsf.study.runner as runner

    seen = {}
    monkeypatch.setattr(runner, "run_workers", lambda n, args: seen.update(n=n, args=args) or 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    (tmp_path / "split.toml").write_text(STUDY)
    from avsf.cli import main

    assert main(["study", "run", str(tmp_path / "split.toml"), "--workers", "4", "--scale", "tiny",
                 "--variant", "beta2", "--set", "train.epochs=2", "--out", str(tmp_path / "o")]) == 0
    assert seen["n"] == 4 and cli is not None
    args = seen["args"]
    assert args[:3] == ["study", "run", str(tmp_path / "split.toml")] and "--no-progress" in args
    assert args[args.index("--variant") + 1] == "beta2" and args[args.index("--scale") + 1] == "tiny"
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    assert sets == ["train.epochs=2", "train.num_threads=2"]


FINISH = ("import sys, time; from avsf.run import RunDir; r = RunDir(sys.argv[1]); c = r.claim(worker='pre'); "
          "print('held', flush=True); time.sleep(1.5); r.write_result({'pretext_loss': 0.5}); c.release()")


def test_a_run_waits_while_another_worker_trains_its_pretraining_run(tmp_path, monkeypatch):
    import avsf.study.runner as runner
    from avsf.study import run_study
    from avsf.study.spec import study_from_dict

    spec = study_from_dict({"name": "ssl", "default_scale": "tiny",
                            "pretrain": {"train.objective": "pretext", "data.label_free": True},
                            "variant": [{"name": "avs", "pretrain": {"set": {}}}],
                            "scale": {"tiny": {"seeds": 1}}}, source="ssl.toml")
    out = tmp_path / "runs"
    pre = out / "_pretrain" / "avs" / "seed0"
    holder = subprocess.Popen([sys.executable, "-c", FINISH, str(pre)], stdout=subprocess.PIPE, text=True,
                              env=_env(tmp_path))
    assert holder.stdout.readline().strip() == "held"
    monkeypatch.setattr(runner, "WAIT_S", 0.2)
    trained, lines = [], []

    def fake_train(cfg, out_dir, **kw):
        trained.append(cfg.name)
        RunDir(out_dir).write_result({"top1": 0.5})
        return {"top1": 0.5}

    outcome = run_study(spec, out, train_fn=fake_train, progress=False, log=lines.append)
    holder.wait(timeout=30)
    assert trained == ["ssl/avs/seed0"] and not outcome.failed, lines  # not failed for a pretraining run in progress
    assert outcome.elsewhere == [("_pretrain/avs", 0)] and outcome.done == [("avs", 0)]
    assert any("waiting for its pretraining run (pre (pid" in line for line in lines), lines


def test_workers_auto_is_one_per_usable_core_and_bad_values_are_refused(monkeypatch, capsys):
    import argparse

    import avsf.cli.study as cli

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert cli._workers("auto") == 3 and cli._workers("2") == 2
    for bad in ("0", "many"):
        try:
            cli._workers(bad)
        except argparse.ArgumentTypeError as e:
            assert repr(bad) in str(e)
        else:
            raise AssertionError(f"--workers {bad} was accepted")


def test_the_study_eta_counts_runs_left_and_shares_them_among_the_live_workers(tmp_path):
    from types import SimpleNamespace

    from avsf.run import RunDir
    from avsf.study.runner import _study_eta

    todo = [SimpleNamespace(path=tmp_path / f"r{k}") for k in range(5)]
    RunDir(todo[0].path).write_result({"top1": 0.5})  # finished: not left
    held = RunDir(todo[2].path).claim(worker="other")  # another worker trains it now
    try:
        # left: r1 (this one), r2, r3, r4 -> 4 runs over 2 workers = 2 rounds of 60 s
        assert _study_eta([50.0, 70.0], todo, todo[1]) == "2m00s"
    finally:
        held.release()
    assert _study_eta([60.0], todo, todo[1]) == "4m00s"  # alone again: 4 rounds
    assert _study_eta([], todo, todo[1]) == "unknown"
