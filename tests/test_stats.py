"""avsf.stats: the paired hierarchical bootstrap on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit

from avsf import stats as st


def _models(rng, difficulty, n_seeds, shift=0.0, tau=0.0):
    """Per-clip correctness (seeds x clips) of models whose logit = clip difficulty + shift + a
    per-seed training effect N(0, tau)."""
    a = rng.normal(0.0, tau, (n_seeds, 1)) if tau else 0.0
    return (rng.random((n_seeds, len(difficulty))) < expit(difficulty + shift + a)).astype(float)


def _pair(seed=0, n_seeds=2, n_clips=300, shift=0.0, tau=0.0):
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(1.0, 1.5, n_clips)
    return _models(rng, difficulty, n_seeds, shift, tau), _models(rng, difficulty, n_seeds, 0.0, tau)


def test_identical_variants_give_a_zero_interval_and_p_one():
    a, _ = _pair()
    c = st.compare(st.clipwise([a, a]), 2, a.shape[1])[0]
    assert c.diff == st.Interval(0.0, 0.0, 0.0)
    assert c.p_value == 1.0 and c.p_seed == 1.0 and c.mdd == 0.0
    assert c.variant == c.baseline and c.variant.low < c.variant.estimate < c.variant.high
    assert c.direction() == 0


@pytest.mark.parametrize("n_seeds", [1, 2, 3])
def test_false_positive_rate_with_equal_variants_is_at_most_alpha(n_seeds):
    # 150 studies of two variants drawn from the same distribution (no training variance):
    # p below 0.05 in about 5 % of them at most (a valid test), never piling up near 0
    ps = []
    for r in range(150):
        a, b = _pair(seed=r, n_seeds=n_seeds, n_clips=200)
        c = st.compare(st.clipwise([a, b]), n_seeds, 200, n_boot=500, seed=r)[0]
        ps.append(c.p_value)
        assert c.diff.low <= c.diff.estimate <= c.diff.high
    ps = np.array(ps)
    assert (ps < 0.05).mean() <= 0.08
    assert 0.3 <= np.median(ps) <= 0.7  # roughly uniform, not all large either
    assert (ps < 0.5).mean() > 0.35


def test_a_large_planted_difference_is_found():
    a, b = _pair(seed=1, shift=1.0)
    c = st.compare(st.clipwise([a, b]), 2, 300)[0]
    assert c.p_value < 0.01 and c.direction() == 1 and c.diff.low > 0
    assert c.diff.estimate == pytest.approx((a.mean() - b.mean()))
    assert c.variant.estimate == pytest.approx(a.mean()) and c.baseline.estimate == pytest.approx(b.mean())
    assert c.seeds_agree and len(c.seed_diffs) == 2
    # the other way round: the same difference, negative
    r = st.compare(st.clipwise([b, a]), 2, 300)[0]
    assert r.direction() == -1 and r.diff.estimate == pytest.approx(-c.diff.estimate)


def test_mdd_shrinks_as_one_over_root_clips():
    # one seed: the clip level alone (with several seeds the seed level adds a part that more
    # clips do not shrink; see test_training_variance_widens_intervals_with_few_seeds)
    mdds = {}
    for n in (200, 800, 3200):
        a, b = _pair(seed=2, n_seeds=1, n_clips=n, shift=0.2)
        mdds[n] = st.compare(st.clipwise([a, b]), 1, n)[0].mdd
    assert mdds[200] / mdds[800] == pytest.approx(2.0, rel=0.2)
    assert mdds[800] / mdds[3200] == pytest.approx(2.0, rel=0.2)
    # and it is (1.96 + 0.84) standard errors with many degrees of freedom
    c = st.compare(st.clipwise([a, b]), 1, 3200)[0]
    assert c.df == math.inf and c.mdd == pytest.approx(2.8016 * c.se, rel=1e-3)


def test_training_variance_widens_intervals_with_few_seeds():
    rng = np.random.default_rng(4)
    difficulty = rng.normal(1.0, 1.5, 300)
    base = _models(rng, difficulty, 2)
    steady = _models(rng, difficulty, 2, shift=0.3)
    # the variant's two trainings disagree by far more than 300 clips explain
    erratic = np.stack([_models(rng, difficulty, 1, shift=1.2)[0], _models(rng, difficulty, 1, shift=-0.6)[0]])
    quiet = st.compare(st.clipwise([steady, base]), 2, 300)[0]
    noisy = st.compare(st.clipwise([erratic, base]), 2, 300)[0]
    assert quiet.df == math.inf and noisy.df < 10 and noisy.se > 2 * quiet.se
    assert noisy.direction() == 0 and not noisy.seeds_agree
    assert (noisy.diff.high - noisy.diff.low) > 1.5 * (quiet.diff.high - quiet.diff.low)


def test_same_seed_same_answer_and_seeded():
    a, b = _pair(seed=5)
    one = st.compare(st.clipwise([a, b]), 2, 300, seed=7)[0]
    assert st.compare(st.clipwise([a, b]), 2, 300, seed=7)[0] == one
    assert st.compare(st.clipwise([a, b]), 2, 300, seed=8)[0].se != one.se


def test_group_masks_and_estimates():
    a, b = _pair(seed=6, shift=0.5)
    masks = np.zeros((2, 300))
    masks[0, :100] = 1
    masks[1, 100:] = 1
    groups = st.compare(st.clipwise([a, b], masks), 2, 300)
    assert len(groups) == 2
    assert groups[0].variant.estimate == pytest.approx(a[:, :100].mean())
    assert groups[1].diff.estimate == pytest.approx(a[:, 100:].mean() - b[:, 100:].mean())
    (whole,) = st.estimate(st.clipwise([a]), 2, 300)
    assert whole.low < a.mean() < whole.high
    # a class with a single clip: replicates that miss it are NaN and left out, not an error
    tiny = np.zeros((1, 300))
    tiny[0, 0] = 1
    (one,) = st.estimate(st.clipwise([a], tiny), 2, 300, n_boot=200)
    assert math.isfinite(one.low)


def test_map_bootstrap_matches_the_metric_and_finds_a_difference():
    from avsf.eval.metrics import mean_average_precision
    import torch

    rng = np.random.default_rng(9)
    n, c = 240, 4
    targets = (rng.random((n, c)) < 0.3).astype(float)
    good = targets + rng.normal(0, 0.6, (2, n, c))  # 2 seeds
    bad = targets + rng.normal(0, 1.5, (2, n, c))
    cmp = st.compare(st.mean_ap([good, bad], targets), 2, n, n_boot=400)[0]
    want = np.mean([mean_average_precision(torch.tensor(good[s]), torch.tensor(targets)) for s in range(2)])
    assert cmp.variant.estimate == pytest.approx(want)
    assert cmp.p_value < 0.01 and cmp.diff.low > 0
    with pytest.raises(ValueError, match="no class has a positive"):
        st.mean_ap([good], np.zeros((n, c)))


def test_sign_flip_and_notes():
    assert st.sign_flip_p([0.1, 0.2]) == 0.5  # the smallest p two seeds can give
    assert st.min_seed_p(2) == 0.5 and st.min_seed_p(6) < 0.05
    assert st.sign_flip_p([0.1]) == 1.0
    assert st.sign_flip_p([1.0] * 8) == pytest.approx(2 / 256)
    assert "not measured" in st.seed_level_note(1)
    assert "cannot go below p = 0.5" in st.seed_level_note(2)
    assert "too narrow" in st.seed_level_note(3, 20)


def test_holm():
    assert st.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = st.holm([math.nan, 0.02])
    assert math.isnan(out[0]) and out[1] == 0.02


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one seed and one clip"):
        st.compare(st.clipwise([np.zeros((0, 3)), np.zeros((0, 3))]), 0, 3)
    with pytest.raises(ValueError, match="n_boot: 10 is not allowed"):
        st.estimate(st.clipwise([np.ones((1, 3))]), 1, 3, n_boot=10)
    with pytest.raises(ValueError, match="exactly 2 variants"):
        st.compare(st.clipwise([np.ones((1, 3))]), 1, 3)


def test_speed_of_a_study_sized_comparison():
    # 3 seeds x 2000 clips x 4 groups, 4000 replicates: well under a second on one core
    import time

    a, b = _pair(seed=3, n_seeds=3, n_clips=2000)
    masks = (np.arange(2000)[None, :] % 4 == np.arange(4)[:, None]).astype(float)
    t = time.perf_counter()
    st.compare(st.clipwise([a, b], masks), 3, 2000)
    assert time.perf_counter() - t < 5.0


def test_direction_needs_p_and_interval_to_agree():
    iv = st.Interval(0.3, 0.0, 0.6)  # touches 0
    c = st.Comparison(variant=iv, baseline=iv, diff=iv, p_value=0.03, se=0.1, mdd=0.3, seed_diffs=(0.3,), p_seed=1.0,
                      n_seeds=1, n_clips=10)
    assert c.direction() == 0
    c = st.Comparison(variant=iv, baseline=iv, diff=st.Interval(0.3, 0.05, 0.6), p_value=0.03, se=0.1, mdd=0.3,
                      seed_diffs=(0.3,), p_seed=1.0, n_seeds=1, n_clips=10)
    assert c.direction() == 1


def test_intervals_stay_inside_the_metrics_range():
    import numpy as np

    from avsf import stats as st

    reps = np.array([0.9, 0.95, 1.0, 1.0, 1.0])
    iv = st.interval(0.98, reps, df=2, bounds=st.UNIT)  # t with 2 df widens past 1 unless cut
    assert iv.high == 1.0 and 0.0 <= iv.low < 0.98
    assert st.interval(0.98, reps, df=2).high > 1.0  # what the cut prevents


# ----------------------------------------------------------------------------- power projections
def test_components_recover_planted_seed_clip_and_interaction_variances():
    rng = np.random.default_rng(7)
    s, n = 40, 2000
    d = 0.1 + rng.normal(0, 0.03, (s, 1)) + rng.normal(0, 0.2, (1, n)) + rng.normal(0, 0.5, (s, n))
    c = st.components(d)
    assert (c.n_seeds, c.n_clips) == (s, n)
    assert c.seed == pytest.approx(0.03**2, rel=0.35)
    assert c.clip == pytest.approx(0.2**2, rel=0.1)
    assert c.residual == pytest.approx(0.5**2, rel=0.02)
    one = st.components(d[:1])  # one training: no seed level to separate
    assert one.seed == 0 and one.residual == 0 and one.clip > 0
    with pytest.raises(ValueError, match="seeds x clips"):
        st.components(np.zeros(5))


@pytest.mark.parametrize("n_seeds,tau", [(3, 0.0), (3, 0.6), (7, 0.6)])
def test_projected_mdd_at_the_measured_size_agrees_with_the_bootstrap(n_seeds, tau):
    """The projection is only as good as its agreement where both can be measured: at the study's
    own seeds and clips it gives the bootstrap's MDD (both read the same variance parts)."""
    a, b = _pair(seed=3, n_seeds=n_seeds, n_clips=500, shift=0.2, tau=tau)
    boot = st.compare(st.clipwise([a, b]), n_seeds, 500)[0]
    proj = st.components(a - b)
    assert proj.mdd(n_seeds, 500) == pytest.approx(boot.mdd, rel=0.15)


def test_seeds_and_clips_needed_move_the_right_way():
    rng = np.random.default_rng(11)
    d = np.array([[0.05], [-0.04], [0.0]]) + rng.normal(0, 0.45, (3, 400))  # seed-limited: SD 4.5 points
    c = st.components(d)
    k = c.seeds_for(0.05, 400)
    assert k is not None and c.mdd(k, 400) <= 0.05 < c.mdd(k - 1, 400)
    assert c.seeds_for(0.05, 4000) <= k  # more clips never need more seeds
    assert c.seed_upper > c.seed and c.at_upper().seeds_for(0.05, 400) >= k
    quiet = st.components(rng.normal(0, 0.45, (3, 400)))  # no training spread: estimate 0, bound above it
    assert quiet.seed <= quiet.seed_upper and quiet.seed_upper > 0
    assert c.clips_for(0.05, 3) is None  # the seeds' part alone exceeds 5 points at 3 seeds
    clip_limited = st.components(rng.normal(0, 0.6, (1, 1)) * 0 + rng.normal(0, 0.6, (3, 300)))
    m = clip_limited.clips_for(0.05, 3)
    assert m is not None and m > 300 and clip_limited.mdd(3, m) <= 0.05 < clip_limited.mdd(3, m - 1)


def test_spread_shares_find_the_group_whose_learning_varies():
    """A planted training-to-training effect in one group's clips: that group carries the spread."""
    rng = np.random.default_rng(2)
    s, n = 8, 600
    masks = np.zeros((3, n))
    masks[0, :200], masks[1, 200:400], masks[2, 400:] = 1, 1, 1
    d = rng.normal(0, 0.3, (s, n))  # clip noise everywhere
    d[:, 400:] += rng.normal(0, 0.25, (s, 1))  # the third group is learned by some seeds, not others
    sd, part_sd, shares = st.spread_shares(d, masks)
    assert shares.sum() == pytest.approx(1.0)
    assert shares[2] > 0.8 and abs(shares[0]) < 0.2 and abs(shares[1]) < 0.2
    assert part_sd[2] == pytest.approx(float(d[:, 400:].sum(axis=1).std(ddof=1)) / n)
    assert part_sd[2] > 3 * max(part_sd[0], part_sd[1])
    assert sd == pytest.approx(float(d.mean(axis=1).std(ddof=1)))
    assert st.spread_shares(d[:2], masks) is None  # 2 seeds: one degree of freedom to split
    assert st.spread_shares(np.zeros((4, n)), masks) is None  # no spread to split
    with pytest.raises(ValueError, match="exactly one set"):
        st.spread_shares(d, masks[:2])
    with pytest.raises(ValueError, match="seeds x clips"):
        st.spread_shares(d, masks[:, :10])
