"""Is a study folder powered for a target smallest detectable difference, and if not, how many
seeds would it take? What `avsf study run --until-mdd` decides with, read from the run folders
exactly as the report reads them (`gather` -> `Evidence`), so the MDD it stops at is the one
summary.md prints.

Only seeds are added: the test clips are part of each run's config (`data.synth_test_per_class`),
so a study that needs more of them says so in its file. Stopping on the MDD, which depends on the
spread of the per-seed differences and not on their mean, leaves the tests' level as it is; a
rule that stopped on the p-value would not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avsf import stats as st
from avsf.report.data import gather
from avsf.report.predictions import ReportError


@dataclass(frozen=True)
class VariantPower:
    """One variant against the study's baseline, on the study metric."""

    label: str  # the variant as the report names it
    seeds: int  # paired seeds the comparison used
    mdd: float  # fraction (accuracies) or the metric's unit
    seeds_needed: int | None  # projected for the target at the seed spread's point estimate; None: > MOST_SEEDS


@dataclass(frozen=True)
class StudyPower:
    target: float
    variants: list[VariantPower]

    @property
    def met(self) -> bool:
        return all(v.mdd <= self.target for v in self.variants)

    def next_seeds(self, seeds: int, most: int) -> int:
        """Seeds for the next round: the most any variant short of the target is projected to
        need (at least one more than now), at most `most`. The projection uses the point
        estimate of the seed spread, optimistic from few seeds (docs/studies.md, "Power"):
        each round measures again."""
        short = [v for v in self.variants if v.mdd > self.target]
        need = max((v.seeds_needed or most for v in short), default=seeds)
        return min(most, max(seeds + 1, need))


def study_power(folder: str | Path, target: float) -> StudyPower:
    """Each variant's MDD against the baseline in `folder` (a study's runs), and the seeds the
    variance components project for `target` (a fraction for accuracies)."""
    data = gather(folder)
    ev = data.evidence
    if ev is None:
        raise ReportError(f"{folder}: no statistics (no run has predictions.json): nothing to size the seeds by")
    rows = []
    for row in data.rows:
        if row.name == ev.baseline:
            continue
        cmp = ev.comparison(row.name, data.metric)
        if cmp is None:
            raise ReportError(f"{folder}: {row.name} has no finished run paired with the baseline {ev.baseline}")
        # identical predictions (a variant the benchmark cannot tell apart) have MDD 0: met
        comp = None if cmp.identical else ev.components(row.name, ev.baseline, data.metric)
        need = comp.seeds_for(target, comp.n_clips) if comp is not None and comp.n_seeds > 1 else None
        rows.append(VariantPower(data.named(row), cmp.n_seeds, cmp.mdd, need))
    return StudyPower(target, rows)


def power_table(p: StudyPower) -> str:
    """The per-variant lines `avsf study run --until-mdd` prints after each round (percentage
    points: the study metrics are accuracies and mAPs)."""
    def seeds(v: VariantPower) -> str:
        return str(v.seeds_needed) if v.seeds_needed is not None else f"> {st.MOST_SEEDS}"

    return "\n".join(
        f"  {v.label:<28} MDD {100 * v.mdd:5.1f} points over {v.seeds} seeds"
        + ("  ok" if v.mdd <= p.target else f"  > {100 * p.target:g}; projected seeds for it: {seeds(v)}")
        for v in p.variants)
