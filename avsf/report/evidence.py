"""The statistics of a study report, from the runs' predictions.json (see `avsf.stats`):

- per variant: its metric with a 95 % interval, and against the study's baseline (same seeds,
  same test clips) the difference with its interval, p-value (and Holm-adjusted over the
  variants) and the minimum detectable difference; for the study metric and the class groups;
- per paper claim (`[[claim]]` in the study file): supported / contradicted / undecided at
  this power;
- per class, for the per-class gain figure: the gain of one variant over another with intervals;
- per variant, the confusion matrix summed over seeds.

Runs that have no predictions.json (older avsf) are listed in `missing` and left out of the
statistics; everything else still reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avsf import stats as st
from avsf.report.predictions import Predictions, ReportError, confusion, group_mask, outcome, read_predictions

MAP_BOOT = 1000  # mAP recomputes an AP per class and replicate: fewer replicates keep it seconds


@dataclass
class VariantStats:
    name: str
    seeds: list[int]
    interval: dict[str, st.Interval] = field(default_factory=dict)  # fractions
    vs_base: dict[str, st.Comparison] = field(default_factory=dict)
    p_holm: dict[str, float] = field(default_factory=dict)


@dataclass
class Verdict:
    """A study-file claim (`avsf.study.spec.Claim`: text, better, worse, metric) judged."""

    claim: Any
    comparison: st.Comparison | None = None
    verdict: str = "not measured"  # supported / contradicted / undecided / not measured
    unconverged: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass
class Evidence:
    baseline: str
    keys: list[str]
    variants: dict[str, VariantStats]
    claims: list[Verdict]
    n_clips: int
    kind: str
    preds: dict[tuple[str, int], Predictions]
    groups: dict[str, list[Any]]
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def seeds_of(self, variant: str) -> list[int]:
        return sorted(s for v, s in self.preds if v == variant)

    def comparison(self, variant: str, key: str) -> st.Comparison | None:
        vs = self.variants.get(variant)
        return vs.vs_base.get(key) if vs else None

    def confusion(self, variant: str) -> np.ndarray | None:
        mats = [m for s in self.seeds_of(variant) if (m := confusion(self.preds[(variant, s)])) is not None]
        return np.sum(mats, axis=0) if mats else None

    # ------------------------------------------------------------------ statistics on demand

    def _stat(self, names: list[str], key: str, seeds: list[int], masks: np.ndarray | None = None):
        """(statistic over variants `names`, replicates) for one key on common seeds."""
        runs = [[self.preds[(n, s)] for s in seeds] for n in names]
        if self.kind == "detection":  # frame mAP over keyframe draws; `masks` are class sets here
            from avsf.eval.detection import detection_statistic

            try:
                return detection_statistic([[p.extra["record"] for p in r] for r in runs], runs[0][0].index, key,
                                           self.groups, masks), MAP_BOOT
            except KeyError as e:
                raise ReportError(e.args[0]) from None
        if key == "mAP" or (key.startswith("mAP_") and key[4:] in self.groups):
            # mAP_<group>: the mean AP of the group's classes (multi-label: seen / heard activities)
            cols = np.asarray(self.groups[key[4:]] if key != "mAP" else range(runs[0][0].label.shape[1]), dtype=int)
            targets = runs[0][0].label[:, cols]
            return st.mean_ap([np.stack([p.scores[:, cols] for p in r]) for r in runs], targets), MAP_BOOT
        values, group = self._per_clip(runs, key)
        if values is None:
            raise ReportError(f"'{key}' is not a per-clip test metric of these runs' predictions ({self.kind}-label); "
                              "statistics cover top1, top5, top1_<group>, top1_verb/noun, top1_noun_<group>, mAP "
                              "and mAP_<group>")
        return st.clipwise(values, group[None, :] if group is not None else masks), st.N_BOOT

    def _per_clip(self, runs: list[list[Predictions]], key: str) -> tuple[list[np.ndarray] | None, np.ndarray | None]:
        """((seeds x clips) per-clip values of each variant's runs, or None where `key` is not a
        mean over clips; the 0/1 mask of a class group's clips for top1_<group>, else None)."""
        per_clip = [[outcome(p, key) for p in r] for r in runs]
        if any(v is None for r in per_clip for v in r):
            return None, None
        group = None
        if key.startswith("top1_") and key[5:] in self.groups:
            group = group_mask(runs[0][0], self.groups[key[5:]], head=key[5:].split("_")[0])
        return [np.stack(r) for r in per_clip], group

    def components(self, a: str, b: str, key: str) -> st.Components | None:
        """Variance components of the per-clip difference a - b on their common seeds (over a
        class group's clips for top1_<group>): what more seeds or test clips would detect
        (`avsf.stats.Components`). None where `key` is not a mean over clips (mAP, detection)."""
        seeds = sorted(set(self.seeds_of(a)) & set(self.seeds_of(b)))
        if not seeds or self.kind == "detection":
            return None
        values, group = self._per_clip([[self.preds[(n, s)] for s in seeds] for n in (a, b)], key)
        if values is None:
            return None
        d = values[0] - values[1]
        if group is not None:
            d = d[:, group > 0]
        return st.components(d) if d.shape[1] >= 2 else None

    def spread_by_group(self, a: str, b: str) -> tuple[float, dict[str, tuple[float, float]]] | None:
        """(SD of the per-seed top-1 differences a - b, {class group: (SD of its part, its share of
        their variance)}; `avsf.stats.spread_shares`) on their common seeds: which group's clips carry the
        training-to-training spread. None unless single-label runs whose class groups hold every
        test clip exactly once, on at least 3 common seeds."""
        seeds = sorted(set(self.seeds_of(a)) & set(self.seeds_of(b)))
        if self.kind != "single" or len(self.groups) < 2 or len(seeds) < 3:
            return None
        values, _ = self._per_clip([[self.preds[(n, s)] for s in seeds] for n in (a, b)], "top1")
        if values is None:
            return None
        names = list(self.groups)
        masks = np.stack([group_mask(self.preds[(a, seeds[0])], self.groups[g]) for g in names])
        if not np.array_equal(masks.sum(axis=0), np.ones(masks.shape[1])):
            return None  # groups that overlap or leave clips out do not split the spread
        out = st.spread_shares(values[0] - values[1], masks)
        if out is None:
            return None
        sd, part_sd, shares = out
        return sd, {g: (float(p), float(q)) for g, p, q in zip(names, part_sd, shares)}

    def compare(self, a: str, b: str, key: str, masks: np.ndarray | None = None) -> list[st.Comparison]:
        seeds = sorted(set(self.seeds_of(a)) & set(self.seeds_of(b)))
        if not seeds:
            return []
        stat, n_boot = self._stat([a, b], key, seeds, masks)
        return st.compare(stat, len(seeds), self.n_clips, n_boot=n_boot)

    def estimate(self, a: str, key: str) -> st.Interval | None:
        seeds = self.seeds_of(a)
        if not seeds:
            return None
        stat, n_boot = self._stat([a], key, seeds)
        return st.estimate(stat, len(seeds), self.n_clips, n_boot=n_boot)[0]

    def class_masks(self, variant: str) -> tuple[list[str], np.ndarray] | None:
        """(class names, (C, N) masks of each class's clips) for single-label predictions."""
        seeds = self.seeds_of(variant)
        if not seeds or self.kind != "single":
            return None
        p = self.preds[(variant, seeds[0])]
        c = p.scores.shape[1]
        names = p.classes or [str(i) for i in range(c)]
        return names, (p.label[None, :] == np.arange(c)[:, None]).astype(float)


# ----------------------------------------------------------------------------- assembling


def _load(rows: list[Any]) -> tuple[dict[tuple[str, int], Predictions], list[str]]:
    preds, missing = {}, []
    for row in rows:
        for run in row.runs:
            p = read_predictions(run.path)
            if p is None:
                missing.append(f"{row.name} seed{run.seed}")
            else:
                preds[(row.name, run.seed)] = p
    return preds, missing


def _align(preds: dict[tuple[str, int], Predictions], notes: list[str]) -> int:
    """Keep the manifest rows every run predicted, in one order; returns how many."""
    kinds = {p.kind for p in preds.values()}
    if len(kinds) > 1:
        raise ReportError(f"the runs' predictions.json mix kinds of labels ({', '.join(sorted(kinds))}); "
                          "a study compares runs on one test set")
    common = None
    for p in preds.values():
        common = p.index if common is None else np.intersect1d(common, p.index)
    sizes = {len(p.index) for p in preds.values()}
    if len(sizes) > 1 or any(len(p.index) != len(common) for p in preds.values()):
        notes.append(f"the runs predicted different test clips ({min(sizes)}-{max(sizes)}); the statistics use the "
                     f"{len(common)} clips every run predicted")
    if len(common) == 0:
        raise ReportError("the runs' predictions.json share no test clip ('index'); they come from different test sets")
    for k, p in preds.items():
        order = np.argsort(p.index)
        preds[k] = p.take(order[np.searchsorted(p.index[order], common)])
    return len(common)


def stats_keys(metric: str, keys: list[str], kind: str, groups: dict[str, Any]) -> list[str]:
    """The result keys the statistics cover: the study metric, then class groups or EPIC heads."""
    out = [metric]
    for k in keys:
        if k in out:
            continue
        if kind == "single" and k.startswith("top1_") and k[5:] in groups:
            out.append(k)
        elif kind == "verb_noun" and (k in ("top1_verb", "top1_noun") or k[5:] in groups):
            out.append(k)
        elif kind == "multi" and k.startswith("mAP_") and k[4:] in groups:
            out.append(k)
    if kind == "detection":
        return [metric] + [k for k in keys if k.startswith("mAP_") and k[4:] in groups and k != metric]
    if kind == "multi" and metric != "mAP":
        out = [k for k in out if k in ("top1", "top5") or k.startswith("mAP_")] + (["mAP"] if "mAP" in keys else [])
    if kind != "multi" and metric == "mAP":
        out.remove("mAP")
    return out


def _groups(rows: list[Any]) -> dict[str, list[Any]]:
    for row in rows:
        for run in row.runs:
            pc = run.per_class()
            if pc and isinstance(pc.get("groups"), dict):
                return {str(k): list(v) for k, v in pc["groups"].items() if isinstance(v, list)}
    return {}


def gather_evidence(data: Any) -> Evidence | None:
    """Statistics of a `ReportData`; None when no finished run has predictions.json."""
    preds, missing = _load(data.rows)
    if not preds:
        return None
    notes: list[str] = []
    n_clips = _align(preds, notes)
    kind = next(iter(preds.values())).kind
    groups = _groups(data.rows)
    base = data.spec.baseline_variant().name
    ev = Evidence(baseline=base, keys=stats_keys(data.metric, data.keys, kind, groups), variants={}, claims=[],
                  n_clips=n_clips, kind=kind, preds=preds, groups=groups, missing=missing, notes=notes)
    for row in data.rows:
        vs = VariantStats(row.name, ev.seeds_of(row.name))
        for key in ev.keys if vs.seeds else []:
            cmp = ev.compare(row.name, base, key) if row.name != base else []
            if cmp:
                vs.vs_base[key] = cmp[0]
                vs.interval[key] = cmp[0].variant
            else:
                vs.interval[key] = ev.estimate(row.name, key)
        ev.variants[row.name] = vs
    for key in ev.keys:
        names = [n for n, v in ev.variants.items() if key in v.vs_base]
        for n, p in zip(names, st.holm([ev.variants[n].vs_base[key].p_value for n in names])):
            ev.variants[n].p_holm[key] = p
    ev.claims = [judge(ev, data, c) for c in data.spec.claims]
    return ev


# ----------------------------------------------------------------------------- claims


def judge(ev: Evidence, data: Any, claim: Any) -> Verdict:
    """Supported (better is better), contradicted (worse is better), each when p < 0.05 and the
    interval excludes 0 (`Comparison.direction`), or undecided at this power; with the comparison
    and the unconverged runs it rests on."""
    out = Verdict(claim)
    try:
        cmp = ev.compare(claim.better, claim.worse, claim.metric or data.metric)
    except ReportError as e:
        out.reason = str(e)
        return out
    if not cmp:
        out.reason = "no finished runs with predictions on common seeds for both variants"
        return out
    out.comparison = cmp[0]
    out.verdict = {1: "supported", -1: "contradicted", 0: "undecided"}[cmp[0].direction()]
    seeds = set(ev.seeds_of(claim.better)) & set(ev.seeds_of(claim.worse))
    for name in dict.fromkeys((claim.better, claim.worse)):
        for run in data.row(name).runs:
            state = converged(run) if run.seed in seeds else True
            if state is not True:
                out.unconverged.append(f"{name} seed{run.seed}" + (" (not recorded)" if state is None else ""))
    return out


def converged(run: Any) -> bool | None:
    """result.json `converged` (contract 6): True, False, or None when not recorded."""
    v = run.result.get("converged")
    if isinstance(v, bool) or isinstance(v, (int, float)):
        return bool(v)
    return None
