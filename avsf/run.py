"""One owner for a run folder: every file the trainer, `avsf eval`, the study runner and the
reports read or write in it goes through `RunDir` (docs/architecture.md, "the run folder").

    config.json            the resolved Config.to_dict(); `resumed_with` records --resume-with changes
    metrics.jsonl          one JSON object per line (train and val rows), appended
    checkpoints/last.pt    the last good checkpoint (atomic; loaded weights-only)
    result.json            written last; its presence (parsing as an object) = finished
    per_class.json         per-class accuracy of the final test
    predictions.json       video-level test scores per clip (PLAN contract 3)
    eval_<tag>.json, per_class_<tag>.json   `avsf eval` results
    failed.json            written by the study runner when the run raised
    tb/                    TensorBoard event files (train.tensorboard)
    export/model.<suffix>  `avsf export` (TorchScript .ts.pt, ONNX .onnx, torch.export .pt2)
    .lock                  held (flock) by the process training in the folder
    .claim                 a study worker's claim on the run (avsf.lease: flock + heartbeat lease)

Rules kept here once:
- "same run": `config_diff` compares two configs, skipping `NOT_COMPARED` (keys that do not
  change what is learned) and `SET_BY_DATA` (verb / noun head sizes the data sets), and treating
  a planned `model.num_classes = 0` as "take the data's".
  The trainer and the study runner both call it, so a `--set data.num_threads=1` on a resumed
  study passes both or neither.
- A config is only binding once the folder holds progress (a checkpoint or a result): a folder
  whose run never got that far accepts a corrected config.
- metrics.jsonl: a line that does not parse as a JSON object (a write torn by a kill) is
  skipped; `append_metrics` first ends an unterminated last line, so a torn line never swallows
  the next row.
- Writes are atomic (avsf.io); temporary files of writes killed mid-way (`.<name>.*.tmp`) are
  removed by `clean_stale_tmp`, which the trainer calls once it holds the lock.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from avsf.config import Config, ConfigError, flatten
from avsf.io import UnreadableFile, atomic_torch_save, atomic_write_json, atomic_write_text, load_torch_file

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
PER_CLASS_FILE = "per_class.json"
PREDICTIONS_FILE = "predictions.json"
FAILED_FILE = "failed.json"
CHECKPOINT_FILE = "checkpoints/last.pt"
LOCK_FILE = ".lock"
CLAIM_FILE = ".claim"
TENSORBOARD_DIR = "tb"
EXPORT_DIR = "export"

RESUMED_WITH = "resumed_with"
"""Top-level key of config.json listing `--resume-with` changes: [{"epoch", "step", "set", "was", "time"}]."""

NOT_COMPARED = frozenset({
    "name",
    "data.cache_dir",
    "data.loader",
    "data.device",
    "data.num_threads",
    "train.num_threads",
    "train.channels_last",
    "train.tensorboard",
    "train.compile",
})
"""Keys that say where or how fast a run computes, not what it learns: two configs that differ
only here describe the same run."""

FROM_DATA = frozenset({"model.num_classes"})
"""Keys whose value 0 means "take the dataset's" (the trainer resolves it)."""

SET_BY_DATA = frozenset({"model.num_verbs", "model.num_nouns"})
"""Keys the trainer always overwrites from a verb-noun dataset (its classes.json) and that no
other head reads: the planned value (EPIC-100's 97 / 300 by default) is never what a run trained
with, and `data.dataset`, which decides them, is compared. Comparing them refused every resumed
or extended EPIC study ("model.num_nouns: 6 there, 300 now")."""

RESUME_KEYS = frozenset({
    "train.base_lr",
    "train.warmup_start_lr",
    "train.warmup_epochs",
    "train.momentum",
    "train.weight_decay",
    "train.weight_decay_bn",
    "train.lr_policy",
    "train.lr_steps",
    "train.lr_decay",
})
"""Optimisation keys `avsf train --resume-with` may change on a run that has a checkpoint."""

_TMP_RE = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")


class RunFolderError(ConfigError):
    """A run folder cannot be used as asked; the message names the folder and what to do."""


class RunLocked(RunFolderError):
    """Another process holds the folder's lock."""


class RunConfigMismatch(RunFolderError):
    """The folder holds a run of another config."""


# ----------------------------------------------------------------------------- JSON reading
def read_json(path: str | Path) -> Any | None:
    """The parsed file, or None when it is missing or not (yet) valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, in order; a line that does not parse as an object
    (torn by a killed writer) is skipped."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


# ----------------------------------------------------------------------------- "same run"
def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def config_diff(existing: dict[str, Any], planned: dict[str, Any]) -> list[str]:
    """`"key: <there> there, <planned> now"` for every compared key whose values differ.

    A key the existing config lacks (a field a newer avsf added) counts as that field's default
    there: a new field defaults to what avsf did before it existed, so an older folder stays
    resumable unless the plan sets the field to something else (e.g. a larger test split). A key
    only the existing config has (a field since removed) is not compared. Neither are
    `NOT_COMPARED`, nor `FROM_DATA` keys that are 0 ("take the data's") on either side.
    """
    a, b = flatten(existing), flatten(planned)
    defaults = _defaults()
    diffs = []
    for k in sorted(b):
        if k in NOT_COMPARED or k in SET_BY_DATA or k == RESUMED_WITH or k not in (a.keys() | defaults.keys()):
            continue
        there, shown = (a[k], repr(a[k])) if k in a else (defaults[k], f"absent (the default {defaults[k]!r})")
        if k in FROM_DATA and 0 in (there, b[k]):
            continue
        if not _same_value(there, b[k]):
            diffs.append(f"{k}: {shown} there, {b[k]!r} now")
    return diffs


@functools.cache
def _defaults() -> dict[str, Any]:
    """Every config field's default, flattened (read-only; built once: config_diff runs for every
    run a study plans)."""
    return flatten(_as_dict(Config()))


def _as_dict(cfg: Config | dict[str, Any]) -> dict[str, Any]:
    return cfg if isinstance(cfg, dict) else json.loads(json.dumps(cfg.to_dict(), sort_keys=True))


# ----------------------------------------------------------------------------- the folder
class RunDir:
    """The files of one run folder (see the module docstring). Nothing here trains or scores."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- paths
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def result_path(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    def export_path(self, suffix: str) -> Path:
        """Where `avsf export` writes the model in a format (suffix ".onnx", ".pt2", ...)."""
        return self.path / EXPORT_DIR / f"model{suffix}"

    def file(self, name: str) -> Path:
        """Path of a file in the folder by name (e.g. "per_class_10x3.json")."""
        return self.path / name

    # -- state
    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def is_done(self) -> bool:
        return isinstance(self.read_result(), dict)

    def has_progress(self) -> bool:
        """True once the run holds something a rerun keeps (a checkpoint or a result)."""
        return self.has_checkpoint() or self.result_path.exists()

    def state(self) -> str:
        """"done" (result.json parses), "failed" (failed.json, no result), "partial" (started),
        or "pending"."""
        if self.is_done():
            return "done"
        if self.file(FAILED_FILE).exists():
            return "failed"
        if self.has_checkpoint() or self.metrics_path.exists() or self.config_path.exists():
            return "partial"
        return "pending"

    # -- config.json
    def read_config(self) -> dict[str, Any] | None:
        """config.json as stored (with `resumed_with` when present), or None."""
        cfg = read_json(self.config_path)
        return cfg if isinstance(cfg, dict) else None

    def load_config(self) -> Config:
        """The run's Config; a folder without a readable config.json is an error."""
        from avsf.config import config_from_dict

        raw = self.read_config()
        if raw is None:
            what = "is damaged" if self.config_path.exists() else "is missing"
            raise RunFolderError(f"{self.path} is not a run folder: {self.config_path.name} {what}")
        return config_from_dict({k: v for k, v in raw.items() if k != RESUMED_WITH})

    def started_as(self) -> dict[str, Any] | None:
        """The config the run was started with: config.json with every `--resume-with` change undone."""
        raw = self.read_config()
        if raw is None:
            return None
        from avsf.config import config_from_dict, set_value

        history = raw.get(RESUMED_WITH) or []
        cfg = config_from_dict({k: v for k, v in raw.items() if k != RESUMED_WITH})
        for change in reversed(history):
            for key, value in (change.get("was") or {}).items():
                set_value(cfg, key, value)
        return _as_dict(cfg)

    def config_for(self, cfg: Config) -> Config:
        """The config to run `cfg` with in this folder, before anything is written.

        `cfg` itself while the folder holds no progress or the same run; the folder's own config
        when `cfg` is what the run was started with before `--resume-with` changed it (a study
        rerun finds its planned config there); else RunConfigMismatch naming the keys.
        """
        stored = self.read_config()
        if stored is None or not self.has_progress():
            return cfg
        want = _as_dict(cfg)
        diffs = config_diff(stored, want)
        if not diffs:
            return cfg
        if stored.get(RESUMED_WITH) and not config_diff(self.started_as() or {}, want):
            return self.load_config()
        shown = "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "")
        raise RunConfigMismatch(
            f"{self.path} already holds a run with a different config ({shown}); resume it with the same "
            f"settings, change optimisation keys with `avsf train --out {self.path} --resume-with KEY=VALUE`, "
            f"or use another folder"
        )

    def write_config(self, cfg: Config | dict[str, Any]) -> None:
        atomic_write_json(self.config_path, _as_dict(cfg))

    def record_resume_with(self, changes: dict[str, Any], *, epoch: int, step: int) -> Config:
        """Apply `--resume-with` changes (`RESUME_KEYS` only) to config.json, recording what they
        replaced; returns the new Config."""
        from avsf.config import set_value

        bad = sorted(set(changes) - RESUME_KEYS)
        if bad:
            raise RunFolderError(f"--resume-with {', '.join(bad)}: not allowed; --resume-with changes only "
                                 f"optimisation keys ({', '.join(sorted(RESUME_KEYS))})")
        raw = self.read_config() or {}
        cfg = self.load_config()
        was = {k: flatten(_as_dict(cfg))[k] for k in changes}
        for k, v in changes.items():
            set_value(cfg, k, v)
        cfg.validate()  # before anything is written
        now = {k: flatten(_as_dict(cfg))[k] for k in changes}
        history = list(raw.get(RESUMED_WITH) or [])
        history.append({"epoch": epoch, "step": step, "set": now, "was": was,
                        "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        atomic_write_json(self.config_path, {**_as_dict(cfg), RESUMED_WITH: history})
        return cfg

    # -- metrics.jsonl
    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one row and fsync it (see the module docstring for torn lines)."""
        self.path.mkdir(parents=True, exist_ok=True)
        line = json.dumps(row, sort_keys=True, allow_nan=False) + "\n"
        with open(self.metrics_path, "a+b") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())

    def keep_metrics(self, n: int) -> None:
        """Keep the first `n` rows (a resume drops the rows written after its checkpoint)."""
        if n <= 0:
            self.metrics_path.unlink(missing_ok=True)
            return
        rows = self.read_metrics()[:n]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    # -- results
    def read_result(self) -> dict[str, Any] | None:
        """result.json, or None when it is missing or damaged (a damaged result is not "done")."""
        res = read_json(self.result_path)
        return res if isinstance(res, dict) else None

    def write_result(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.result_path, result)

    def read_per_class(self, tag: str | None = None) -> dict[str, Any] | None:
        """per_class.json (the final test), or per_class_<tag>.json of `avsf eval`."""
        pc = read_json(self.file(f"per_class_{tag}.json" if tag else PER_CLASS_FILE))
        return pc if isinstance(pc, dict) else None

    def write_per_class(self, per_class: dict[str, Any], tag: str | None = None) -> None:
        atomic_write_json(self.file(f"per_class_{tag}.json" if tag else PER_CLASS_FILE), _finite_or_none(per_class))

    def read_eval(self, tag: str) -> dict[str, Any] | None:
        res = read_json(self.file(f"eval_{tag}.json"))
        return res if isinstance(res, dict) else None

    def write_eval(self, tag: str, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.file(f"eval_{tag}.json"), metrics)

    def read_predictions(self) -> dict[str, Any] | None:
        pred = read_json(self.file(PREDICTIONS_FILE))
        return pred if isinstance(pred, dict) else None

    def write_predictions(self, predictions: dict[str, Any]) -> None:
        atomic_write_json(self.file(PREDICTIONS_FILE), predictions)

    # -- failed.json (the study runner's record of a run that raised)
    def read_failed(self) -> dict[str, Any] | None:
        f = read_json(self.file(FAILED_FILE))
        return f if isinstance(f, dict) else ({"error": "failed.json is damaged"} if self.file(FAILED_FILE).exists()
                                              else None)

    def write_failed(self, error: str, traceback: str = "") -> None:
        atomic_write_json(self.file(FAILED_FILE), {
            "error": error, "traceback": traceback,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def failed_since(self, t: float) -> bool:
        """failed.json was written at or after time.time() value `t` (by a worker of this pass)."""
        try:
            return self.file(FAILED_FILE).stat().st_mtime >= t
        except FileNotFoundError:
            return False

    def clear_failed(self) -> None:
        self.file(FAILED_FILE).unlink(missing_ok=True)

    # -- checkpoint
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_torch_save(self.checkpoint_path, state)

    def load_checkpoint(self, map_location: Any = "cpu") -> dict[str, Any]:
        """checkpoints/last.pt, loaded weights-only (avsf.io.load_torch_file): a damaged or unsafe
        file is a clear error naming it."""
        if not self.has_checkpoint():
            raise RunFolderError(f"{self.path} has no checkpoint ({CHECKPOINT_FILE}); train it first")
        try:
            state = load_torch_file(self.checkpoint_path, map_location=map_location)
        except UnreadableFile as e:
            if "holds objects" not in str(e):
                raise
            raise UnreadableFile(f"{e}. A checkpoint written by an avsf from before weights-only loading (numpy "
                                 f"RNG state inside) is refused the same way: if this run is that old, move "
                                 f"{self.checkpoint_path.name} away and it restarts from scratch") from None
        if not isinstance(state, dict) or "model" not in state:
            raise RunFolderError(f"{self.checkpoint_path} is not an avsf checkpoint (no 'model' entry)")
        return state

    # -- lock and leftovers
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's exclusive lock (flock on `.lock`); a second holder gets RunLocked at
        once. The kernel drops the lock when its process dies, so a killed run never blocks."""
        import fcntl

        self.ensure_writable()
        f = open(self.path / LOCK_FILE, "a+")
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise RunLocked(f"{self.path} is in use by {holder}; wait for it to finish, or train into "
                                f"another --out") from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {os.uname().nodename}, since "
                    f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n")
            f.flush()
            yield
        finally:
            f.close()  # closing the file releases the flock

    def claim(self, *, worker: str = "", ttl_s: float | None = None):
        """A study worker's claim on this run (avsf.lease.Lease, a context manager), or None
        when another live worker, on this machine or one sharing the folder, holds it. Unlike
        `lock()` (the trainer's, for one process) it tells workers on other machines apart from
        dead ones by a heartbeat, so several `avsf study run` split a study without running one
        run twice."""
        from avsf.lease import TTL_S, Lease

        self.ensure_writable()
        return Lease.acquire(self.path / CLAIM_FILE, ttl_s=ttl_s or TTL_S, worker=worker)

    def claimed_by(self) -> str:
        """Who holds the claim, in words (for log lines)."""
        from avsf.lease import Lease

        return Lease.holder(self.path / CLAIM_FILE)

    def is_claimed(self) -> bool:
        """A live worker holds the claim (a heartbeat within its ttl)."""
        from avsf.lease import Lease

        return Lease.is_live(self.path / CLAIM_FILE)

    def ensure_writable(self) -> None:
        """Create the folder; an unwritable one is a clear error before any work."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create the run folder {self.path}: {e.strerror}") from None
        probe = self.path / f".write-probe-{os.getpid()}"
        try:  # a real write: os.access says yes to root on a read-only file system
            probe.touch()
            probe.unlink()
        except OSError as e:
            raise RunFolderError(f"the run folder {self.path} is not writable ({e.strerror}); choose another "
                                 f"--out") from None

    def clean_stale_tmp(self) -> list[Path]:
        """Remove temporary files of killed writes of this folder's own files; returns them.

        Only the trainer calls this, while it holds the lock: no writer of these files is alive.
        """
        own = {CONFIG_FILE, METRICS_FILE, RESULT_FILE, PER_CLASS_FILE, PREDICTIONS_FILE, FAILED_FILE,
               Path(CHECKPOINT_FILE).name}
        removed = []
        for folder in (self.path, self.checkpoint_path.parent):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                m = _TMP_RE.match(p.name)
                if m and m.group("name") in own and p.is_file():
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed


def _finite_or_none(obj: Any) -> Any:
    """NaN / inf -> None (JSON has no such numbers), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    return obj


def numbers_only(d: dict[str, Any]) -> dict[str, Any]:
    """The finite numbers of a flat dict (bools as 0/1): what result.json's top level holds."""
    out = {}
    for k, v in d.items():
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = v
    return out
