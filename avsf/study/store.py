"""The results store: what a study folder (runs/NAME) holds, read back from disk alone.

Layout (the run folders are the trainer's contract, docs/architecture.md)::

    runs/NAME/study.json                  the spec as loaded + scale, seeds, overrides
    runs/NAME/<variant>/seed<k>/          one training run (config.json, metrics.jsonl,
                                          checkpoints/last.pt, result.json, per_class.json)
    runs/NAME/<variant>/seed<k>/failed.json   written by the study runner when the run raised

A run's state and files are read through avsf.run.RunDir (`done` when result.json parses,
`failed` when failed.json exists and no result, `partial` when it started, `pending`
otherwise). Nothing here deletes or rewrites a run's files.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsf.run import RunDir, read_json
from avsf.study.spec import StudySpec, Variant, study_from_dict

STUDY_FILE = "study.json"
_SEED_RE = re.compile(r"^seed(\d+)$")


# ----------------------------------------------------------------------------- run folders


def run_dir(study_dir: str | Path, variant: str, seed: int) -> Path:
    return Path(study_dir) / variant / f"seed{seed}"


def run_state(path: str | Path) -> str:
    """done | failed | partial | pending (avsf.run.RunDir.state)."""
    return RunDir(path).state()


@dataclass
class RunRecord:
    variant: str
    seed: int
    path: Path
    state: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def metrics(self) -> list[dict[str, Any]]:
        return RunDir(self.path).read_metrics()

    def per_class(self) -> dict[str, Any] | None:
        return RunDir(self.path).read_per_class()

    def predictions(self) -> dict[str, Any] | None:
        return RunDir(self.path).read_predictions()

    def number(self, key: str) -> float | None:
        v = self.result.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        return float(v)


def read_run(study_dir: str | Path, variant: str, seed: int) -> RunRecord:
    run = RunDir(run_dir(study_dir, variant, seed))
    state = run.state()
    result: dict[str, Any] = {}
    error = ""
    if state == "done":
        result = run.read_result() or {}
    elif state == "failed":
        error = str((run.read_failed() or {}).get("error", ""))
    return RunRecord(variant=variant, seed=seed, path=run.path, state=state, result=result, error=error)


@dataclass
class StudyRecord:
    """A study folder read back: the spec it ran with and every run's state and result."""

    path: Path
    spec: StudySpec
    scale: str
    seeds: list[int]
    runs: list[RunRecord]
    meta: dict[str, Any] = field(default_factory=dict)

    def runs_of(self, variant: str, *, state: str | None = "done") -> list[RunRecord]:
        return [r for r in self.runs if r.variant == variant and (state is None or r.state == state)]

    def values(self, variant: str, key: str) -> list[float]:
        vals = [r.number(key) for r in self.runs_of(variant)]
        return [v for v in vals if v is not None]

    def stats(self, variant: str, key: str) -> Stat:
        return Stat.of(self.values(variant, key))

    def result_keys(self) -> list[str]:
        keys: list[str] = []
        for r in self.runs:
            for k, v in r.result.items():
                if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                    keys.append(k)
        return keys

    @property
    def name(self) -> str:
        return self.path.name

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {"done": 0, "partial": 0, "failed": 0, "pending": 0}
        for r in self.runs:
            out[r.state] = out.get(r.state, 0) + 1
        return out


@dataclass
class Stat:
    mean: float | None
    std: float | None
    n: int
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        if not values:
            return cls(None, None, 0, [])
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(mean, std, len(values), list(values))


def load_study_dir(study_dir: str | Path) -> StudyRecord:
    """Read runs/NAME back. Uses study.json when present; else infers variants from folders."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"{study_dir} is not a folder (run `avsf study run STUDY.toml` first)")
    meta = read_json(study_dir / STUDY_FILE)
    if isinstance(meta, dict) and isinstance(meta.get("spec"), dict):
        spec = study_from_dict(meta["spec"], source=str(study_dir / STUDY_FILE))
        scale = str(meta.get("scale") or spec.default_scale)
        seeds = [int(s) for s in meta.get("seeds", [])] or spec.seeds(scale)
    else:
        meta = {}
        names = sorted(
            p.name for p in study_dir.iterdir() if p.is_dir() and any(_SEED_RE.match(c.name) for c in p.iterdir())
        )
        if not names:
            raise FileNotFoundError(f"{study_dir} holds no study.json and no <variant>/seed<k>/ run folders")
        spec = StudySpec(name=study_dir.name, title=study_dir.name, variants=[Variant(name=n, label=n) for n in names])
        scale = spec.default_scale
        seeds = []
    runs: list[RunRecord] = []
    for v in spec.variants:
        found = set(seeds)
        vdir = study_dir / v.name
        if vdir.is_dir():
            for c in vdir.iterdir():
                m = _SEED_RE.match(c.name)
                if m and c.is_dir():
                    found.add(int(m.group(1)))
        for seed in sorted(found):
            runs.append(read_run(study_dir, v.name, seed))
    return StudyRecord(path=study_dir, spec=spec, scale=scale, seeds=sorted(set(seeds)), runs=runs, meta=meta)
