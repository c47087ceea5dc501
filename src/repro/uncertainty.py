"""Uncertainty of the scorecard's statistics: Student-t intervals over independent units, and four verdicts.

A statistic is computed on its independent units (seeds; for Table 1, ERM seeds with all their heads) and on
each of the n leave-one-unit-out subsets. Its 90% interval is point +- t(0.95, n - 1) x se, with se the
jackknife standard error (Efron & Tibshirani 1993, ch. 11). For a mean over units the jackknife se is exactly
s / sqrt(n), so the interval is the textbook Student-t interval: exact 90% coverage when the units' values are
normal, whatever n. For any other statistic (a best-of gap, a difference of correlations, a correlation of
seed means) it is the same t interval on that statistic's jackknife se, equal to the t interval wherever the
statistic reduces to a mean over units (a best-of gap whose best configurations stay the same), with
approximately 90% coverage (tests/test_uncertainty.py simulates it with 3
seeds: close to 90% for best-of gaps and a curve's collapse; lower for a correlation near 1, which seed noise
biases down, with the errors on the inconclusive side). A correlation is handled on Fisher's z scale
(arctanh) and mapped back, so that its interval stays within [-1, 1].

`judge` turns an estimate and a threshold into "supported", "not supported" or "inconclusive" (the interval
straddles the threshold, or there is no interval), or "not measurable" (the statistic itself is undefined;
the estimate says why). Claims made of several tests combine them with `every` / `at_least`, where a test
that is not measurable counts as unknown: it can never make a claim supported. repro.claims holds the
criteria and thresholds.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

SUPPORTED, NOT_SUPPORTED, NOT_MEASURABLE = "supported", "not supported", "not measurable in this profile"
INCONCLUSIVE = "inconclusive"
LEVEL = 0.90  # two-sided: t quantile 0.95, so each one-sided verdict errs with probability at most 5%


def fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _inside(est: "Estimate", digits: int) -> bool:
    """Whether, printed to `digits` significant digits, the point shows strictly inside its interval wherever it
    is (so 0.9199 [0.743, 0.9204] is not printed 0.92 [0.743, 0.92], as if the estimate were an end)."""
    lo, point, hi = (float(fmt(x, digits)) for x in (est.lo, est.point, est.hi))
    return (lo < point or est.lo == est.point) and (point < hi or est.point == est.hi)


@dataclass(frozen=True)
class Estimate:
    """A statistic on all units (point), its 90% interval [lo, hi] (NaN with fewer than 2 units or when a
    leave-one-out value is undefined) and, when the point is undefined, why."""
    point: float
    lo: float
    hi: float
    n: int
    why: str = ""

    def text(self) -> str:
        if not np.isfinite(self.point):
            return f"not measurable: {self.why}" if self.why else "n/a"
        if not np.isfinite(self.lo):
            why = "one unit" if self.n < 2 else "undefined without one of the units"
            return f"{fmt(self.point)} (no interval: {why})"
        if self.lo == self.hi:
            return f"{fmt(self.point)} (no spread: the same in every seed)"
        digits = next((d for d in range(3, 9) if _inside(self, d)), 8)
        return f"{fmt(self.point, digits)} [{fmt(self.lo, digits)}, {fmt(self.hi, digits)}]"


def undefined(why: str) -> Estimate:
    """An estimate of a statistic that cannot be computed, with the reason."""
    return Estimate(np.nan, np.nan, np.nan, 0, why)


def leave_one_out(n: int) -> np.ndarray:
    """(n, n - 1) unit indices: row i holds every unit but i."""
    return np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int64).reshape(n, n - 1)


def estimate(units, stat, fisher: bool = False, why: str = "the statistic is undefined on these data") -> Estimate:
    """units: (n, ...) one row per independent unit; stat maps a stack (k, m, ...) of k unit sets to (k,) values.

    Interval: point +- t(0.95, n - 1) x jackknife se; with fisher=True on the z = arctanh(r) scale and mapped
    back with tanh. No interval with one unit, or when stat is undefined without some unit (the jackknife
    needs every leave-one-out value). `why` is the reason shown when the point itself is undefined."""
    units = np.asarray(units, dtype=float)
    n = len(units)
    if n == 0:
        return undefined(why)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN, handled below
        point = float(stat(units[None])[0])
        if not np.isfinite(point):
            return Estimate(point, np.nan, np.nan, n, why)
        if n < 2:
            return Estimate(point, np.nan, np.nan, n)
        values = np.asarray(stat(units[leave_one_out(n)]), dtype=float)
    if not np.isfinite(values).all():
        return Estimate(point, np.nan, np.nan, n)
    to, back = (_z, np.tanh) if fisher else (np.asarray, np.asarray)
    z, zs = to(point), to(values)
    se = np.sqrt((n - 1) / n * ((zs - zs.mean()) ** 2).sum())
    half = stats.t.ppf((1 + LEVEL) / 2, n - 1) * se
    lo, hi = float(back(z - half)), float(back(z + half))
    return Estimate(point, min(lo, point), max(hi, point), n)  # tanh may round the point's own end


def _z(r):
    """Fisher's z, finite at r = +-1 (clipped just inside)."""
    return np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12))


def t_interval(values) -> Estimate:
    """Mean of values (one per unit; NaN dropped) with its 90% Student-t interval."""
    values = np.asarray(values, dtype=float)
    return estimate(values[~np.isnan(values)], mean)


_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def judge(est: Estimate, op: str, threshold: float) -> str:
    """Verdict of `statistic op threshold`: supported when both ends of the interval satisfy it, not supported
    when neither does, inconclusive when it straddles the threshold or there is no interval, not measurable
    when the statistic is undefined."""
    if not np.isfinite(est.point):
        return NOT_MEASURABLE
    if not np.isfinite(est.lo):
        return INCONCLUSIVE
    ends = [bool(_OPS[op](x, threshold)) for x in (est.lo, est.hi)]
    return SUPPORTED if all(ends) else NOT_SUPPORTED if not any(ends) else INCONCLUSIVE


def at_least(k: int, verdicts) -> str:
    """Three-valued 'at least k of these tests hold' (k <= 0: all of them). A test that is not measurable is
    unknown: it counts neither for nor against, so it can keep a claim from being supported or refuted, but
    never decides it; with no measurable test the claim is not measurable."""
    vs = list(verdicts)
    if all(v == NOT_MEASURABLE for v in vs):
        return NOT_MEASURABLE
    k = len(vs) if k <= 0 else k
    yes, no = vs.count(SUPPORTED), vs.count(NOT_SUPPORTED)
    return SUPPORTED if yes >= k else NOT_SUPPORTED if len(vs) - no < k else INCONCLUSIVE


def every(verdicts) -> str:
    """Three-valued AND: supported only when every test is, not supported when one is not."""
    return at_least(0, verdicts)


def mean(stack):
    """Mean over units (axis 1) of a (k, n) stack, ignoring NaN."""
    return np.nanmean(stack, axis=1)


def pearson(x, y):
    """Row-wise Pearson r over the last axis of equal-shape arrays, pairs with a NaN left out; NaN where
    fewer than 2 pairs remain or either side is constant (the rules of repro.metrics.pearson)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    count = ok.sum(-1, keepdims=True)
    xc = np.where(ok, x - np.where(ok, x, 0).sum(-1, keepdims=True) / np.maximum(count, 1), 0)
    yc = np.where(ok, y - np.where(ok, y, 0).sum(-1, keepdims=True) / np.maximum(count, 1), 0)
    sxx, syy = (xc ** 2).sum(-1), (yc ** 2).sum(-1)
    constant = ~((np.where(ok, x, -np.inf).max(-1) > np.where(ok, x, np.inf).min(-1))
                 & (np.where(ok, y, -np.inf).max(-1) > np.where(ok, y, np.inf).min(-1)))
    with np.errstate(all="ignore"):
        r = np.clip((xc * yc).sum(-1) / np.sqrt(sxx * syy), -1.0, 1.0)
    return np.where(constant | (count[..., 0] < 2), np.nan, r)
