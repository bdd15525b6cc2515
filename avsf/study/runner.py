"""Run a study: every variant x seed as one training run, one after another, resumable.

- A finished run (result.json present) is skipped and its result is never touched.
- An interrupted run (a checkpoint, no result) is handed back to the trainer, which resumes it.
- A run that raises is recorded in its folder (failed.json) and the study goes on; the
  outcome says which failed, and the command exits non-zero at the end.
- A run folder that already holds a run of a *different* config is refused (a study folder
  never mixes two setups); run the changed study into another --out.
- A variant with a pretraining run (`pretrain = {...}`, docs/ssl.md) is planned after it: the
  pretraining run (once per name and seed, into <study>/_pretrain/<name>/seed<k>/) comes first,
  and the variant's run starts from it (`train.init_from`); a variant whose pretraining run did
  not finish fails without training, naming it.
- Several runners (workers) may share one study folder, on one machine or on many that mount
  it: each claims a run before training it (`RunDir.claim`: flock + heartbeat lease, see
  avsf/lease.py) and skips runs another live worker holds, or that another worker finished or
  failed during this pass, so no run is trained twice; a run whose pretraining run another
  worker is training waits for it. `run_workers` starts N local workers.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from avsf.cores import usable_cores
from avsf.io import atomic_write_json
from avsf.run import FAILED_FILE, RunDir, read_json
from avsf.study.spec import PRETRAIN_FOLDER, StudyError, StudySpec
from avsf.study.store import STUDY_FILE, run_dir

TrainFn = Callable[..., dict]


@dataclass
class PlannedRun:
    variant: str  # a variant's name, or "_pretrain/<name>" for a pretraining run
    seed: int
    path: Path
    cfg: Any  # avsf.config.Config
    needs: Path | None = None  # the run that must be finished first (the variant's pretraining run)


@dataclass
class StudyOutcome:
    out_dir: Path
    done: list[tuple[str, int]] = field(default_factory=list)  # finished now
    skipped: list[tuple[str, int]] = field(default_factory=list)  # finished before
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    elsewhere: list[tuple[str, int]] = field(default_factory=list)  # run (or being run) by another worker

    @property
    def ok(self) -> bool:
        return not self.failed


def _default_train() -> TrainFn:
    from avsf.train import train

    return train


def plan_study(
    spec: StudySpec,
    out_dir: str | Path,
    *,
    scale: str | None = None,
    seeds: int | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    variants: list[str] | None = None,
) -> list[PlannedRun]:
    """Every run of the study in the order they train: per variant and seed, its pretraining run
    first (once per pretraining name and seed), then the variant's run."""
    scale = scale or spec.default_scale
    chosen = [spec.variant(v) for v in variants] if variants else spec.variants
    plan: list[PlannedRun] = []
    planned: set[Path] = set()
    for v in chosen:
        for seed in spec.seeds(scale, seeds):
            cfg = spec.config_for(v, scale=scale, seed=seed, overrides=overrides)
            needs = None
            if v.pretrain is not None:
                needs = run_dir(Path(out_dir) / PRETRAIN_FOLDER, v.pretrain.name, seed)
                if needs not in planned:
                    planned.add(needs)
                    pre = spec.config_for(v, scale=scale, seed=seed, overrides=overrides, pretrain=True)
                    plan.append(PlannedRun(f"{PRETRAIN_FOLDER}/{v.pretrain.name}", seed, needs, pre))
                cfg.train.init_from = str(needs)
            plan.append(PlannedRun(v.name, seed, run_dir(out_dir, v.name, seed), cfg, needs))
    return plan


def _say(msg: str) -> None:
    """One write per line: the lines of workers sharing a terminal or a pipe never interleave."""
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def check_prepared_data(spec: StudySpec, plan: list[PlannedRun]) -> None:
    """Every prepared folder the planned runs read holds a manifest, checked before anything is
    written: a missing dataset is one error naming it and the study's `data_prepare` command,
    not a failed run per variant. Generated sets (`data.dataset = "synth"`, ...) need nothing."""
    from avsf.config import ConfigError
    from avsf.data import BUILTIN_SETS, prepared_root

    for dataset in dict.fromkeys(p.cfg.data.dataset for p in plan):
        if dataset in BUILTIN_SETS:
            continue
        try:
            prepared_root(dataset)
        except ConfigError as e:
            how = f"; prepare it first: {spec.data_prepare}" if spec.data_prepare else ""
            raise StudyError(f"{spec.source or spec.name}: {e}{how}") from None


def _show(metric: str, v: float | None) -> str:
    """An accuracy fraction as percent ("82.0%"); other numbers as they are."""
    if v is None or not isinstance(v, (int, float)):
        return "-"
    if (metric.startswith(("top1", "top5", "mAP", "val_top1")) or metric.endswith("_top1")) and 0.0 <= v <= 1.0:
        return f"{100 * v:.1f}%"
    return f"{v:.4g}"


def _fmt_duration(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _write_study_record(out_dir: Path, spec: StudySpec, scale: str, plan: list[PlannedRun],
                        overrides: dict[str, Any] | list[str] | None) -> None:
    """study.json: the spec, scale and every seed run so far at that scale."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_list = sorted({p.seed for p in plan})
    prior = read_json(out_dir / STUDY_FILE)
    if isinstance(prior, dict) and prior.get("scale") == scale:
        seed_list = sorted(set(seed_list) | {int(s) for s in prior.get("seeds", [])})
    atomic_write_json(out_dir / STUDY_FILE, {
        "spec": spec.to_dict(),
        "scale": scale,
        "seeds": seed_list,
        "overrides": overrides if overrides else {},
        "variants_run": [p.variant for p in plan],
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def _epoch_logger(p: PlannedRun, log: Callable[[str], None], t0: float) -> Callable[[int, dict], None]:
    """The trainer's on_epoch hook: one progress line per epoch, accuracies in percent."""
    epochs = p.cfg.train.epochs

    def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
        done_ep = int(epoch)  # the trainer passes the number of epochs completed (1-based)
        elapsed = time.monotonic() - t0
        left = elapsed / max(done_ep, 1) * max(epochs - done_ep, 0)
        parts = []
        for k in ("loss", "top1", "val_top1", "train_error"):
            v = metrics.get(k) if isinstance(metrics, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
                parts.append(f"{k} {100 * v:.1f}%" if k != "loss" else f"{k} {v:.3g}")
        log(f"    {p.variant} seed{p.seed} epoch {done_ep}/{epochs} {' '.join(parts)} "
            f"(run ETA {_fmt_duration(left)})")

    return on_epoch


def _record_failure(p: PlannedRun, msg: str, tb: str, tag: str, log: Callable[[str], None],
                    outcome: StudyOutcome) -> None:
    """failed.json in the run's folder, the outcome's list, one line; the study goes on."""
    RunDir(p.path).write_failed(msg, tb)
    outcome.failed.append((p.variant, p.seed, msg))
    log(f"{tag} {p.variant} seed{p.seed}: FAILED ({msg}); going on")


def _run_one(p: PlannedRun, tag: str, spec: StudySpec, train_fn: TrainFn, progress: bool,
             log: Callable[[str], None], outcome: StudyOutcome) -> float | None:
    """Train one planned run; record it in `outcome` (a failure in failed.json). Returns its
    duration when it finished."""
    run = RunDir(p.path)
    p.path.mkdir(parents=True, exist_ok=True)
    if p.needs is not None and not RunDir(p.needs).is_done():
        _record_failure(p, f"its pretraining run {p.needs} did not finish (see its failed.json); the next "
                           f"`avsf study run` retries both", "", tag, log, outcome)
        return None
    t0 = time.monotonic()
    try:
        result = train_fn(p.cfg, p.path, on_epoch=_epoch_logger(p, log, t0), progress=progress)
    except KeyboardInterrupt:
        log(f"interrupted during {p.variant} seed{p.seed}; run the same command again to resume")
        raise
    except Exception as e:  # a failing run is recorded and the study goes on
        _record_failure(p, f"{type(e).__name__}: {e}", traceback.format_exc(), tag, log, outcome)
        return None
    dt = time.monotonic() - t0
    run.clear_failed()
    if not run.is_done():
        # The trainer returned without writing result.json: keep the returned numbers.
        if not (isinstance(result, dict) and result):
            _record_failure(p, "the trainer returned without a result", "", tag, log, outcome)
            return None
        run.write_result(result)
    outcome.done.append((p.variant, p.seed))
    val = result.get(spec.metric) if isinstance(result, dict) else None
    shown = f"{spec.metric} {_show(spec.metric, val)}" if isinstance(val, (int, float)) else "done"
    log(f"{tag} {p.variant} seed{p.seed}: {shown} in {_fmt_duration(dt)}")
    return dt


def run_study(
    spec: StudySpec,
    out_dir: str | Path | None = None,
    *,
    scale: str | None = None,
    seeds: int | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    variants: list[str] | None = None,
    train_fn: TrainFn | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    worker: str = "",
    claim_ttl_s: float | None = None,
) -> StudyOutcome:
    """Run every planned variant x seed that has no result yet and no other worker holds; see
    the module docstring. `worker` names this runner in log lines and claims; `claim_ttl_s`:
    seconds without a heartbeat after which a remote worker's claim counts as dead."""
    scale = scale or spec.default_scale
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / spec.name
    log = log or _say
    progress = sys.stderr.isatty() if progress is None else progress
    train_fn = train_fn or _default_train()

    plan = plan_study(spec, out_dir, scale=scale, seeds=seeds, overrides=overrides, variants=variants)
    check_prepared_data(spec, plan)
    # Refuse to mix setups in one folder before anything runs: the trainer's own "same run"
    # rule (avsf.run.RunDir.config_for), so what passes here passes there.
    for p in plan:
        RunDir(p.path).config_for(p.cfg)
    _write_study_record(out_dir, spec, scale, plan, overrides)

    outcome = StudyOutcome(out_dir=out_dir)
    todo = [p for p in plan if not RunDir(p.path).is_done()]
    outcome.skipped = [(p.variant, p.seed) for p in plan if RunDir(p.path).is_done()]
    me = f"{worker} " if worker else ""
    log(f"{me}study {spec.name} (scale {scale}): {len(plan)} runs, {len(outcome.skipped)} already done, "
        f"{len(todo)} to run -> {out_dir}")
    started = time.time()
    durations: list[float] = []
    for i, p in enumerate(_ready_in_turn(todo, worker, claim_ttl_s, log), 1):
        tag = f"{me}[{i}/{len(todo)}]"
        claim = RunDir(p.path).claim(worker=worker, ttl_s=claim_ttl_s)
        if claim is None:
            outcome.elsewhere.append((p.variant, p.seed))
            log(f"{tag} {p.variant} seed{p.seed}: being run by {RunDir(p.path).claimed_by()}; skipped")
            continue
        with claim:
            if _taken_care_of(RunDir(p.path), started):
                outcome.elsewhere.append((p.variant, p.seed))
                log(f"{tag} {p.variant} seed{p.seed}: finished or failed by another worker meanwhile; skipped")
                continue
            eta = _study_eta(durations, todo, p)
            what = "resuming" if RunDir(p.path).state() in ("partial", "failed") else "starting"
            log(f"{tag} {p.variant} seed{p.seed}: {what} (study ETA {eta})")
            dt = _run_one(p, tag, spec, train_fn, progress, log, outcome)
        if dt is not None:
            durations.append(dt)

    log(f"{me}study {spec.name}: {len(outcome.done)} finished now, {len(outcome.skipped)} finished before, "
        f"{len(outcome.elsewhere)} left to other workers, {len(outcome.failed)} failed")
    for v, s, msg in outcome.failed:
        log(f"  failed: {v} seed{s}: {msg} (details in {run_dir(out_dir, v, s) / FAILED_FILE})")
    return outcome


def _study_eta(durations: list[float], todo: list[PlannedRun], current: PlannedRun) -> str:
    """Time left for the study: the runs not yet finished (this one included) at this worker's
    mean run time, shared among the workers now training (this one and the live claims on other
    runs), a round of runs at a time."""
    if not durations:
        return "unknown"
    left = [q for q in todo if not RunDir(q.path).is_done()]
    workers = 1 + sum(1 for q in left if q is not current and RunDir(q.path).is_claimed())
    return _fmt_duration(sum(durations) / len(durations) * math.ceil(len(left) / workers))


WAIT_S = 5.0
"""Seconds between looks at a pretraining run another worker is training."""


def _held_elsewhere(path: Path, worker: str, ttl_s: float | None) -> bool:
    """Another live worker holds the claim on the run at `path` (tried, and given back at once)."""
    claim = RunDir(path).claim(worker=worker, ttl_s=ttl_s)
    if claim is None:
        return True
    claim.release()
    return False


def _ready_in_turn(todo: list[PlannedRun], worker: str, ttl_s: float | None,
                   log: Callable[[str], None]) -> Iterator[PlannedRun]:
    """The runs in plan order, except that a run whose pretraining run another worker is still
    training waits (later runs go first; when only waiting runs are left, look again every
    WAIT_S). A pretraining run nobody holds is not waited for: the run then fails, naming it."""
    pending = list(todo)
    waited = 0  # runs put back since one was handed out
    while pending:
        p = pending.pop(0)
        if p.needs is not None and not RunDir(p.needs).is_done() and _held_elsewhere(p.needs, worker, ttl_s):
            pending.append(p)
            waited += 1
            if waited >= len(pending):
                log(f"{p.variant} seed{p.seed}: waiting for its pretraining run ({RunDir(p.needs).claimed_by()})")
                time.sleep(WAIT_S)
                waited = 0
            continue
        waited = 0
        yield p


def _taken_care_of(run: RunDir, started: float) -> bool:
    """Finished since this worker planned, or failed during this pass (by another worker: a
    failure is retried by the next `avsf study run`, not by a second worker now)."""
    return run.is_done() or run.failed_since(started)


# ----------------------------------------------------------------------------- status


def _status_row(name: str, r: Any, metric: str) -> tuple[str, str, str, str]:
    extra = r.error[:60] if r.state == "failed" else ""
    # a pretraining run has no class accuracy: its pretext tasks' (docs/ssl.md)
    key = metric if r.number(metric) is not None or r.number("pretext_top1") is None else "pretext_top1"
    shown = _show(key, r.number(key)) + (" (pretext)" if key != metric else "")
    return name, f"seed{r.seed}", r.state + (f" ({extra})" if extra else ""), shown


def format_status(study_dir: str | Path) -> str:
    from avsf.study.store import load_study_dir, read_run

    rec = load_study_dir(study_dir)
    metric = rec.spec.metric
    header = ("variant", "seed", "state", metric)
    lines = [header] + [_status_row(r.variant, r, metric) for r in rec.runs]
    pretraining = sorted({v.pretrain.name for v in rec.spec.variants if v.pretrain is not None})
    pre_runs = [read_run(rec.path / PRETRAIN_FOLDER, name, seed) for name in pretraining for seed in rec.seeds]
    lines += [_status_row(f"{PRETRAIN_FOLDER}/{r.variant}", r, metric) for r in pre_runs]
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    out = [f"{rec.path} (study {rec.spec.name}, scale {rec.scale})"]
    for j, row in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    c = rec.counts()
    out.append(f"{c['done']} done, {c['partial']} partial, {c['failed']} failed, {c['pending']} pending"
               + (f"; pretraining runs: {sum(r.state == 'done' for r in pre_runs)} of {len(pre_runs)} done"
                  if pre_runs else ""))
    return "\n".join(out)


# ----------------------------------------------------------------------------- local workers
def worker_threads(n: int) -> int:
    """Intra-op threads per worker when `n` share this machine: its usable cores split evenly."""
    return max(1, usable_cores() // n)


def run_workers(n: int, child_args: list[str], *, log: Callable[[str], None] | None = None) -> int:
    """Start `n` worker processes `python -m avsf <child_args> --worker wK` on this machine and
    wait for all of them; returns 0 when every worker succeeded, else 1. The workers split the
    study by claims (see the module docstring); their log lines carry their names. ^C stops them
    all (each leaves its run resumable)."""
    log = log or _say
    log(f"starting {n} workers: avsf {' '.join(child_args)}")
    procs = [subprocess.Popen([sys.executable, "-m", "avsf", *child_args, "--worker", f"w{k}"])
             for k in range(1, n + 1)]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    bad = [f"w{k} exited {c}" for k, c in enumerate(codes, 1) if c != 0]
    if bad:
        log("workers: " + ", ".join(bad))
    return 1 if bad else 0
