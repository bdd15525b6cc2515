"""Paired comparisons of study variants: bootstrap intervals, p-values, detectable differences.

A study trains every variant with the same seeds and tests every run on the same clips, so a
comparison of variant A with the baseline B is paired twice: seed k of A against seed k of B,
clip i against clip i. The data of one metric are two (seeds x clips) tables of per-clip values
(1/0 correctness for top-1, group top-1, verb/noun/action top-1; the clip's scores for mAP).

Method (`replicates`, `combine`, `compare`):

- **Hierarchical, paired bootstrap.** Each replicate draws the seeds with replacement and,
  independently, the test clips with replacement, and recomputes the metric of both variants
  on that draw: the same seeds and clips for A and B, so the difference keeps the pairing.
  Seeds and clips are *crossed*, not nested (every seed is tested on the same clips), so one
  clip draw serves all seeds, as in Owen's (2007) "pigeonhole" bootstrap for crossed random
  effects. A metric that is not a mean over clips (mAP) is recomputed from the weighted clips
  (`avsf.eval.metrics.average_precision` with the draw's clip counts as sample weights).
- **The seed level, corrected.** Plain resampling of rows and columns counts the seed x clip
  interaction twice (Owen 2007) and, with S = 2 or 3 seeds, understates the seed spread by
  (S - 1) / S. So the seed level of each replicate is rescaled to carry exactly the estimated
  training-to-training variance sigma_a^2 / S, where sigma_a^2 = (variance of the per-seed
  values) - (the part the seed x clip interaction explains, measured from the clip draws), a
  method-of-moments variance component floored at 0.
- **Few seeds: t, not z.** sigma_a^2 from S seeds has S - 1 degrees of freedom, so the
  intervals, p-values and detectable differences use Student's t with Welch-Satterthwaite
  degrees of freedom from the two variance parts (seeds: S - 1; clips: treated as
  infinitely many, the test sets holding hundreds). When the seeds
  disagree more than the clips explain, 2 seeds (1 df) give very wide intervals, as they
  should; when they do not, the clips carry the comparison. With 1 seed nothing varies at the
  seed level: the numbers then describe these trained models on clips like the test clips
  only (`seed_level_note`).
- **Intervals**: percentile intervals of the replicates (each variant and the difference),
  widened about the estimate by t_df / z where the degrees of freedom are few.
- **p-value** of the difference: two-sided, t = difference / bootstrap SE on the
  Satterthwaite df (1 for identical variants).
- **Seed-level check**: the exact sign-flip (randomisation) test over the S per-seed
  differences; its smallest attainable two-sided p is 2 / 2^S (0.5 with 2 seeds, 0.25 with 3,
  below 0.05 only from 6 seeds on). It is reported beside the bootstrap so that a reader sees
  what the seeds alone support.
- **Minimum detectable difference** (alpha 0.05 two-sided, power 0.8): (t_0.975 + t_0.8) x SE
  (2.80 x SE with many df), SE the bootstrap standard deviation of the difference; at fixed
  seeds and no training variance it shrinks as 1/sqrt(clips).

Calibration, measured by simulation (300 studies of two identically distributed variants, 300
test clips; tests/test_stats.py repeats the first case): with no training-to-training variance
the false-positive rate at alpha = 0.05 is 3-6 % for 1-5 seeds; with a strong one (a per-seed
shift of about 5 accuracy points) it is about 16 % with 2 seeds, 8-11 % with 3 to 5 seeds, and
43 % with 1 seed, which cannot see it. So with few seeds a small p is evidence about these
trainings on these clips; the seed-level check says how far retraining has been tested.

Everything is numpy, seeded (`seed`) and vectorised over replicates, in blocks of `_BLOCK`.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as _sps

ALPHA = 0.05
POWER = 0.8
N_BOOT = 4000
_BLOCK = 500  # replicates per block: bounds memory at (clips x _BLOCK) weights
_SIGN_FLIP_EXACT = 16  # seeds up to which the sign-flip test enumerates every assignment

Stat = Callable[[np.ndarray], np.ndarray]
"""stat(clip_weights (b, N)) -> (variants, *groups, seeds, b): the metric per seed under each weighting."""


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def excludes(self, value: float = 0.0) -> bool:
        return self.low > value or self.high < value


@dataclass(frozen=True)
class Comparison:
    """A against B on one metric (fractions for accuracies): intervals, p-value, MDD."""

    variant: Interval
    baseline: Interval
    diff: Interval  # variant - baseline
    p_value: float
    se: float
    mdd: float  # the smallest |difference| detected with probability POWER at level ALPHA
    seed_diffs: tuple[float, ...]  # per seed, on all clips
    p_seed: float  # exact sign-flip test over the seed differences
    n_seeds: int
    n_clips: int
    df: float = math.inf  # Welch-Satterthwaite degrees of freedom of the difference

    def direction(self, alpha: float = ALPHA) -> int:
        """+1 variant better, -1 worse, 0 undecided at this power. Decided only when p < alpha and
        the interval of the difference excludes 0 as well (with few clips the two can disagree
        at the edge; a reader sees both, so both must agree)."""
        if not (self.p_value < alpha and self.diff.excludes(0.0)):
            return 0
        return 1 if self.diff.estimate > 0 else -1

    @property
    def identical(self) -> bool:
        """Every seed scored every test clip as the baseline did: nothing varies, so the MDD of 0
        is no power. The variant's change did not act on this data (e.g. a mask that never fires)."""
        return self.se == 0 and all(d == 0 for d in self.seed_diffs)

    @property
    def seeds_agree(self) -> bool:
        """Every seed's difference has the sign of the overall difference."""
        sign = np.sign(self.diff.estimate)
        return bool(sign) and all(np.sign(d) == sign for d in self.seed_diffs)


# ----------------------------------------------------------------------------- the bootstrap


def clip_weights(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, n) multinomial counts: how often each clip is drawn in each replicate."""
    idx = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
    return np.bincount(idx.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def seed_inflation(n_seeds: int) -> float:
    """sqrt(S / (S - 1)): restores the seed-level variance a bootstrap of S values understates."""
    return math.sqrt(n_seeds / (n_seeds - 1)) if n_seeds > 1 else 1.0


def replicates(
    stat: Stat, n_seeds: int, n_clips: int, *, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw the bootstrap: (per-seed values on all clips (V, *G, S), per-seed values under each
    replicate's clip draw (V, *G, S, n_boot), seed draws (n_boot, S)); `combine` turns any
    paired contrast of them into replicates of the metric."""
    if n_seeds < 1 or n_clips < 1:
        raise ValueError(f"a comparison needs at least one seed and one clip, got {n_seeds} seeds, {n_clips} clips")
    if n_boot < 100:
        raise ValueError(f"n_boot: {n_boot} is not allowed; use at least 100 replicates")
    rng = np.random.default_rng(seed)
    full = stat(np.ones((1, n_clips)))[..., 0]
    blocks, seeds = [], []
    for lo in range(0, n_boot, _BLOCK):
        b = min(_BLOCK, n_boot - lo)
        blocks.append(stat(clip_weights(n_clips, b, rng)))
        seeds.append(rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=b).astype(np.float64))
    return full, np.concatenate(blocks, axis=-1), np.concatenate(seeds)


@dataclass(frozen=True)
class Replicates:
    values: np.ndarray  # (..., B) bootstrap replicates of the seed mean
    df: np.ndarray  # (...) Welch-Satterthwaite degrees of freedom of their variance


def combine(full: np.ndarray, drawn: np.ndarray, seed_draws: np.ndarray) -> Replicates:
    """Replicates of the seed mean from per-seed values: on all clips `full` (..., S) and under
    the clip draws `drawn` (..., S, B), with the seed draws (B, S).

    clip level: the seed mean of each clip draw. seed level: the drawn seeds' deviation from the
    mean, scaled so that its variance is sigma_a^2 / S (see the module docstring).
    """
    n_seeds = full.shape[-1]
    with warnings.catch_warnings():  # a group a clip draw missed is NaN there
        warnings.simplefilter("ignore", RuntimeWarning)
        clip_level = np.nanmean(drawn, axis=-2)
        v_clip = np.nanvar(clip_level, axis=-1, ddof=1)
        if n_seeds == 1:
            return Replicates(clip_level, np.full(v_clip.shape, np.inf))
        interaction = np.nanmean(np.nanvar(drawn - clip_level[..., None, :], axis=-1, ddof=1), axis=-1)
    interaction = interaction * n_seeds / (n_seeds - 1)
    spread = np.var(full, axis=-1, ddof=1)
    training = np.clip(spread - np.nan_to_num(interaction), 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(spread > 0, np.sqrt(training / np.where(spread > 0, spread, 1.0)), 0.0)
        v_seed = training / n_seeds
        # Welch-Satterthwaite with the clip part's df taken as infinite (hundreds of clips)
        df = np.where(v_seed > 0, (v_clip + v_seed) ** 2 / np.where(v_seed > 0, v_seed, 1.0) ** 2 * (n_seeds - 1),
                      np.inf)
    deviation = full - full.mean(axis=-1, keepdims=True)
    seed_level = np.einsum("...s,bs->...b", deviation, seed_draws) / n_seeds
    return Replicates(clip_level + (seed_inflation(n_seeds) * scale)[..., None] * seed_level, df)


def _stretch(df: float, alpha: float) -> float:
    """t_df / z at level alpha: how much wider an interval with few degrees of freedom is."""
    if not math.isfinite(df):
        return 1.0
    return float(_sps.t.ppf(1 - alpha / 2, df) / _sps.norm.ppf(1 - alpha / 2))


def interval(estimate: float, reps: np.ndarray, alpha: float = ALPHA, df: float = math.inf,
             bounds: tuple[float, float] = (-math.inf, math.inf)) -> Interval:
    """Percentile interval of the replicates, widened about the estimate by t_df / z, then cut
    to the metric's range `bounds` (an accuracy lies in [0, 1], a difference of two in [-1, 1]:
    the widening for few seeds would otherwise reach past them)."""
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return Interval(float(estimate), math.nan, math.nan)
    lo, hi = np.percentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    k = _stretch(df, alpha)
    low, high = estimate - k * (estimate - lo), estimate + k * (hi - estimate)
    return Interval(float(estimate), float(max(low, bounds[0])), float(min(high, bounds[1])))


UNIT = (0.0, 1.0)  # the range of every metric here: accuracies and APs are fractions
DIFF = (-1.0, 1.0)


def p_value(estimate: float, se: float, df: float = math.inf) -> float:
    """Two-sided p of estimate / se on Student's t with df degrees of freedom (normal when df is
    infinite); 1 when both are 0 (identical variants), 0 for a nonzero estimate with no spread."""
    if not (math.isfinite(estimate) and math.isfinite(se)):
        return math.nan
    if se == 0:
        return 1.0 if estimate == 0 else 0.0
    z = abs(estimate) / se
    return float(2 * (_sps.t.sf(z, df) if math.isfinite(df) else _sps.norm.sf(z)))


def mdd(se: float, alpha: float = ALPHA, power: float = POWER, df: float = math.inf) -> float:
    """Minimum detectable difference: (t_(1 - alpha/2) + t_power) x SE (z quantiles for infinite df)."""
    dist = _sps.t(df) if math.isfinite(df) else _sps.norm
    return float((dist.ppf(1 - alpha / 2) + dist.ppf(power)) * se)


def sign_flip_p(diffs: Sequence[float], *, seed: int = 0) -> float:
    """Exact two-sided randomisation p of the mean of paired differences (random flips above
    `_SIGN_FLIP_EXACT` values). 1.0 for a single difference."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return math.nan
    if d.size <= _SIGN_FLIP_EXACT:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(1 << _SIGN_FLIP_EXACT, d.size))
    stat = np.abs(signs @ d)
    return float((stat >= abs(d.sum()) - 1e-12).mean())


def min_seed_p(n_seeds: int) -> float:
    """The smallest two-sided p the sign-flip test over n_seeds differences can reach."""
    return min(1.0, 2.0 / 2**n_seeds)


def seed_level_note(n_seeds: int, n_clips: int | None = None) -> str:
    """What the seed level of a comparison with this many seeds can and cannot support."""
    if n_seeds <= 1:
        text = ("With 1 seed per variant, training-to-training variation is not measured at all: the intervals "
                "and p-values describe how sure we are about these trained models on clips like the test clips, "
                "not whether retraining would give the same ranking.")
    elif n_seeds < 6:
        text = (f"With {n_seeds} seeds the seed level is resampled (its spread corrected for the few seeds), but "
                f"{n_seeds} values estimate that spread poorly, and the seeds alone cannot show a difference: the "
                f"exact sign-flip test over {n_seeds} seed differences cannot go below p = {min_seed_p(n_seeds):.2g}. "
                "A small p-value here rests mostly on the test clips; more seeds would test whether it survives "
                "retraining.")
    else:
        text = f"With {n_seeds} seeds both the seed and the clip level carry the intervals."
    if n_clips is not None and n_clips < 30:
        text += f" With only {n_clips} test clips the bootstrap intervals are too narrow (they are asymptotic in clips)."
    return text


# ----------------------------------------------------------------------------- statistics


def clipwise(values: Sequence[np.ndarray], masks: np.ndarray | None = None) -> Stat:
    """Means of per-clip values (V tables of seeds x clips), over all clips or over each mask's
    clips (masks (G, N) of 0/1: a class group, one class). A mask whose clips a replicate misses
    entirely gives NaN there (left out of the percentiles)."""
    x = np.stack([np.asarray(v, dtype=np.float64) for v in values])  # (V, S, N)
    if masks is None:
        return lambda w: (x @ w.T) / w.sum(axis=1)
    m = np.asarray(masks, dtype=np.float64)
    xm = x[:, None, :, :] * m[None, :, None, :]  # (V, G, S, N)

    def stat(w: np.ndarray) -> np.ndarray:
        den = m @ w.T  # (G, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (xm @ w.T) / den[None, :, None, :]

    return stat


def mean_ap(scores: Sequence[np.ndarray], targets: np.ndarray) -> Stat:
    """mAP over classes (multi-label): V tables of scores (S, N, C) against targets (N, C). Per
    replicate, classes without a drawn positive are left out (as `mean_average_precision` does)."""
    from avsf.eval.metrics import average_precision

    sc = [np.asarray(s, dtype=np.float64) for s in scores]
    t = np.asarray(targets) > 0.5
    classes = [c for c in range(t.shape[1]) if t[:, c].any()]
    if not classes:
        raise ValueError("mean_ap: no class has a positive clip, so mAP is undefined")

    def stat(w: np.ndarray) -> np.ndarray:
        out = np.empty((len(sc), sc[0].shape[0], len(w)))
        for v, s in enumerate(sc):
            for k in range(s.shape[0]):
                aps = np.stack([average_precision(s[k, :, c], t[:, c], w) for c in classes])
                with warnings.catch_warnings():  # an all-NaN column (no drawn positive) is a NaN mAP
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out[v, k] = np.nanmean(aps, axis=0)
        return out

    return stat


# ----------------------------------------------------------------------------- comparisons


def compare(stat: Stat, n_seeds: int, n_clips: int, *, n_boot: int = N_BOOT, seed: int = 0,
            alpha: float = ALPHA) -> list[Comparison]:
    """Variant 0 against variant 1 of `stat`, one Comparison per group (one without masks)."""
    full, drawn, seed_draws = replicates(stat, n_seeds, n_clips, n_boot=n_boot, seed=seed)
    if full.shape[0] != 2:
        raise ValueError(f"compare needs a statistic of exactly 2 variants, got {full.shape[0]}")
    full, drawn = full.reshape(2, -1, n_seeds), drawn.reshape(2, -1, n_seeds, n_boot)
    out = []
    for g in range(full.shape[1]):
        a, b = combine(full[0, g], drawn[0, g], seed_draws), combine(full[1, g], drawn[1, g], seed_draws)
        d = combine(full[0, g] - full[1, g], drawn[0, g] - drawn[1, g], seed_draws)
        df = float(d.df)
        est = float((full[0, g] - full[1, g]).mean())
        se = float(np.nanstd(d.values, ddof=1)) if np.isfinite(d.values).sum() > 1 else math.nan
        seed_diffs = tuple(float(x) for x in full[0, g] - full[1, g])
        out.append(Comparison(
            variant=interval(full[0, g].mean(), a.values, alpha, float(a.df), UNIT),
            baseline=interval(full[1, g].mean(), b.values, alpha, float(b.df), UNIT),
            diff=interval(est, d.values, alpha, df, DIFF),
            p_value=p_value(est, se, df),
            se=se,
            mdd=mdd(se, alpha, df=df) if math.isfinite(se) else math.nan,
            seed_diffs=seed_diffs,
            p_seed=sign_flip_p(seed_diffs, seed=seed),
            n_seeds=n_seeds,
            n_clips=n_clips,
            df=df,
        ))
    return out


def estimate(stat: Stat, n_seeds: int, n_clips: int, *, n_boot: int = N_BOOT, seed: int = 0,
             alpha: float = ALPHA) -> list[Interval]:
    """Intervals of one variant's metric (a statistic of 1 variant), one per group."""
    full, drawn, seed_draws = replicates(stat, n_seeds, n_clips, n_boot=n_boot, seed=seed)
    full, drawn = full.reshape(-1, n_seeds), drawn.reshape(-1, n_seeds, n_boot)
    out = []
    for g in range(full.shape[0]):
        r = combine(full[g], drawn[g], seed_draws)
        out.append(interval(full[g].mean(), r.values, alpha, float(r.df), UNIT))
    return out


# ----------------------------------------------------------------------------- power: more seeds or clips
MOST_SEEDS = 100  # the projections search this far
MOST_CLIPS = 1_000_000
UPPER_LEVEL = 0.8  # one-sided confidence of `Components.seed_upper`


@dataclass(frozen=True)
class Components:
    """Variance components of a paired per-clip difference d[s, i] (seed s, test clip i), read as
    the crossed random-effects model d = mu + a_s + b_i + e_si (Owen 2007, as the bootstrap):
    `seed` = var(a), training to training; `clip` = var(b), test clip to test clip; `residual` =
    var(e), the seed x clip interaction. Estimated by the method of moments of the two-way table
    (`components`), each floored at 0. They answer "what would S seeds and N clips detect?": the
    SE of the difference of seed means over all clips is sqrt(seed/S + clip/N + residual/(S N)).

    The seed part is estimated from `n_seeds` - 1 degrees of freedom: from 3 seeds it is
    uncertain by a factor of several, so `seed_upper` (its one-sided 80 % upper bound: the seeds'
    mean square at its chi-square bound on n_seeds - 1 df, less the interaction's share) is given
    beside it; it is positive even where the point estimate is floored at 0."""

    seed: float
    clip: float
    residual: float
    n_seeds: int
    n_clips: int
    seed_upper: float = 0.0

    def se(self, seeds: int, clips: int) -> float:
        return math.sqrt(self.seed / seeds + self.clip / clips + self.residual / (seeds * clips))

    def df(self, seeds: int, clips: int) -> float:
        """Welch-Satterthwaite df, the seed part on seeds - 1 and the clip parts on infinitely
        many (as `combine`)."""
        v = self.seed / seeds
        if v <= 0 or seeds < 2:
            return math.inf
        return (self.se(seeds, clips) ** 2) ** 2 / v**2 * (seeds - 1)

    def mdd(self, seeds: int, clips: int, *, alpha: float = ALPHA, power: float = POWER) -> float:
        """The minimum detectable difference a study of `seeds` x `clips` would have."""
        return mdd(self.se(seeds, clips), alpha, power, df=self.df(seeds, clips))

    def at_upper(self) -> Components:
        """The same components with the seed part at its upper bound `seed_upper`: the
        projections a cautious plan uses."""
        return replace(self, seed=self.seed_upper)

    def limited_by(self, seeds: int, clips: int) -> str:
        """"seeds" or "test clips": whichever lever, made unlimited, leaves the larger MDD (the
        other one's part). With few seeds the seed part's t quantile weighs in, not just its SE."""
        seed_only = mdd(math.sqrt(self.seed / seeds), df=seeds - 1 if seeds > 1 else math.inf)
        clip_only = mdd(math.sqrt(self.clip / clips))
        return "seeds" if seed_only > clip_only else "test clips"

    def seeds_for(self, target: float, clips: int, *, most: int = MOST_SEEDS) -> int | None:
        """The fewest seeds (>= 2) whose MDD at `clips` test clips is <= target; None past `most`."""
        return next((s for s in range(2, most + 1) if self.mdd(s, clips) <= target), None)

    def clips_for(self, target: float, seeds: int, *, most: int = MOST_CLIPS) -> int | None:
        """The fewest test clips whose MDD at `seeds` seeds is <= target; None when even `most`
        clips do not get there (the seed part alone is too large: more clips cannot help)."""
        if self.mdd(seeds, most) > target:
            return None
        lo, hi = 1, most
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if self.mdd(seeds, mid) <= target else (mid + 1, hi)
        return lo


def components(diffs: np.ndarray) -> Components:
    """Method-of-moments variance components of a (seeds x clips) table of paired differences
    (two-way ANOVA without replication): residual = MS_interaction, seed = (MS_seed -
    residual) / clips, clip = (MS_clip - residual) / seeds, each floored at 0. One seed: the
    seed and interaction parts are not separable from one training, so both are 0 and only the
    clip part is measured."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] < 2:
        raise ValueError(f"components needs a (seeds x clips) table with at least 2 clips, got shape {d.shape}")
    s, n = d.shape
    grand = d.mean()
    by_seed, by_clip = d.mean(axis=1), d.mean(axis=0)
    ms_clip = s * float(((by_clip - grand) ** 2).sum()) / (n - 1)
    if s == 1:
        return Components(0.0, ms_clip, 0.0, 1, n)
    ms_seed = n * float(((by_seed - grand) ** 2).sum()) / (s - 1)
    resid = d - by_seed[:, None] - by_clip[None, :] + grand
    ms_e = float((resid**2).sum()) / ((s - 1) * (n - 1))
    # E[MS_seed] = n var(a) + var(e): bound it above (one-sided 80 %), then take var(e) off
    ms_seed_upper = ms_seed * (s - 1) / float(_sps.chi2.ppf(1 - UPPER_LEVEL, s - 1))
    return Components(seed=max(0.0, (ms_seed - ms_e) / n), clip=max(0.0, (ms_clip - ms_e) / s),
                      residual=max(0.0, ms_e), n_seeds=s, n_clips=n,
                      seed_upper=max(0.0, (ms_seed_upper - ms_e) / n))


def spread_shares(diffs: np.ndarray, masks: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Where the training-to-training spread of a paired comparison comes from: (the SD of the
    per-seed mean differences, the SD of each clip set's part of them, each set's share of their
    variance) for a (seeds x clips) table of per-clip differences and (sets x clips) 0/1 masks
    that partition the clips (class groups). A set's part is its clips' contribution to the
    per-seed mean; its share, the covariance of its part with the whole over the whole's variance:
    the shares sum to 1, and a negative one offsets the others (sets whose parts move against
    each other from seed to seed).
    None with fewer than 3 seeds (a variance from one degree of freedom splits into noise) or
    when the per-seed differences do not vary."""
    d, m = np.asarray(diffs, dtype=np.float64), np.asarray(masks, dtype=np.float64)
    if d.ndim != 2 or m.ndim != 2 or m.shape[1] != d.shape[1]:
        raise ValueError(f"spread_shares needs (seeds x clips) differences and (sets x clips) masks, got "
                         f"{d.shape} and {m.shape}")
    if not np.array_equal(m.sum(axis=0), np.ones(d.shape[1])):
        raise ValueError("spread_shares: the masks must put every clip in exactly one set")
    if d.shape[0] < 3:
        return None
    total = d.mean(axis=1)
    parts = d @ m.T / d.shape[1]  # (seeds, sets): each set's clips' contribution to the seed's mean
    var = float(total.var(ddof=1))
    if var <= 0:
        return None
    centred = total - total.mean()
    shares = (parts - parts.mean(axis=0)).T @ centred / (len(total) - 1) / var
    return math.sqrt(var), parts.std(axis=0, ddof=1), shares


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN)."""
    idx = [i for i, p in enumerate(p_values) if math.isfinite(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        out[i] = running
    return out


__all__ = [
    "ALPHA", "POWER", "N_BOOT", "Interval", "Comparison", "clip_weights", "seed_inflation", "replicates",
    "interval", "p_value", "mdd", "sign_flip_p", "min_seed_p", "seed_level_note", "clipwise", "mean_ap",
    "compare", "estimate", "holm", "Components", "components", "spread_shares", "MOST_SEEDS", "MOST_CLIPS",
]
