"""What produced a report: the avsf version and git commit of the report's code, and the commits
the runs recorded in result.json `provenance` (run-folder contract 4), with a warning when the
runs came from different commits or from a modified (dirty) tree."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def code_provenance() -> dict[str, Any]:
    """{"avsf_version", "git_commit", "git_dirty"} of the running avsf (avsf.provenance)."""
    from avsf.provenance import code_version

    return code_version()


def short(commit: Any) -> str:
    return str(commit)[:10] if commit else "unknown"


def describe(p: dict[str, Any]) -> str:
    """ "avsf 0.1.0 at commit 1234abcd56 (modified tree)" """
    text = f"avsf {p.get('avsf_version') or '?'} at commit {short(p.get('git_commit'))}"
    return text + (" (with uncommitted changes)" if p.get("git_dirty") else "")


@dataclass
class RunsProvenance:
    commits: Counter = field(default_factory=Counter)  # commit -> runs
    versions: Counter = field(default_factory=Counter)
    dirty: list[str] = field(default_factory=list)  # "variant seedK" of runs from a modified tree
    unrecorded: list[str] = field(default_factory=list)  # finished runs without provenance
    hosts: Counter = field(default_factory=Counter)  # host -> runs
    compute_s: float = 0.0  # train + test seconds summed over the runs
    first_start: float | None = None  # epoch seconds: the earliest run's training start
    last_end: float | None = None  # the latest result

    def time_text(self) -> str | None:
        """ "the runs spanned 18.2 min of wall time (first training start to last result), 31.0
        min of training + testing summed over runs, on vm" or None when nothing was recorded."""
        if self.first_start is None or self.last_end is None:
            return None
        hosts = ", ".join(h for h, _ in self.hosts.most_common())
        return (f"the runs spanned {(self.last_end - self.first_start) / 60:.1f} min of wall time (first training "
                f"start to last result; data generation and model building before the first run not included), "
                f"{self.compute_s / 60:.1f} min of training + testing summed over runs, on {hosts}")

    def warnings(self) -> list[str]:
        out = []
        if len(self.commits) > 1:
            parts = ", ".join(f"{short(c)} ({n} run{'s' if n != 1 else ''})" for c, n in self.commits.most_common())
            out.append(f"the runs came from {len(self.commits)} different commits: {parts}; "
                       "differences between variants may be differences between code versions")
        if self.dirty:
            out.append(f"{len(self.dirty)} run(s) came from a tree with uncommitted changes "
                       f"({', '.join(self.dirty[:6])}{', ...' if len(self.dirty) > 6 else ''}): "
                       "their code cannot be recovered from the commit")
        if self.unrecorded:
            out.append(f"{len(self.unrecorded)} finished run(s) recorded no provenance (older avsf): "
                       "which code produced them is unknown")
        return out


def runs_provenance(runs: list[Any]) -> RunsProvenance:
    """Summarise result.json `provenance` over finished runs (objects with .variant, .seed, .result)."""
    out = RunsProvenance()
    for r in runs:
        p = r.result.get("provenance")
        name = f"{r.variant} seed{r.seed}"
        if not isinstance(p, dict):
            out.unrecorded.append(name)
            continue
        out.commits[p.get("git_commit") or "unknown"] += 1
        out.versions[str(p.get("avsf_version") or "?")] += 1
        if p.get("git_dirty"):
            out.dirty.append(name)
        out.hosts[str(p.get("host") or "?")] += 1
        _add_time(out, p, r.result)
    return out


def _add_time(out: RunsProvenance, p: dict[str, Any], result: dict[str, Any]) -> None:
    """A run's share of the study time: its result was written at `created`, after training and
    testing for train_time_s + test_time_s (time recorded by the trainer, not file dates)."""
    try:
        end = datetime.fromisoformat(str(p["created"])).timestamp()
        spent = float(result.get("train_time_s") or 0.0) + float(result.get("test_time_s") or 0.0)
    except (KeyError, TypeError, ValueError):
        return
    out.compute_s += spent
    out.first_start = min(end - spent, out.first_start if out.first_start is not None else end - spent)
    out.last_end = max(end, out.last_end if out.last_end is not None else end)
