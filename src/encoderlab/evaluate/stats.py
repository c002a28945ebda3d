"""Bootstrap confidence intervals and paired differences, shared by every evaluation.

Why a percentile bootstrap over resampled *units* (scenes, questions) instead of a t-interval:
the statistics here are ratios of means and accuracies of bounded scores, whose sampling
distributions are skewed for small sets; resampling the units is assumption-light and handles
any statistic. A paired comparison resamples the *same* units for both systems, so the shared
per-unit difficulty cancels, which is what makes small differences detectable.

A statistic is a function of column arrays that carry a leading resample axis: it receives
arrays of shape ``[B, n, ...]`` (``B`` resamples of the ``n`` units) and returns ``[B]``. The
point estimate is the same function on the original columns (``B = 1``). ``scipy.stats.
bootstrap`` does the same job, but one vectorised gather per call is ~50x faster for the
thousands of (encoder, factor) intervals an analysis draws, and the index matrix can be shared
across systems, which scipy's API does not expose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "Difference",
    "Estimate",
    "Statistic",
    "bootstrap",
    "bootstrap_ci",
    "bootstrap_indices",
    "mean",
    "paired_bootstrap_diff",
    "paired_difference",
    "pool_replicates",
    "ratio_of_means",
]

Statistic = Callable[..., np.ndarray]


def mean(x: np.ndarray) -> np.ndarray:
    """Mean over units (the last axis), ignoring NaN (units a measurement does not apply to);
    NaN where no unit is left. (``np.nanmean`` does the same at twice the cost.)"""
    x = np.atleast_2d(x)
    missing = np.isnan(x)
    if not missing.any():
        return x.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(missing, 0.0, x).sum(axis=-1) / (~missing).sum(axis=-1)


def ratio_of_means(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``mean(numerator) / mean(denominator)`` over the same resampled units (NaN-aware)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return mean(numerator) / mean(denominator)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile bootstrap interval ``[low, high]`` at ``level``."""

    value: float
    low: float
    high: float
    level: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Difference(Estimate):
    """``a - b`` on the same resampled units. ``significant``: the interval excludes 0;
    ``p`` is the two-sided bootstrap p-value (twice the smaller tail mass at 0)."""

    significant: bool
    p: float


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` unit indices drawn with replacement; pass the same matrix to several
    calls to resample the same units for each (a paired design)."""
    if n < 1:
        raise ValueError("bootstrap needs at least one unit")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _columns(columns: Sequence[np.ndarray]) -> list[np.ndarray]:
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    if not cols:
        raise ValueError("need at least one column")
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        raise ValueError(f"columns differ in length: {[len(c) for c in cols]}")
    return cols


def _evaluate(statistic: Statistic, cols: list[np.ndarray], idx: np.ndarray | None) -> np.ndarray:
    if idx is None:
        return np.asarray(statistic(*(c[None] for c in cols)), dtype=np.float64)
    return np.asarray(statistic(*(c[idx] for c in cols)), dtype=np.float64)


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap(
    *columns: np.ndarray,
    statistic: Statistic = mean,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    indices: np.ndarray | None = None,
) -> Estimate:
    """Percentile bootstrap interval of ``statistic(*columns)``, resampling units (rows).

    ``indices`` (from ``bootstrap_indices``) overrides ``n_boot``/``seed``.
    """
    cols = _columns(columns)
    if len(cols[0]) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), level, 0)
    idx = bootstrap_indices(len(cols[0]), n_boot, seed) if indices is None else indices
    value = float(_evaluate(statistic, cols, None)[0])
    low, high = _interval(_evaluate(statistic, cols, idx), level)
    return Estimate(value, low, high, level, len(cols[0]))


def paired_difference(
    a: Sequence[np.ndarray] | np.ndarray,
    b: Sequence[np.ndarray] | np.ndarray,
    statistic: Statistic = mean,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    indices: np.ndarray | None = None,
) -> Difference:
    """``statistic(*a) - statistic(*b)`` where row ``i`` of ``a`` and of ``b`` is the same unit
    (the same scene or question), with an interval from resampling units jointly.

    ``a`` and ``b`` are one array or a sequence of column arrays each.
    """
    cols_a = _columns([a] if isinstance(a, np.ndarray) else a)
    cols_b = _columns([b] if isinstance(b, np.ndarray) else b)
    n = len(cols_a[0])
    if len(cols_b[0]) != n:
        raise ValueError(f"paired samples differ in length: {n} vs {len(cols_b[0])}")
    if n == 0:
        nan = float("nan")
        return Difference(nan, nan, nan, level, 0, False, nan)
    idx = bootstrap_indices(n, n_boot, seed) if indices is None else indices
    value = float(_evaluate(statistic, cols_a, None)[0] - _evaluate(statistic, cols_b, None)[0])
    diffs = _evaluate(statistic, cols_a, idx) - _evaluate(statistic, cols_b, idx)
    low, high = _interval(diffs, level)
    finite = diffs[np.isfinite(diffs)]
    if finite.size:
        p = float(min(1.0, 2 * min(np.mean(finite <= 0), np.mean(finite >= 0))))
    else:
        p = float("nan")
    significant = bool(np.isfinite(low) and (low > 0 or high < 0))
    return Difference(value, low, high, level, n, significant, p)


def bootstrap_ci(
    values: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of per-unit scores: ``bootstrap`` as a plain tuple."""
    est = bootstrap(np.asarray(values), n_boot=n, seed=seed, level=level)
    return est.value, est.low, est.high


def paired_bootstrap_diff(
    a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), low, high)`` over paired units: ``paired_difference`` as a tuple."""
    diff = paired_difference(np.asarray(a), np.asarray(b), n_boot=n, seed=seed, level=level)
    return diff.value, diff.low, diff.high


def pool_replicates(
    estimates: Sequence[tuple[float, float, float]], level: float = 0.95
) -> tuple[float, float, float]:
    """Pool one quantity measured in ``k`` replicates of a study (training seeds), each as
    ``(value, low, high)`` with its own bootstrap interval over the (shared) test units.

    Returns ``(mean of the values, low, high)``: the mean +- ``sqrt((z * w)**2 + (t * s_b /
    sqrt(k))**2)``. ``w**2``, the mean of the replicates' squared bootstrap standard errors
    (half-width / z), is the test-set sampling error, which replicates scoring the same units
    share, so it does not shrink with ``k``; ``s_b``, the standard deviation of the values
    across replicates, measures the training-seed variance, at Student's ``t`` with ``k - 1``
    degrees of freedom because it is estimated from ``k`` numbers. Identical replicates give
    back an interval as wide as theirs (symmetric); two that disagree give a wide one.
    Needs only each replicate's summary (a hierarchical bootstrap would need every unit).
    """
    rows = np.asarray(estimates, dtype=np.float64).reshape(-1, 3)
    if len(rows) == 0:
        raise ValueError("pool_replicates needs at least one estimate")
    if len(rows) == 1:
        return float(rows[0, 0]), float(rows[0, 1]), float(rows[0, 2])
    k, tail = len(rows), 0.5 + level / 2
    z, t = float(scipy_stats.norm.ppf(tail)), float(scipy_stats.t.ppf(tail, k - 1))
    values = rows[:, 0]
    within = float((((rows[:, 2] - rows[:, 1]) / (2 * z)) ** 2).mean())
    half = float(np.sqrt(z**2 * within + t**2 * values.var(ddof=1) / k))
    centre = float(values.mean())
    return centre, centre - half, centre + half
