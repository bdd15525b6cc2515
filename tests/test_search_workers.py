"""`avsf search` storage behaviour: continuation, concurrent workers, a SIGKILLed worker.

Workers here are real processes on one SQLite file. They train with a fake trainer (this file,
run as a script) so the storage logic is tested in seconds; tests/test_search_real.py runs the
real trainer through the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from avsf.study.search import load_search, make_storage, run_search  # noqa: E402

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]

SPEC = """
name = "wsearch"
default_scale = "tiny"
trials = {trials}
objectives = ["val_top1:maximize", "gflops:minimize"]

[space.drop_pathway]
key = "model.drop_pathway"
type = "float"
low = 0.0
high = 0.95

[space.beta_a]
key = "model.beta_a"
type = "categorical"
choices = ["1/8", "1/4", "1/2", "1"]

[sampler]
name = "random"
seed = {seed}

[storage]
heartbeat_interval = 1
grace_period = 2
max_retry = 1
"""


def write_spec(tmp: Path, trials: int = 4, seed: int = 0) -> Path:
    p = tmp / "wsearch.toml"
    p.write_text(SPEC.format(trials=trials, seed=seed))
    return p


def fake_flops(cfg) -> float:
    return 0.1 + 0.4 * cfg.model.beta_a


def fake_train(cfg, out_dir, *, on_epoch=None, progress=True):
    """Writes a run folder like the trainer; accuracy is a smooth function of (Pd, beta_A)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(cfg.to_json())
    epoch_s = float(os.environ.get("AVSF_FAKE_EPOCH_S", "0"))
    pd, ba = cfg.model.drop_pathway, cfg.model.beta_a
    top1 = 0.0
    for epoch in range(cfg.train.epochs):
        time.sleep(epoch_s)
        top1 = (epoch + 1) / cfg.train.epochs * (0.8 - (pd - 0.6) ** 2 - 0.1 * abs(ba - 0.5))
        with open(out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"epoch": epoch, "split": "val", "top1": top1}) + "\n")
        if on_epoch is not None:
            on_epoch(epoch, {"top1": top1})
    result = {"top1": top1, "val_top1": top1, "gflops": fake_flops(cfg), "epochs": cfg.train.epochs}
    (out_dir / "result.json").write_text(json.dumps(result))
    return result


def worker_cmd(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(HERE), str(spec), "--out", str(out), "--json", *extra]


def load(out: Path, name: str = "wsearch"):
    storage = make_storage(f"sqlite:///{out / 'optuna.db'}", {"heartbeat_interval": 1, "grace_period": 2})
    return optuna.load_study(study_name=name, storage=storage)


def states(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_two_invocations_continue_one_study(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "runs"
    outs = []
    for _ in range(2):
        r = subprocess.run(worker_cmd(spec, out, "--trials", "2"), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert outs[0]["n_complete"] == 2 and outs[1]["n_complete"] == 4
    assert outs[1]["study_name"] == "wsearch" and outs[1]["best_trials"]
    assert sorted(outs[0]["ran"] + outs[1]["ran"]) == [0, 1, 2, 3]
    study = load(out)
    assert states(study) == {"COMPLETE": 4}
    for t in study.trials:
        run = out / f"trial{t.number}"
        assert json.loads((run / "result.json").read_text())["val_top1"] == pytest.approx(t.values[0])
        assert json.loads((run / "config.json").read_text())["model"]["drop_pathway"] == pytest.approx(
            t.params["drop_pathway"])
    meta = json.loads((out / "search.json").read_text())
    assert meta["scale"] == "tiny" and meta["name"] == "wsearch" and meta["storage"] == "optuna.db"


def test_concurrent_workers_share_the_target(tmp_path):
    n = 6
    spec = write_spec(tmp_path, trials=n)
    out = tmp_path / "runs"
    env = dict(os.environ, AVSF_FAKE_EPOCH_S="0.3")
    procs = [subprocess.Popen(worker_cmd(spec, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    results = []
    for p in procs:
        so, se = p.communicate(timeout=180)
        assert p.returncode == 0, se
        results.append(json.loads(so.strip().splitlines()[-1]))
    ran = results[0]["ran"] + results[1]["ran"]
    assert len(ran) == len(set(ran)) == n, results  # no trial run twice, none missing
    assert all(r["ran"] for r in results), "both workers should have taken a share"
    study = load(out)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == n
    keys = [(t.params["drop_pathway"], t.params["beta_a"]) for t in complete]
    assert len(set(keys)) == n, "workers drew the same parameters"
    assert len({t.number for t in complete}) == n
    assert sorted(int(p.name[5:]) for p in out.glob("trial*") if (p / "result.json").exists()) == sorted(
        t.number for t in complete)


def test_sigkilled_worker_leaves_study_usable(tmp_path):
    spec = write_spec(tmp_path, trials=2)
    out = tmp_path / "runs"
    env = dict(os.environ, AVSF_FAKE_EPOCH_S="30")
    p = subprocess.Popen(worker_cmd(spec, out, "--trials", "1"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 60
    while not (out / "trial0" / "config.json").exists():
        assert time.time() < deadline and p.poll() is None, "worker never started its trial"
        time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    assert states(load(out)) == {"RUNNING": 1}
    # A new worker right away (no waiting by hand): it sees the dead trial go stale after the
    # grace period, fails it, runs its re-queued copy and finishes the target.
    res = run_search(load_search(spec), out=out, train_fn=fake_train, flops_fn=fake_flops,
                     progress=False, log=lambda m: None)
    study = load(out)
    by_number = {t.number: t for t in study.trials}
    assert by_number[0].state.name == "FAIL"
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert retried[0].params == by_number[0].params
    assert res.summary["n_complete"] == 2 and res.summary["n_running"] == 0
    # ... and the study still opens and continues from a fresh process.
    r = subprocess.run(worker_cmd(spec, out, "--trials", "1"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["n_complete"] == 3


def _worker_main(argv: list[str]) -> int:
    """`python tests/test_search_workers.py SPEC --out DIR [--trials N] --json` with the fake trainer."""
    import argparse

    from avsf.study.search import format_summary

    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("--out")
    ap.add_argument("--trials", type=int)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run_search(load_search(a.spec), out=a.out, trials=a.trials, train_fn=fake_train,
                     flops_fn=fake_flops, progress=False)
    print(format_summary(res.summary), file=sys.stderr)
    print(json.dumps(res.summary))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(_worker_main(sys.argv[1:]))
