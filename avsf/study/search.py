"""Run an Optuna search over config fields (`avsf search`), e.g. DropPathway Pd x audio width beta_A.

The search file's format: avsf.study.search_spec. The storage, and the identity that keeps two
different searches out of one study: avsf.study.search_storage. This module runs the trials.

Trials and workers. Without ``--trials`` a worker runs trials until the study holds
``trials`` finished (complete or pruned) trials; any number of workers started with the same
command on one storage share that target: each trial is handed to exactly one worker by the
RDB storage, and a worker that finds the target already covered by running trials waits for
them (a killed worker's trial goes FAIL after the heartbeat grace period, is re-queued once
and run by whoever is still there). With ``--trials N`` a worker runs exactly N more trials,
whatever the study already holds (two invocations of ``--trials 2`` leave 4 trials).

Run folder ``runs/<name>/``: ``search.json`` (the spec as loaded, the scale, the storage; its
presence marks a search for ``avsf report``; written only once every check passed),
``optuna.db`` (the default SQLite storage), and ``trial<number>/``, a normal training run
folder per trial.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from avsf.config import SCALES, Config
from avsf.io import atomic_write_json
from avsf.study.search_spec import OBJECTIVE_KEYS, Objective, Param, SearchError, SearchSpec, load_search, parse_search
from avsf.study.search_storage import (
    check_storage_url, default_storage_url, make_pruner, make_sampler, make_storage, open_study, public_url,
)
from avsf.study.tomlspec import default_train

__all__ = [
    "OBJECTIVE_KEYS", "Objective", "Param", "SearchError", "SearchOptions", "SearchResult", "SearchSpec",
    "best_trials", "check_storage_url", "default_storage_url", "format_summary", "format_value", "load_search",
    "make_pruner", "make_sampler", "make_storage", "open_study", "parse_search", "public_url", "run_search",
    "summarize",
]


def _default_flops(cfg: Config) -> float:
    """GFLOPs of the model the trainer will build: the class count resolved as it does."""
    import copy

    from avsf.flops import count

    cfg = copy.deepcopy(cfg)
    if cfg.model.num_classes <= 0:
        from avsf.data import dataset_info
        from avsf.train.loop import resolve_num_classes

        resolve_num_classes(cfg, dataset_info(cfg))
    return float(count(cfg.model, input_size=cfg.data.test_crop_size).gflops)


class _Heartbeat:
    """Records the trial's heartbeat every interval (what study.optimize does; ask/tell does not)."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self.interval = storage.get_heartbeat_interval() or 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is not fatal; the next one counts
                self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> "_Heartbeat":
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)  # first beat before any work
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def _counts(study: Any) -> dict[str, int]:
    from optuna.trial import TrialState

    out = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] += 1
    return out


def _fail_stale(study: Any) -> None:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _is_surplus(study: Any, number: int, target: int) -> bool:
    """True when `target` live trials were created before this one (another worker got there
    first between our count and our ask): this trial would overshoot the study's target."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    before = sum(1 for t in study.get_trials(deepcopy=False, states=live) if t.number < number)
    return before >= target


def trial_summary(t: Any) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "values": list(t.values) if t.values is not None else None,
        "params": dict(t.params),
        "val_top1": t.user_attrs.get("val_top1"),
        "gflops": t.user_attrs.get("gflops"),
        "run_dir": t.user_attrs.get("run_dir"),
    }


def best_trials(study: Any) -> list[Any]:
    """The Pareto front (two objectives) or the single best trial; [] before any completes."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    return [study.best_trial]


def summarize(study: Any, *, url: str, ran: list[int] | None = None) -> dict[str, Any]:
    c = _counts(study)
    return {
        "study_name": study.study_name,
        "storage": public_url(url),
        "directions": [d.name.lower() for d in study.directions],
        "objectives": list(study.user_attrs.get("avsf_objectives") or []),  # what `values` are (accuracy: 0..1)
        "n_trials": sum(c.values()),
        "n_complete": c["COMPLETE"],
        "n_pruned": c["PRUNED"],
        "n_fail": c["FAIL"],
        "n_running": c["RUNNING"],
        "n_waiting": c["WAITING"],
        "ran": list(ran or []),
        "best_trials": [trial_summary(t) for t in best_trials(study)],
    }


# ------------------------------------------------------------------------------------- search


@dataclass
class SearchOptions:
    """How this worker runs a search (`run_search`); what is searched is the SearchSpec."""

    scale: str | None = None  # default: the file's default_scale
    trials: int | None = None  # trials THIS worker runs; None: until the study reaches the file's target
    storage: str | None = None  # Optuna RDB URL; None: sqlite:///<out>/optuna.db
    out: str | Path | None = None  # run folder; None: runs/<name>
    overrides: list[str] = field(default_factory=list)  # --set, applied to every trial
    train_fn: Callable[..., dict] | None = None  # train_fn(cfg, out_dir, on_epoch=, progress=); avsf.train.train
    flops_fn: Callable[[Config], float] | None = None  # cfg -> GFLOPs; avsf.flops.count(...).gflops
    progress: bool = True
    log: Callable[[str], None] | None = None  # one line per trial event; stderr by default
    poll_s: float | None = None  # wait between looks while other workers' trials run


@dataclass
class SearchResult:
    summary: dict[str, Any]
    run_dir: Path
    storage: str


def run_search(spec: SearchSpec, options: SearchOptions | None = None, /, **kwargs: Any) -> SearchResult:
    """Run (or join, or continue) the search; see the module docstring for `trials`.

    Options come as a SearchOptions or as its fields by keyword. Every check (scale, trial
    count, overrides, storage URL, the run folder's search.json, the study's identity) runs
    before anything is written.
    """
    if options is not None and kwargs:
        raise TypeError("give SearchOptions or keyword options, not both")
    worker = _Worker(spec, options or SearchOptions(**kwargs))
    worker.open()
    ran = worker.loop()
    return SearchResult(summary=summarize(worker.study, url=worker.url, ran=ran), run_dir=worker.run_dir,
                        storage=worker.url)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Worker:
    """One worker's run of a search: checks (constructor), the study (`open`), trials (`loop`)."""

    def __init__(self, spec: SearchSpec, opts: SearchOptions) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec, self.opts, self.log = spec, opts, opts.log or _stderr
        self.scale = opts.scale or spec.default_scale
        if self.scale not in SCALES:
            raise SearchError(f"unknown scale '{self.scale}' (choose one of: {', '.join(SCALES)})")
        if opts.trials is not None and opts.trials < 0:
            raise SearchError(f"--trials: {opts.trials} is not allowed; must be 0 or more")
        self.run_dir = Path(opts.out) if opts.out else Path("runs") / spec.name
        self.url = opts.storage or default_storage_url(self.run_dir)
        spec.config_for(self.scale, {}, opts.overrides)  # the overrides build, at this scale
        if opts.storage:
            check_storage_url(opts.storage)
        self._check_run_folder()
        self.train_fn = opts.train_fn or default_train()
        self.flops_fn = opts.flops_fn or _default_flops
        self.flops_cache: dict[str, float] = {}
        self.target = spec.trials_at(self.scale)

    def _check_run_folder(self) -> None:
        old = None
        with contextlib.suppress(OSError, ValueError):  # unreadable: rewritten once the checks pass
            old = json.loads((self.run_dir / "search.json").read_text())
        if isinstance(old, dict) and old.get("scale") not in (None, self.scale):
            raise SearchError(f"{self.run_dir} holds a search at scale '{old['scale']}', not '{self.scale}': "
                              f"pass --scale {old['scale']} or another --out")

    def open(self) -> None:
        """The study (refusing another search's), then search.json: nothing is written before."""
        if self.opts.storage is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)  # the default storage lives there
        self.seed = self.spec.sampler.get("seed")
        self.study = open_study(self.spec, self.url, scale=self.scale, seed=self.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir / "search.json", self._meta())
        interval = self.study._storage.get_heartbeat_interval() or 5
        self.poll = self.opts.poll_s if self.opts.poll_s is not None else max(0.5, min(float(interval), 5.0))

    def _meta(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "kind": "search",
            "name": spec.name,
            "spec_path": spec.source,
            "spec": spec.raw,
            "scale": self.scale,
            "storage": "optuna.db" if self.opts.storage is None else public_url(self.url),
            "objectives": [str(o) for o in spec.objectives],
            "gflops_budget": spec.gflops_budget,
            "space": {p.name: p.key for p in spec.space},
            "space_order": [[p.name, p.key] for p in spec.space],  # json sorts dict keys
            "overrides": list(self.opts.overrides),
        }

    def loop(self) -> list[int]:
        """Run trials until this worker's share is done; the trial numbers it ran."""
        ran: list[int] = []
        failures_in_row = 0
        self.waiting_said = False
        while not self._finished(ran):
            trial = self._next_trial()
            if trial is None:
                continue
            state = self._run_trial(trial)
            ran.append(trial.number)
            failures_in_row = failures_in_row + 1 if state == "FAIL" else 0
            if failures_in_row >= 3:
                raise SearchError(f"3 trials in a row failed (last: trial {trial.number}, see "
                                  f"{self.run_dir / f'trial{trial.number}'}); fix the cause and rerun to continue")
        return ran

    def _finished(self, ran: list[int]) -> bool:
        """Done with --trials N after N trials, else once the study holds its target; while
        running trials elsewhere cover the target, wait (in case a worker dies) and say so once."""
        if self.opts.trials is not None and len(ran) >= self.opts.trials:
            return True
        while True:
            _fail_stale(self.study)  # a dead worker's trial goes FAIL and is re-queued
            if self.opts.trials is not None:
                return False
            c = _counts(self.study)
            if c["COMPLETE"] + c["PRUNED"] >= self.target:
                return True
            if c["COMPLETE"] + c["PRUNED"] + c["RUNNING"] < self.target:
                return False
            if not self.waiting_said:
                self.log(f"[search {self.spec.name}] {c['RUNNING']} trial(s) running elsewhere cover the target "
                         f"of {self.target}; waiting in case a worker dies")
                self.waiting_said = True
            time.sleep(self.poll)

    def _next_trial(self) -> Any | None:
        """A new trial, or None when it would overshoot the target (it is parked as WAITING)."""
        from optuna.trial import TrialState

        with warnings.catch_warnings():  # we beat the heartbeat ourselves (_Heartbeat)
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
        if self.seed is not None:
            # Each trial samples from its own seed so that workers started together on one
            # storage draw different parameters, and a single worker stays reproducible.
            self.study.sampler = make_sampler(self.spec, int(self.seed) * 100003 + trial.number)
        if self.opts.trials is None and _is_surplus(self.study, trial.number, self.target):
            self.study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
            time.sleep(self.poll)
            return None
        return trial

    def _gflops(self, cfg: Config) -> float:
        key = json.dumps(cfg.to_dict()["model"], sort_keys=True) + str(cfg.data.test_crop_size)
        if key not in self.flops_cache:
            self.flops_cache[key] = self.flops_fn(cfg)
        return self.flops_cache[key]

    def _run_trial(self, trial: Any) -> str:
        """Train one trial (pruned before training when over the GFLOPs budget); its final state."""
        import optuna
        from optuna.trial import TrialState

        say = f"[search {self.spec.name}] trial {trial.number}"
        with _Heartbeat(self.study._storage, trial._trial_id):
            try:
                params = {p.name: p.suggest(trial) for p in self.spec.space}
                cfg = self.spec.config_for(self.scale, params, self.opts.overrides)
                cfg.name = f"{self.spec.name}/trial{trial.number}"
                out_dir = self.run_dir / f"trial{trial.number}"
                trial.set_user_attr("run_dir", str(out_dir))
                gflops = self._gflops(cfg)
                trial.set_user_attr("gflops", gflops)
                shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
                budget = self.spec.gflops_budget
                if budget is not None and gflops > budget:
                    trial.set_user_attr("pruned_reason", f"over budget: {gflops:.3f} > {budget} GFLOPs")
                    self.study.tell(trial, state=TrialState.PRUNED)
                    self.log(f"{say} ({shown}): {gflops:.3f} GFLOPs over the budget {budget}, pruned before training")
                    return "PRUNED"
                self.log(f"{say} ({shown}, {gflops:.3f} GFLOPs) -> {out_dir}")
                result = self.train_fn(cfg, out_dir, on_epoch=self._reporter(trial), progress=self.opts.progress)
            except optuna.TrialPruned as e:
                trial.set_user_attr("pruned_reason", str(e) or "pruned")
                self.study.tell(trial, state=TrialState.PRUNED)
                self.log(f"{say} pruned: {e}")
                return "PRUNED"
            except BaseException as e:  # noqa: BLE001 - the trial must not stay RUNNING
                self._fail(trial, e)
                if not isinstance(e, Exception):
                    raise
                self.log(f"{say} failed: {type(e).__name__}: {e}")
                return "FAIL"
            return self._tell(trial, result, gflops)

    def _reporter(self, trial: Any) -> Callable[[int, dict[str, Any]], None]:
        """The trainer's per-epoch hook: records val top-1 and lets the pruner stop the trial."""
        import optuna

        history: list[float] = []

        def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
            # The trainer passes the train row plus val_* keys; `top1` alone is validation
            # only in trainers that pass the validation row itself.
            top1 = metrics.get("val_top1", metrics.get("top1"))
            if top1 is None or top1 != top1:  # no validation this epoch (NaN)
                return
            history.append(float(top1))
            trial.set_user_attr("val_top1_history", history)
            if not self.spec.multi_objective:
                trial.report(float(top1), int(epoch))
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {epoch}: val top-1 {100 * top1:.1f}% below the pruner's bar")

        return on_epoch

    def _fail(self, trial: Any, e: BaseException) -> None:
        """FAIL the trial; on Ctrl-C / SystemExit also re-queue it at once (the worker stops)."""
        from optuna.trial import TrialState

        trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
        self.study.tell(trial, state=TrialState.FAIL)
        if not isinstance(e, Exception):
            cb = self.study._storage.get_heartbeat_stale_trial_callback()
            if cb is not None:
                cb(self.study, self.study._storage.get_trial(trial._trial_id))

    def _tell(self, trial: Any, result: dict[str, Any], gflops: float) -> str:
        """Record a finished training's numbers as the trial's objective values."""
        from optuna.trial import TrialState

        val_top1 = result.get("val_top1", result.get("top1"))
        if isinstance(result.get("gflops"), (int, float)):
            gflops = float(result["gflops"])  # the trainer's count of the model it trained
            trial.set_user_attr("gflops", gflops)
        values = {"val_top1": val_top1, "top1": result.get("top1", val_top1), "gflops": gflops}
        for k in ("val_top1", "top1", "top5", "params_m", "train_time_s"):
            if isinstance(result.get(k), (int, float)):
                trial.set_user_attr(k, float(result[k]))
        if any(values[o.key] is None for o in self.spec.objectives):
            trial.set_user_attr("error", f"result has no {[o.key for o in self.spec.objectives]}: {sorted(result)}")
            self.study.tell(trial, state=TrialState.FAIL)
            return "FAIL"
        self.study.tell(trial, [float(values[o.key]) for o in self.spec.objectives])
        self.log(f"[search {self.spec.name}] trial {trial.number} done: val top-1 {100 * val_top1:.1f}%, "
                 f"{gflops:.3f} GFLOPs")
        return "COMPLETE"


def format_value(key: str, value: float) -> str:
    """An objective's value for people: accuracies in percent, GFLOPs as such."""
    return f"{key} {100 * value:.1f}%" if key in ("val_top1", "top1") else f"{key} {value:.3f}"


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"study {summary['study_name']} on {summary['storage']}: {summary['n_complete']} complete, "
        f"{summary['n_pruned']} pruned, {summary['n_fail']} failed, {summary['n_running']} running "
        f"({len(summary['ran'])} run by this worker)"
    ]
    keys = [o.partition(":")[0] for o in summary.get("objectives") or []]
    for b in summary["best_trials"]:
        ps = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["params"].items())
        values = b["values"] or []
        vals = ", ".join(format_value(k, v) for k, v in zip(keys, values)) if len(keys) == len(values) else \
            ", ".join(f"{v:.4g}" for v in values)
        lines.append(f"  best trial {b['number']}: {ps} -> {vals}  ({b['run_dir']})")
    return "\n".join(lines)
