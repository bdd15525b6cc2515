"""Where a search's trials live: the Optuna RDB storage, checked before use, and the study's identity.

A study on a storage is the search's memory, shared by every worker. Reusing it is allowed only
for the same search: the same scale, objectives and parameter definitions (each parameter's
key, type, range, step, log and choices). Anything else would mix trials of two meanings in
one study, so `open_study` refuses it, before it changes anything, and says to give the search
a new `name` (a new study) or another --out / --storage.
"""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from pathlib import Path
from typing import Any

from avsf.study.search_spec import SearchError, SearchSpec


def default_storage_url(run_dir: Path) -> str:
    return f"sqlite:///{(Path(run_dir) / 'optuna.db').resolve()}"


def public_url(url: str) -> str:
    """The URL with any password masked (what goes into search.json and the summary)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def check_storage_url(url: str) -> None:
    """A SearchError, before anything is opened, for a URL the storage cannot use: not a
    database URL, an unknown database, a missing Python driver, an in-memory SQLite database,
    or a SQLite file whose folder does not exist (avsf never creates the folders a URL names)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        u = make_url(url)
    except ArgumentError:
        raise SearchError(f"storage {url!r} is not a database URL "
                          "(e.g. sqlite:///runs/NAME/optuna.db or postgresql://user:pw@host/db)") from None
    shown = public_url(url)
    try:
        dialect = u.get_dialect()
    except NoSuchModuleError:
        raise SearchError(f"storage {shown}: unknown database '{u.drivername}' "
                          "(sqlite, postgresql, mysql, ... as SQLAlchemy names them)") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise SearchError(f"storage {shown}: the Python driver for '{u.drivername}' is not installed ({e}); "
                          "install it (e.g. psycopg for postgresql) or use sqlite:///PATH") from None
    if u.get_backend_name() != "sqlite":
        return
    if not u.database or u.database == ":memory:":
        raise SearchError(f"storage {shown}: an in-memory SQLite database is gone when the worker exits; "
                          "give a file, e.g. sqlite:///runs/NAME/optuna.db")
    folder = Path(u.database).parent
    if not folder.is_dir():
        raise SearchError(f"storage {shown}: the folder {folder} does not exist; create it first "
                          "(avsf does not create the folders a storage URL names)")


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return Path(u.database) if u.get_backend_name() == "sqlite" and u.database else None


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
    db = _sqlite_file(url)
    if db is None:
        yield
        return
    import filelock

    with filelock.FileLock(str(db) + ".lock", timeout=120):
        yield


# ------------------------------------------------------------------------------- identity

def identity(spec: SearchSpec, scale: str) -> dict[str, Any]:
    """What makes trials comparable: stored as the study's user attributes when it is created."""
    return {
        "avsf_scale": scale,
        "avsf_objectives": [str(o) for o in spec.objectives],
        "avsf_params": {p.name: p.definition() for p in spec.space},
        "avsf_space": {p.name: p.key for p in spec.space},
    }


def _identity_conflict(have: dict[str, Any], want: dict[str, Any]) -> str | None:
    """Why a study with attributes `have` is not the search `want` describes (None: it is)."""
    if "avsf_scale" not in have:
        return None  # created outside avsf (e.g. an enqueue before the first run): adopt it
    if have["avsf_scale"] != want["avsf_scale"]:
        return (f"was run at scale '{have['avsf_scale']}', not '{want['avsf_scale']}': mixing scales in one "
                f"study compares unlike runs; use --scale {have['avsf_scale']}, or")
    if have.get("avsf_objectives", want["avsf_objectives"]) != want["avsf_objectives"]:
        return f"has objectives {have['avsf_objectives']}, the file asks {want['avsf_objectives']}:"
    old = have.get("avsf_params")
    if old is None:  # a study created before parameter definitions were stored: keys only
        old, new = have.get("avsf_space", {}), want["avsf_space"]
    else:
        new = want["avsf_params"]
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            return (f"was created with parameter '{name}' = {old.get(name, 'absent')}, the file now says "
                    f"{new.get(name, 'absent')}: its trials would mix two meanings;")
    return None


def _refuse(spec: SearchSpec, url: str, why: str) -> SearchError:
    return SearchError(f"study '{spec.name}' on {public_url(url)} {why} give the search a new `name` "
                       "(a new study) or use another --out / --storage")


def _check_existing(spec: SearchSpec, storage: Any, url: str, want: dict[str, Any]) -> bool:
    """Refuse a study of the same name that is another search; True when one exists."""
    import optuna

    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        return False
    why = _identity_conflict(study.user_attrs, want)
    directions = [d.name.lower() for d in study.directions]
    if why is None and directions != spec.directions:
        why = f"has directions {directions}, the file asks {spec.directions}:"
    if why:
        raise _refuse(spec, url, why)
    return True


def open_study(spec: SearchSpec, url: str, *, scale: str, seed: int | None = None) -> Any:
    """Create or load the study named after the spec on `url`, refusing another search's study.

    An existing storage is checked before anything is written (a refused search changes
    nothing); a new study records `identity()`. The check runs again under the creation lock,
    for a worker that created the study meanwhile.
    """
    import optuna

    want = identity(spec, scale)
    db = _sqlite_file(url)
    storage = None
    if db is None or db.exists():
        storage = make_storage(url, spec.storage)
        _check_existing(spec, storage, url, want)
    with _init_lock(url):
        storage = storage or make_storage(url, spec.storage)
        existed = _check_existing(spec, storage, url, want)
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions,
                                    sampler=make_sampler(spec, seed), pruner=make_pruner(spec), load_if_exists=True)
        if not existed or "avsf_params" not in study.user_attrs:
            for k, v in want.items():
                study.set_user_attr(k, v)
    return study
