"""Search files: an Optuna search over config fields (`avsf search`), e.g. Pd x beta_A.

A search file (``studies/search_<name>.toml``) has the keys every study file has
(avsf.study.tomlspec: name, title, description, default_scale, [base], [scale.<s>] with
``trials`` instead of ``seeds``) plus::

    name = "search_pd_beta"          # Optuna study name; folder runs/<name>/ and reports/<name>/
    trials = 16                      # the study's target of finished trials (avsf.study.search)
    objectives = ["val_top1:maximize", "gflops:minimize"]   # or ["val_top1:maximize"]
    gflops_budget = 2.0              # single objective only: over-budget trials are pruned
                                     # before training (they cost nothing)

    [space.drop_pathway]             # parameter name (Optuna's) -> one config key
    key = "model.drop_pathway"
    type = "float"                   # float | int | categorical
    low = 0.0
    high = 0.95                      # optional: step (> 0), log = true (needs low > 0)

    [space.beta_a]
    key = "model.beta_a"
    type = "categorical"
    choices = ["1/8", "1/4", "1/2", "1"]   # strings the config reads ("1/8" -> 0.125)

    [scale.tiny]                     # per scale: trial target and config overrides
    trials = 4
    set = { train.epochs = 2 }

    [sampler]                        # name: tpe (default) | random | nsgaii; seed;
                                     # n_startup_trials; population_size (nsgaii)
    [pruner]                         # single objective: name: median (default) | percentile |
                                     # hyperband | none; n_startup_trials, n_warmup_steps,
                                     # percentile, min_resource
    [storage]                        # heartbeat_interval (s), grace_period (s), max_retry,
                                     # timeout (s, SQLite lock wait)

Everything is checked on load, every parameter's ends and choices on every scale the file
mentions included; a `SearchError` names the file and the key. A parameter's whole
definition (key, type, range, step, log, choices) is part of the search's identity: see
`avsf.study.search_storage.open_study`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsf.config import Config, ConfigError, read_toml
from avsf.study.tomlspec import COMMON_KEYS, SpecError, SpecReader, TomlSpec

OBJECTIVE_KEYS = ("val_top1", "top1", "gflops")
_TOP_KEYS = COMMON_KEYS | {"trials", "objectives", "gflops_budget", "space", "sampler", "pruner", "storage"}
_SPACE_KEYS = {"key", "type", "low", "high", "step", "log", "choices"}
_SAMPLERS = ("tpe", "random", "nsgaii")
_PRUNERS = ("median", "percentile", "hyperband", "none")
# Integer settings of [sampler], [pruner], [storage] -> their lowest allowed value.
_SAMPLER_INTS = {"seed": 0, "n_startup_trials": 0, "population_size": 2}
_PRUNER_INTS = {"n_startup_trials": 0, "n_warmup_steps": 0, "min_resource": 1}
_STORAGE_INTS = {"heartbeat_interval": 1, "grace_period": 1, "max_retry": 0}


class SearchError(SpecError):
    """A search file or search invocation is wrong; the message says what to do."""


@dataclass
class Param:
    name: str
    key: str
    type: str  # float | int | categorical
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

    def definition(self) -> dict[str, Any]:
        """Everything that gives the parameter its meaning (stored with the study, compared on reuse)."""
        if self.type == "categorical":
            return {"key": self.key, "type": self.type, "choices": list(self.choices)}
        return {"key": self.key, "type": self.type, "low": self.low, "high": self.high, "step": self.step,
                "log": self.log}

    def probes(self) -> list[Any]:
        """The values whose configs are built on load: both ends, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass
class Objective:
    key: str
    direction: str  # maximize | minimize

    def __str__(self) -> str:
        return f"{self.key}:{self.direction}"


@dataclass(kw_only=True)
class SearchSpec(TomlSpec):
    trials: int
    objectives: list[Objective]
    gflops_budget: float | None
    space: list[Param]
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
        settings = self.scale_settings(scale)
        return settings.trials if settings else self.trials

    def config_for(self, scale: str, params: dict[str, Any], overrides: list[str] | None = None) -> Config:
        """Scale sizes -> [base] -> [scale.<s>].set -> the trial's parameters -> --set overrides."""
        by_name = {p.name: p for p in self.space}
        cfg = self.layered_config(scale, {by_name[n].key: v for n, v in params.items()}, overrides)
        cfg.name = self.name
        return cfg


def load_search(path: str | Path) -> SearchSpec:
    return parse_search(read_toml(path, what="search", error=SearchError), str(path))


def parse_search(tree: dict[str, Any], path: str = "<search>") -> SearchSpec:
    """Validate a search table (as read from TOML); errors name the file and the key."""
    r = SpecReader(path, SearchError)
    r.no_unknown(tree, _TOP_KEYS)
    objectives = _objectives(r, tree.get("objectives", ["val_top1:maximize", "gflops:minimize"]))
    budget = r.number(tree, "gflops_budget", low=0, low_open=True)
    if budget is not None and (len(objectives) > 1 or objectives[0].key == "gflops"):
        raise r.err("gflops_budget", "goes with a single accuracy objective "
                                     "(drop it, or set objectives = [\"val_top1:maximize\"])")
    spec = SearchSpec(
        **r.header(tree), source=path, trials=r.number(tree, "trials", default=16, integer=True, low=1),
        objectives=objectives, gflops_budget=None if budget is None else float(budget), space=_space(r, tree),
        base=r.config_table(tree, "base"), scales=r.scales(tree, "trials", int(tree.get("trials", 16))),
        sampler=_settings(r, tree, "sampler", _SAMPLERS, _SAMPLER_INTS),
        pruner=_settings(r, tree, "pruner", _PRUNERS, _PRUNER_INTS), storage=_storage(r, tree), raw=tree,
    )
    _check_configs(spec, r)
    return spec


def _objectives(r: SpecReader, raw: Any) -> list[Objective]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or len(raw) > 2:
        raise r.err("objectives", "wants one or two entries like \"val_top1:maximize\"")
    out = []
    for item in raw:
        key, _, direction = str(item).partition(":")
        direction = direction or ("minimize" if key == "gflops" else "maximize")
        if key not in OBJECTIVE_KEYS:
            raise r.err("objectives", f"objective '{key}' unknown (choose from {', '.join(OBJECTIVE_KEYS)})")
        if direction not in ("maximize", "minimize"):
            raise r.err("objectives", f"'{item}': direction must be maximize or minimize")
        out.append(Objective(key, direction))
    keys = [o.key for o in out]
    if len(out) == 2 and (keys.count("gflops") != 1 or len(set(keys)) != 2):
        raise r.err("objectives", "two objectives must be one accuracy (val_top1 or top1) and gflops")
    return out


def _space(r: SpecReader, tree: dict[str, Any]) -> list[Param]:
    table = tree.get("space")
    if not isinstance(table, dict) or not table:
        raise r.err("space", "[space.<param>] tables are missing: nothing to search over")
    space = [_param(r, name, t) for name, t in table.items()]
    keys = [p.key for p in space]
    for p in space:
        if keys.count(p.key) > 1:
            raise r.err(f"space.{p.name}.key", f"'{p.key}' is set by two [space] parameters")
    return space


def _param(r: SpecReader, name: str, tbl: Any) -> Param:
    where = f"space.{name}."
    if not isinstance(tbl, dict):
        raise r.err(f"space.{name}", "must be a table with key, type and its range or choices")
    r.no_unknown(tbl, _SPACE_KEYS, where)
    key = r.string(tbl, "key", where=where, required=True)
    kind = r.string(tbl, "type", where=where, default="categorical" if "choices" in tbl else "float")
    p = Param(name=name, key=key, type=kind)
    if kind in ("float", "int"):
        integer = kind == "int"
        for end in ("low", "high"):
            if end not in tbl:
                raise r.err(f"{where}{end}", f"a {kind} parameter needs 'low' and 'high'")
        number = int if integer else float
        p.low, p.high = (number(r.number(tbl, end, where=where, integer=integer)) for end in ("low", "high"))
        if p.low > p.high:
            raise r.err(f"{where}low", f"{p.low} is above high ({p.high})")
        step = r.number(tbl, "step", where=where, integer=integer, low=0, low_open=True)
        p.step = None if step is None else number(step)
        p.log = r.flag(tbl, "log", where)
        if p.log and (p.low <= 0 or p.step is not None):
            raise r.err(f"{where}log", "a log scale needs low > 0 and no step")
    elif kind == "categorical":
        choices = tbl.get("choices")
        if not isinstance(choices, list) or not choices:
            raise r.err(f"{where}choices", "must be a non-empty list")
        scalar = all(isinstance(c, (str, int, float, bool)) for c in choices)
        if not scalar or len(set(map(repr, choices))) < len(choices):
            raise r.err(f"{where}choices", f"must be distinct strings, numbers or booleans, got {choices!r}")
        p.choices = list(choices)
    else:
        raise r.err(f"{where}type", f"'{kind}' unknown (float | int | categorical)")
    return p


def _settings(r: SpecReader, tree: dict[str, Any], key: str, names: tuple[str, ...],
              ints: dict[str, int]) -> dict[str, Any]:
    """[sampler] / [pruner]: a known `name` and typed integer settings (percentile: 0..100)."""
    table = r.table(tree, key, f"[{key}] name = \"{names[0]}\"")
    extra = {"percentile"} if key == "pruner" else set()
    r.no_unknown(table, {"name", *ints, *extra}, f"{key}.")
    name = r.string(table, "name", where=f"{key}.", default=names[0])
    if name not in names:
        raise r.err(f"{key}.name", f"'{name}' unknown (choose one of: {', '.join(names)})")
    for k, low in ints.items():
        r.number(table, k, where=f"{key}.", integer=True, low=low)
    if "percentile" in table and not 0 < r.number(table, "percentile", where=f"{key}.") < 100:
        raise r.err(f"{key}.percentile", f"must be in (0, 100), got {table['percentile']!r}")
    return dict(table)


def _storage(r: SpecReader, tree: dict[str, Any]) -> dict[str, Any]:
    table = r.table(tree, "storage", "[storage] heartbeat_interval = 10")
    r.no_unknown(table, {*_STORAGE_INTS, "timeout"}, "storage.")
    for k, low in _STORAGE_INTS.items():
        r.number(table, k, where="storage.", integer=True, low=low)
    r.number(table, "timeout", where="storage.", low=0, low_open=True)
    return dict(table)


def _check_configs(spec: SearchSpec, r: SpecReader) -> None:
    """Every block's keys exist; every parameter's ends / choices build a valid config on every
    scale the file mentions (so no trial can fail on its config after hours of others)."""
    r.check_keys(r.scale_blocks(spec))
    for s in r.scales_to_check(spec):
        try:
            spec.config_for(s, {})
        except ConfigError as e:
            raise r.err(f"scale {s}", str(e)) from None
        for p in spec.space:
            for value in p.probes():
                try:
                    spec.config_for(s, {p.name: value})
                except ConfigError as e:
                    raise r.err(f"space.{p.name}", f"{value!r} at scale {s}: {e}") from None
