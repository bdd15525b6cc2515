"""Optuna searches over config fields (`avsf search`), e.g. DropPathway Pd x audio width beta_A.

A search file (``studies/<name>.toml``) reads::

    name = "search_pd_beta"          # Optuna study name; folder runs/<name>/ and reports/<name>/
    title = "..."                    # optional
    description = "..."              # optional
    default_scale = "small"          # optional (default "small")
    trials = 16                      # the study's target of finished trials (see below)
    objectives = ["val_top1:maximize", "gflops:minimize"]   # or ["val_top1:maximize"]
    gflops_budget = 2.0              # single objective only: over-budget trials are pruned
                                     # before training (they cost nothing)

    [space.drop_pathway]             # parameter name (Optuna's) -> one config key
    key = "model.drop_pathway"
    type = "float"                   # float | int | categorical
    low = 0.0
    high = 0.95                      # optional: step, log

    [space.beta_a]
    key = "model.beta_a"
    type = "categorical"
    choices = ["1/8", "1/4", "1/2", "1"]   # strings the config reads ("1/8" -> 0.125)

    [base]                           # config keys applied to every trial
    model.pathways = "avslowfast"

    [scale.tiny]                     # per scale: trial target and config overrides
    trials = 4
    set = { train.epochs = 2 }

    [sampler]                        # tpe (default) | random | nsgaii; seed; n_startup_trials
    [pruner]                         # single objective: median (default) | percentile |
                                     # hyperband | none; n_startup_trials, n_warmup_steps
    [storage]                        # heartbeat_interval (s), grace_period (s), max_retry,
                                     # timeout (s, SQLite lock wait)

Trials and workers. Without ``--trials`` a worker runs trials until the study holds
``trials`` finished (complete or pruned) trials; any number of workers started with the same
command on one storage share that target: each trial is handed to exactly one worker by the
RDB storage, and a worker that finds the target already covered by running trials waits for
them (a killed worker's trial goes FAIL after the heartbeat grace period, is re-queued once
and run by whoever is still there). With ``--trials N`` a worker runs exactly N more trials,
whatever the study already holds (two invocations of ``--trials 2`` leave 4 trials).

Run folder ``runs/<name>/``: ``search.json`` (the spec as loaded, the scale, the storage; its
presence marks a search for ``avsf report``), ``optuna.db`` (the default SQLite storage), and
``trial<number>/``, a normal training run folder per trial.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from avsf.config import SCALES, Config, ConfigError, build_config, flatten, read_toml
from avsf.io import atomic_write_json

DEFAULT_SCALE = "small"
OBJECTIVE_KEYS = ("val_top1", "top1", "gflops")
FINISHED = ("COMPLETE", "PRUNED")

_TOP_KEYS = {
    "name", "title", "description", "default_scale", "trials", "objectives", "gflops_budget",
    "space", "base", "scale", "sampler", "pruner", "storage",
}
_SPACE_KEYS = {"key", "type", "low", "high", "step", "log", "choices"}
_SCALE_KEYS = {"trials", "set"}
_SAMPLERS = ("tpe", "random", "nsgaii")
_PRUNERS = ("median", "percentile", "hyperband", "none")


class SearchError(ConfigError):
    """A search file or search invocation is wrong; the message says what to do."""


# --------------------------------------------------------------------------------------- spec


@dataclass
class Param:
    name: str
    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)

    def suggest(self, trial: Any) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_categorical(self.name, self.choices)


@dataclass
class Objective:
    key: str
    direction: str  # maximize | minimize


@dataclass
class SearchSpec:
    name: str
    path: str
    title: str
    description: str
    default_scale: str
    trials: int
    objectives: list[Objective]
    gflops_budget: float | None
    space: list[Param]
    base: dict[str, Any]
    scales: dict[str, dict[str, Any]]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    storage: dict[str, Any]
    raw: dict[str, Any]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def trials_at(self, scale: str) -> int:
        return int(self.scales.get(scale, {}).get("trials", self.trials))

    def config_for(self, scale: str, params: dict[str, Any], overrides: list[str] | None = None) -> Config:
        """Scale sizes -> [base] -> [scale.<s>].set -> the trial's parameters -> --set overrides."""
        base = dict(self.base)
        base.update(flatten(self.scales.get(scale, {}).get("set", {})))
        by_name = {p.name: p for p in self.space}
        for name, value in params.items():
            base[by_name[name].key] = value
        cfg = build_config(scale=scale, base=base, overrides=overrides)
        cfg.name = self.name
        return cfg


def _err(path: str, msg: str) -> SearchError:
    return SearchError(f"{path}: {msg}")


def _parse_objectives(path: str, raw: Any) -> list[Objective]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or len(raw) > 2:
        raise _err(path, "'objectives' wants one or two entries like \"val_top1:maximize\"")
    out = []
    for item in raw:
        key, _, direction = str(item).partition(":")
        direction = direction or ("minimize" if key == "gflops" else "maximize")
        if key not in OBJECTIVE_KEYS:
            raise _err(path, f"objective '{key}' unknown (choose from {', '.join(OBJECTIVE_KEYS)})")
        if direction not in ("maximize", "minimize"):
            raise _err(path, f"objective '{item}': direction must be maximize or minimize")
        out.append(Objective(key, direction))
    keys = [o.key for o in out]
    if len(out) == 2 and (keys.count("gflops") != 1 or len(set(keys)) != 2):
        raise _err(path, "two objectives must be one accuracy (val_top1 or top1) and gflops")
    return out


def _parse_param(path: str, name: str, tbl: Any) -> Param:
    where = f"[space.{name}]"
    if not isinstance(tbl, dict):
        raise _err(path, f"{where} must be a table with key, type and its range or choices")
    unknown = set(tbl) - _SPACE_KEYS
    if unknown:
        raise _err(path, f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_SPACE_KEYS)})")
    if "key" not in tbl:
        raise _err(path, f"{where}: 'key' (the config field, e.g. model.drop_pathway) is missing")
    kind = tbl.get("type", "categorical" if "choices" in tbl else "float")
    p = Param(name=name, key=str(tbl["key"]), type=kind)
    if kind in ("float", "int"):
        if "low" not in tbl or "high" not in tbl:
            raise _err(path, f"{where}: a {kind} parameter needs 'low' and 'high'")
        p.low, p.high = float(tbl["low"]), float(tbl["high"])
        if p.low > p.high:
            raise _err(path, f"{where}: low ({p.low}) is above high ({p.high})")
        p.step = float(tbl["step"]) if "step" in tbl else None
        p.log = bool(tbl.get("log", False))
    elif kind == "categorical":
        choices = tbl.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _err(path, f"{where}: 'choices' must be a non-empty list")
        if any(not isinstance(c, (str, int, float, bool)) for c in choices):
            raise _err(path, f"{where}: choices must be strings, numbers or booleans")
        p.choices = list(choices)
    else:
        raise _err(path, f"{where}: type '{kind}' unknown (float | int | categorical)")
    return p


def parse_search(tree: dict[str, Any], path: str = "<search>") -> SearchSpec:
    """Validate a search table (as read from TOML); errors name the file and the key."""
    unknown = set(tree) - _TOP_KEYS
    if unknown:
        raise _err(path, f"unknown keys {sorted(unknown)} (known: {sorted(_TOP_KEYS)})")
    name = tree.get("name")
    if not name or not isinstance(name, str) or "/" in name:
        raise _err(path, "'name' (the study name, also the runs/ folder) is missing or has a '/'")
    default_scale = str(tree.get("default_scale", DEFAULT_SCALE))
    if default_scale not in SCALES:
        raise _err(path, f"default_scale '{default_scale}' unknown (choose one of {', '.join(SCALES)})")
    trials = tree.get("trials", 16)
    if not isinstance(trials, int) or trials < 1:
        raise _err(path, "'trials' must be a positive integer")
    objectives = _parse_objectives(path, tree.get("objectives", ["val_top1:maximize", "gflops:minimize"]))
    budget = tree.get("gflops_budget")
    if budget is not None:
        if len(objectives) > 1 or objectives[0].key == "gflops":
            raise _err(path, "'gflops_budget' goes with a single accuracy objective "
                             "(drop it, or set objectives = [\"val_top1:maximize\"])")
        budget = float(budget)
    space_tbl = tree.get("space")
    if not isinstance(space_tbl, dict) or not space_tbl:
        raise _err(path, "[space.<param>] tables are missing: nothing to search over")
    space = [_parse_param(path, n, t) for n, t in space_tbl.items()]
    keys = [p.key for p in space]
    if len(set(keys)) != len(keys):
        raise _err(path, "two [space] parameters set the same config key")
    base = flatten(tree.get("base", {}))
    scales = tree.get("scale", {})
    for s, tbl in scales.items():
        if s not in SCALES:
            raise _err(path, f"[scale.{s}]: unknown scale (choose one of {', '.join(SCALES)})")
        bad = set(tbl) - _SCALE_KEYS
        if bad:
            raise _err(path, f"[scale.{s}]: unknown keys {sorted(bad)} (known: trials, set)")
    sampler = dict(tree.get("sampler", {}))
    if sampler.get("name", "tpe") not in _SAMPLERS:
        raise _err(path, f"[sampler] name must be one of {', '.join(_SAMPLERS)}")
    pruner = dict(tree.get("pruner", {}))
    if pruner.get("name", "median") not in _PRUNERS:
        raise _err(path, f"[pruner] name must be one of {', '.join(_PRUNERS)}")
    storage = dict(tree.get("storage", {}))
    spec = SearchSpec(
        name=name, path=path, title=str(tree.get("title", name)), description=str(tree.get("description", "")),
        default_scale=default_scale, trials=trials, objectives=objectives, gflops_budget=budget,
        space=space, base=base, scales=scales, sampler=sampler, pruner=pruner, storage=storage, raw=tree,
    )
    # Validate every config key now (one build per scale with the first choice / low end).
    probe = {p.name: (p.choices[0] if p.type == "categorical" else (int(p.low) if p.type == "int" else p.low))
             for p in space}
    for s in {default_scale, *scales}:
        try:
            spec.config_for(s, probe)
        except ConfigError as e:
            raise _err(path, f"scale {s}: {e}") from None
    return spec


def load_search(path: str | Path) -> SearchSpec:
    tree = read_toml(path, what="search", error=SearchError)
    return parse_search(tree, str(path))


# ------------------------------------------------------------------------------------ storage


def default_storage_url(run_dir: Path) -> str:
    return f"sqlite:///{(Path(run_dir) / 'optuna.db').resolve()}"


def public_url(url: str) -> str:
    """The URL with any password masked (what goes into search.json and the summary)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def make_storage(url: str, spec_storage: dict[str, Any] | None = None) -> Any:
    """An RDBStorage with heartbeats: a killed worker's RUNNING trial becomes FAIL after the
    grace period and is re-queued (`max_retry` times) for the next free worker."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    opts = dict(spec_storage or {})
    interval = int(opts.get("heartbeat_interval", 10))
    grace = int(opts.get("grace_period", max(3 * interval, 2)))
    max_retry = int(opts.get("max_retry", 1))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": float(opts.get("timeout", 60))}
    else:
        engine_kwargs["pool_pre_ping"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if max_retry > 0 else None
        # Several processes creating the same fresh SQLite file may collide on table
        # creation; a short retry settles it (the schema is created once, by the winner).
        for attempt in range(5):
            try:
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=interval,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=callback,
                )
            except Exception:
                if attempt == 4:
                    raise
                time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def make_sampler(spec: SearchSpec, seed: int | None) -> Any:
    import optuna

    s = spec.sampler
    name = s.get("name", "tpe")
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsgaii":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=int(s.get("population_size", 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=int(s.get("n_startup_trials", 8)), constant_liar=True
        )


def make_pruner(spec: SearchSpec) -> Any:
    import optuna

    p = spec.pruner
    name = p.get("name", "median")
    if spec.multi_objective or name == "none":
        return optuna.pruners.NopPruner()  # Optuna prunes single-objective studies only
    startup = int(p.get("n_startup_trials", 2))
    warmup = int(p.get("n_warmup_steps", 1))
    if name == "percentile":
        return optuna.pruners.PercentilePruner(float(p.get("percentile", 25.0)), n_startup_trials=startup,
                                               n_warmup_steps=warmup)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=int(p.get("min_resource", 1)))
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


@contextlib.contextmanager
def _init_lock(url: str):
    """Local processes that open one SQLite file at once take turns creating its schema."""
    if not url.startswith("sqlite:///"):
        yield
        return
    import filelock

    db = Path(url[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(db) + ".lock", timeout=120):
        yield


def open_study(spec: SearchSpec, url: str, *, scale: str, seed: int | None = None) -> Any:
    """Create or load (load_if_exists) the study named after the spec on `url`."""
    import optuna

    with _init_lock(url):
        storage = make_storage(url, spec.storage)
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage,
            directions=spec.directions,
            sampler=make_sampler(spec, seed),
            pruner=make_pruner(spec),
            load_if_exists=True,
        )
        have = study.user_attrs
        if "avsf_scale" not in have:
            study.set_user_attr("avsf_scale", scale)
            study.set_user_attr("avsf_objectives", [f"{o.key}:{o.direction}" for o in spec.objectives])
            study.set_user_attr("avsf_space", {p.name: p.key for p in spec.space})
        elif have["avsf_scale"] != scale:
            raise SearchError(
                f"study '{spec.name}' on {public_url(url)} was run at scale '{have['avsf_scale']}', "
                f"not '{scale}': mixing scales in one study compares unlike runs; "
                f"use --scale {have['avsf_scale']}, or another --out / --storage"
            )
    if [d.name.lower() for d in study.directions] != spec.directions:
        raise SearchError(f"study '{spec.name}' on {public_url(url)} has directions "
                          f"{[d.name.lower() for d in study.directions]}, the file asks {spec.directions}")
    return study


# ------------------------------------------------------------------------------------ helpers


def _default_train() -> Callable[..., dict]:
    from avsf.train import train

    return train


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


def trial_summary(t: Any, spec_objectives: list[str] | None = None) -> dict[str, Any]:
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
class SearchResult:
    summary: dict[str, Any]
    run_dir: Path
    storage: str


def run_search(
    spec: SearchSpec,
    *,
    scale: str | None = None,
    trials: int | None = None,
    storage: str | None = None,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    train_fn: Callable[..., dict] | None = None,
    flops_fn: Callable[[Config], float] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    poll_s: float | None = None,
) -> SearchResult:
    """Run (or join, or continue) the search. See the module docstring for `trials`.

    `train_fn(cfg, out_dir, on_epoch=..., progress=...)` is avsf.train.train unless given;
    `flops_fn(cfg) -> GFLOPs` is avsf.flops.count(...).gflops unless given.
    """
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    scale = scale or spec.default_scale
    if scale not in SCALES:
        raise SearchError(f"unknown scale '{scale}' (choose one of: {', '.join(SCALES)})")
    if trials is not None and trials < 0:
        raise SearchError("--trials must be 0 or more")
    run_dir = Path(out) if out else Path("runs") / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage_url(run_dir)
    # Check the overrides build before touching the study.
    spec.config_for(scale, {}, overrides)

    search_json = run_dir / "search.json"
    meta = {
        "kind": "search",
        "name": spec.name,
        "spec_path": spec.path,
        "spec": spec.raw,
        "scale": scale,
        "storage": "optuna.db" if storage is None else public_url(url),
        "objectives": [f"{o.key}:{o.direction}" for o in spec.objectives],
        "gflops_budget": spec.gflops_budget,
        "space": {p.name: p.key for p in spec.space},
        "space_order": [[p.name, p.key] for p in spec.space],  # json sorts dict keys
        "overrides": list(overrides or []),
    }
    old = None
    if search_json.exists():
        with contextlib.suppress(Exception):
            old = json.loads(search_json.read_text())
    if old and old.get("scale") not in (None, scale):
        raise SearchError(f"{run_dir} holds a search at scale '{old['scale']}', not '{scale}': "
                          f"pass --scale {old['scale']} or another --out")
    atomic_write_json(search_json, meta)

    seed = spec.sampler.get("seed")
    study = open_study(spec, url, scale=scale, seed=seed)
    train_fn = train_fn or _default_train()
    flops_fn = flops_fn or _default_flops
    target = spec.trials_at(scale)
    interval = study._storage.get_heartbeat_interval() or 5
    poll = poll_s if poll_s is not None else max(0.5, min(float(interval), 5.0))
    ran: list[int] = []
    failures_in_row = 0
    waiting_said = False
    flops_cache: dict[str, float] = {}

    while True:
        if trials is not None and len(ran) >= trials:
            break
        _fail_stale(study)
        if trials is None:
            c = _counts(study)
            if c["COMPLETE"] + c["PRUNED"] >= target:
                break
            if c["COMPLETE"] + c["PRUNED"] + c["RUNNING"] >= target:
                if not waiting_said:
                    log(f"[search {spec.name}] {c['RUNNING']} trial(s) running elsewhere cover the target "
                        f"of {target}; waiting in case a worker dies")
                    waiting_said = True
                time.sleep(poll)  # the rest is running elsewhere; stay in case a worker dies
                continue
        with warnings.catch_warnings():  # we beat the heartbeat ourselves (_Heartbeat)
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        if seed is not None:
            # Each trial samples from its own seed so that workers started together on one
            # storage draw different parameters, and a single worker stays reproducible.
            study.sampler = make_sampler(spec, int(seed) * 100003 + trial.number)
        if trials is None and _is_surplus(study, trial.number, target):
            study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
            time.sleep(poll)
            continue
        state = _run_trial(
            study, trial, spec, scale=scale, run_dir=run_dir, overrides=overrides, train_fn=train_fn,
            flops_fn=flops_fn, flops_cache=flops_cache, progress=progress, log=log,
        )
        ran.append(trial.number)
        failures_in_row = failures_in_row + 1 if state == "FAIL" else 0
        if failures_in_row >= 3:
            raise SearchError(f"3 trials in a row failed (last: trial {trial.number}, see "
                              f"{run_dir / f'trial{trial.number}'}); fix the cause and rerun to continue")

    summary = summarize(study, url=url, ran=ran)
    return SearchResult(summary=summary, run_dir=run_dir, storage=url)


def _run_trial(study: Any, trial: Any, spec: SearchSpec, *, scale: str, run_dir: Path,
               overrides: list[str] | None, train_fn: Callable[..., dict], flops_fn: Callable[[Config], float],
               flops_cache: dict[str, float], progress: bool, log: Callable[[str], None]) -> str:
    import optuna
    from optuna.trial import TrialState

    with _Heartbeat(study._storage, trial._trial_id):
        try:
            params = {p.name: p.suggest(trial) for p in spec.space}
            cfg = spec.config_for(scale, params, overrides)
            cfg.name = f"{spec.name}/trial{trial.number}"
            out_dir = run_dir / f"trial{trial.number}"
            trial.set_user_attr("run_dir", str(out_dir))
            key = json.dumps(cfg.to_dict()["model"], sort_keys=True) + str(cfg.data.test_crop_size)
            if key not in flops_cache:
                flops_cache[key] = flops_fn(cfg)
            gflops = flops_cache[key]
            trial.set_user_attr("gflops", gflops)
            shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
            if spec.gflops_budget is not None and gflops > spec.gflops_budget:
                trial.set_user_attr("pruned_reason", f"over budget: {gflops:.3f} > {spec.gflops_budget} GFLOPs")
                study.tell(trial, state=TrialState.PRUNED)
                log(f"[search {spec.name}] trial {trial.number} ({shown}): {gflops:.3f} GFLOPs over the "
                    f"budget {spec.gflops_budget}, pruned before training")
                return "PRUNED"
            log(f"[search {spec.name}] trial {trial.number} ({shown}, {gflops:.3f} GFLOPs) -> {out_dir}")
            history: list[float] = []

            def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
                # The trainer passes the train row plus val_* keys; `top1` alone is validation
                # only in trainers that pass the validation row itself.
                top1 = metrics.get("val_top1", metrics.get("top1"))
                if top1 is None or top1 != top1:  # no validation this epoch (NaN)
                    return
                history.append(float(top1))
                trial.set_user_attr("val_top1_history", history)
                if not spec.multi_objective:
                    trial.report(float(top1), int(epoch))
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"epoch {epoch}: val top-1 {top1:.4g} below the pruner's bar")

            result = train_fn(cfg, out_dir, on_epoch=on_epoch, progress=progress)
        except optuna.TrialPruned as e:
            trial.set_user_attr("pruned_reason", str(e) or "pruned")
            study.tell(trial, state=TrialState.PRUNED)
            log(f"[search {spec.name}] trial {trial.number} pruned: {e}")
            return "PRUNED"
        except BaseException as e:  # noqa: BLE001 - the trial must not stay RUNNING
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
            study.tell(trial, state=TrialState.FAIL)
            if not isinstance(e, Exception):  # Ctrl-C / SystemExit: re-queue the trial, then stop
                cb = study._storage.get_heartbeat_stale_trial_callback()
                if cb is not None:
                    cb(study, study._storage.get_trial(trial._trial_id))
                raise
            log(f"[search {spec.name}] trial {trial.number} failed: {type(e).__name__}: {e}")
            return "FAIL"
        val_top1 = result.get("val_top1", result.get("top1"))
        if isinstance(result.get("gflops"), (int, float)):
            gflops = float(result["gflops"])  # the trainer's count of the model it trained
            trial.set_user_attr("gflops", gflops)
        values = {"val_top1": val_top1, "top1": result.get("top1", val_top1), "gflops": gflops}
        for k in ("val_top1", "top1", "top5", "params_m", "train_time_s"):
            if isinstance(result.get(k), (int, float)):
                trial.set_user_attr(k, float(result[k]))
        if any(values[o.key] is None for o in spec.objectives):
            trial.set_user_attr("error", f"result has no {[o.key for o in spec.objectives]}: {sorted(result)}")
            study.tell(trial, state=TrialState.FAIL)
            return "FAIL"
        study.tell(trial, [float(values[o.key]) for o in spec.objectives])
        log(f"[search {spec.name}] trial {trial.number} done: val top-1 {val_top1:.4g}, {gflops:.3f} GFLOPs")
        return "COMPLETE"


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"study {summary['study_name']} on {summary['storage']}: {summary['n_complete']} complete, "
        f"{summary['n_pruned']} pruned, {summary['n_fail']} failed, {summary['n_running']} running "
        f"({len(summary['ran'])} run by this worker)"
    ]
    for b in summary["best_trials"]:
        ps = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["params"].items())
        vals = ", ".join(f"{v:.4g}" for v in b["values"] or [])
        lines.append(f"  best trial {b['number']}: {ps} -> [{vals}]  ({b['run_dir']})")
    return "\n".join(lines)
