"""Uncertainty of the scorecard's statistics: bootstrap intervals over seeds and three-valued verdicts.

A statistic is computed on its independent units (seeds, or (ERM seed, LLR seed) heads) and on every resample
of them with replacement: all n**n ordered resamples when there are few (27 for 3 seeds, so the interval is
exact and the same bits on every build), else DRAWS draws of a seeded generator. `judge` turns an estimate and
a threshold into "supported", "not supported" or "inconclusive" (the interval straddles the threshold); claims
made of several tests combine them with `every` / `at_least`. repro.claims holds the criteria and thresholds.
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np

SUPPORTED, NOT_SUPPORTED, NOT_MEASURABLE = "supported", "not supported", "not measurable in this profile"
INCONCLUSIVE = "inconclusive"
LEVEL = 0.90  # two-sided interval: the 5% and 95% quantiles of the bootstrap distribution
EXACT_MAX, DRAWS, BOOT_SEED = 5000, 2000, 0  # enumerate n**n resamples up to EXACT_MAX, else DRAWS seeded draws


def fmt(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3g}"


@dataclass(frozen=True)
class Estimate:
    """A statistic on all units (point) and its 90% bootstrap interval [lo, hi] (NaN with fewer than 2 units)."""
    point: float
    lo: float
    hi: float
    n: int

    def text(self) -> str:
        if not np.isfinite(self.point):
            return "n/a"
        if not np.isfinite(self.lo):
            return f"{fmt(self.point)} (one run: no interval)"
        return f"{fmt(self.point)} [{fmt(self.lo)}, {fmt(self.hi)}]"


def resamples(n: int) -> np.ndarray:
    """(k, n) unit indices: every ordered resample with replacement when n**n <= EXACT_MAX (each equally
    likely, so the bootstrap distribution is exact), else DRAWS draws of a generator seeded BOOT_SEED."""
    if n ** n <= EXACT_MAX:
        return np.array(list(itertools.product(range(n), repeat=n)), dtype=np.int64)
    return np.random.default_rng(BOOT_SEED).integers(0, n, size=(DRAWS, n))


def estimate(units, stat) -> Estimate:
    """units: (n, ...) one row per independent unit; stat maps a stack (k, n, ...) of resampled units to (k,)
    values. The interval is the 5%-95% quantile range of stat over resamples (inverted CDF), widened to hold the
    point estimate if it does not (a percentile interval of a non-linear statistic can miss it). Resamples on
    which stat is undefined (a constant resample of a correlation) are left out."""
    units = np.asarray(units, dtype=float)
    if len(units) == 0:
        return Estimate(np.nan, np.nan, np.nan, 0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample gives NaN, dropped below
        point = float(stat(units[None])[0])
        if len(units) < 2 or not np.isfinite(point):
            return Estimate(point, np.nan, np.nan, len(units))
        values = np.asarray(stat(units[resamples(len(units))]), dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return Estimate(point, np.nan, np.nan, len(units))
    lo, hi = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], method="inverted_cdf")
    return Estimate(point, min(float(lo), point), max(float(hi), point), len(units))


_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def judge(est: Estimate, op: str, threshold: float) -> str:
    """Verdict of `statistic op threshold`: supported when both ends of the interval satisfy it, not supported
    when neither does, inconclusive when it straddles the threshold or there is no interval."""
    if not np.isfinite(est.point):
        return NOT_MEASURABLE
    if not np.isfinite(est.lo):
        return INCONCLUSIVE
    ends = [bool(_OPS[op](x, threshold)) for x in (est.lo, est.hi)]
    return SUPPORTED if all(ends) else NOT_SUPPORTED if not any(ends) else INCONCLUSIVE


def at_least(k: int, verdicts) -> str:
    """Three-valued 'at least k of these tests hold' over the measurable verdicts (k <= 0: all of them)."""
    vs = [v for v in verdicts if v != NOT_MEASURABLE]
    if not vs:
        return NOT_MEASURABLE
    k = len(vs) if k <= 0 else k
    yes, maybe = vs.count(SUPPORTED), vs.count(INCONCLUSIVE)
    return SUPPORTED if yes >= k else NOT_SUPPORTED if yes + maybe < k else INCONCLUSIVE


def every(verdicts) -> str:
    """Three-valued AND over the measurable verdicts."""
    return at_least(0, verdicts)


def mean(stack):
    """Mean over units (axis 1) of a (k, n) stack of resamples, ignoring NaN."""
    return np.nanmean(stack, axis=1)


def pearson(x, y):
    """Row-wise Pearson r of (k, n) arrays; NaN where either row is constant."""
    xc, yc = x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)
    r = (xc * yc).sum(-1) / np.sqrt((xc ** 2).sum(-1) * (yc ** 2).sum(-1))
    constant = (x.max(-1) == x.min(-1)) | (y.max(-1) == y.min(-1))
    return np.where(constant, np.nan, r)
