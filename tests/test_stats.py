"""Bootstrap intervals and paired differences (encoderlab.evaluate.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from encoderlab.evaluate.stats import (
    bootstrap,
    bootstrap_ci,
    bootstrap_indices,
    mean,
    paired_bootstrap_diff,
    paired_difference,
    pool_replicates,
    ratio_of_means,
)


def test_interval_covers_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, hits, widths = 300, 0, []
    for t in range(trials):
        x = rng.normal(2.0, 1.0, size=50)
        est = bootstrap(x, n_boot=400, seed=t)
        hits += est.low <= 2.0 <= est.high
        widths.append(est.high - est.low)
        assert est.low <= est.value <= est.high
    coverage = hits / trials
    # Percentile bootstrap slightly under-covers at n=50; far from 0.95 would be a bug.
    assert 0.88 <= coverage <= 0.99, coverage
    # Width close to the normal-theory 2 * 1.96 * sigma / sqrt(n).
    assert np.mean(widths) == pytest.approx(2 * 1.96 / np.sqrt(50), rel=0.1)


def test_interval_shrinks_with_more_units_and_is_deterministic():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=30), rng.normal(size=3000)
    a, b = bootstrap(small, seed=3), bootstrap(large, seed=3)
    assert (b.high - b.low) < (a.high - a.low) / 5
    assert bootstrap(small, seed=3) == a
    assert bootstrap(small, seed=4) != a


def test_paired_difference_sign_and_significance():
    rng = np.random.default_rng(2)
    unit = rng.normal(0.0, 5.0, size=200)  # large per-unit difficulty shared by both systems
    a = unit + 0.3 + rng.normal(0, 0.2, size=200)
    b = unit + rng.normal(0, 0.2, size=200)
    d = paired_difference(a, b, seed=0)
    assert d.value == pytest.approx(a.mean() - b.mean())
    assert d.significant and d.low > 0 and d.p < 0.01
    flipped = paired_difference(b, a, seed=0)
    assert flipped.significant and flipped.high < 0
    assert flipped.value == pytest.approx(-d.value)
    # Unpaired, the shared difficulty swamps the effect: the two CIs overlap.
    ea, eb = bootstrap(a, seed=0), bootstrap(b, seed=1)
    assert ea.low < eb.high
    # No difference at all: not significant.
    same = paired_difference(a, a.copy(), seed=0)
    assert same.value == 0 and not same.significant


def test_ratio_statistic_with_missing_units_and_shared_indices():
    num = np.array([1.0, np.nan, 3.0, np.nan, 5.0, 2.0])
    den = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    est = bootstrap(num, den, statistic=ratio_of_means, n_boot=200)
    assert est.value == pytest.approx(np.nanmean(num) / 2.0)
    idx = bootstrap_indices(6, 200, seed=5)
    # Resampling the same units for A and B: a statistic against itself differs by exactly 0.
    d = paired_difference((num, den), (num, den), statistic=ratio_of_means, indices=idx)
    assert d.low == d.high == 0.0
    assert mean(np.array([[np.nan, np.nan]]))[0] != mean(np.array([[np.nan, np.nan]]))[0]  # NaN


def test_tuple_wrappers_and_empty_input():
    x = np.arange(20.0)
    assert bootstrap_ci(x, n=300, seed=1) == tuple(
        getattr(bootstrap(x, n_boot=300, seed=1), k) for k in ("value", "low", "high")
    )
    diff, lo, hi = paired_bootstrap_diff(x + 1.0, x, n=300)
    assert diff == pytest.approx(1.0) and lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    assert np.isnan(bootstrap(np.array([])).value)
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_pool_replicates_one_replicate_is_itself() -> None:
    assert pool_replicates([(0.3, 0.1, 0.5)]) == (0.3, 0.1, 0.5)


def test_pool_replicates_adds_the_between_seed_variance() -> None:
    # Identical replicates: no seed variance, so the test-set interval comes back unchanged.
    value, low, high = pool_replicates([(2.0, 1.0, 3.0)] * 3)
    assert (value, low, high) == pytest.approx((2.0, 1.0, 3.0))
    # Replicates that disagree: the mean, and an interval wider than any replicate's own,
    # by exactly the between-seed standard error in quadrature.
    value, low, high = pool_replicates([(1.0, 0.5, 1.5), (3.0, 2.5, 3.5)])
    t1 = 12.706205  # the Student-t (1 df) 97.5% quantile
    s_b = np.std([1.0, 3.0], ddof=1)
    half = np.sqrt(0.5**2 + t1**2 * s_b**2 / 2)  # z * w = the replicates' half-width 0.5
    assert value == pytest.approx(2.0)
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-5)
    assert low < 0.5 and high > 3.5


def test_pool_replicates_covers_the_truth_over_simulated_studies() -> None:
    # Simulate: a true effect 0.1, seed effects N(0, 0.05^2) per replicate, a shared test set
    # whose sampling error N(0, 0.03^2) is common to the replicates of one study. The pooled
    # 95% interval should cover the truth about 95% of the time or more.
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        test_error = rng.normal(0, 0.03)
        values = 0.1 + test_error + rng.normal(0, 0.05, size=3)
        _, low, high = pool_replicates([(v, v - 1.96 * 0.03, v + 1.96 * 0.03) for v in values])
        covered += low <= 0.1 <= high
    assert covered / 2000 > 0.94


def test_pool_replicates_needs_an_estimate() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pool_replicates([])
