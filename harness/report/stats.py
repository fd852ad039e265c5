"""Paired comparisons over seeds: the delta of two settings and its 95% t-interval
(docs/protocol.md §Comparisons over seeds).

Two settings trained with the same seeds differ by the method alone (the engine starts every
method from the baseline's student for a seed), so their per-seed differences are the paired
sample. The interval is Student's t over those differences, ``mean +- t(0.975, n-1) * s/sqrt(n)``;
with fewer than two seeds it is undefined (NaN bounds).
"""
from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

VERDICTS = ("supported", "contradicted", "inconclusive")
MIN_SEEDS = 3  # fewer seeds than this never decide a claim


def _t_density(x: float, df: int) -> float:
    log_norm = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2)
                - 0.5 * math.log(df * math.pi))
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))


def _t_mass(x: float, df: int, steps: int = 2000) -> float:
    """P(0 <= T <= x) for Student's t with ``df`` degrees of freedom (Simpson's rule)."""
    h = x / steps
    total = _t_density(0.0, df) + _t_density(x, df)
    total += sum((4 if i % 2 else 2) * _t_density(i * h, df) for i in range(1, steps))
    return total * h / 3


@functools.lru_cache(maxsize=64)
def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided ``level`` quantile of Student's t, ``t(1 - (1 - level)/2, df)``."""
    if df < 1:
        raise ValueError(f"t_quantile needs df >= 1, got {df}")
    lo, hi = 0.0, 1.0
    while _t_mass(hi, df) < level / 2:
        hi *= 2
    for _ in range(60):  # bisection to well below 1e-9
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_mass(mid, df) < level / 2 else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` paired differences and its 95% interval (NaN bounds when n < 2)."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.lo > 0 or self.hi < 0)


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    """Mean and two-sided t-interval of ``values`` (NaN mean when empty)."""
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = t_quantile(n - 1, level) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def paired_differences(own: Mapping[int, float], ref: Mapping[int, float]) -> list[float]:
    """``own[s] - ref[s]`` for the seeds both have, in seed order."""
    return [own[s] - ref[s] for s in sorted(own.keys() & ref.keys())]


def paired_interval(own: Mapping[int, float], ref: Mapping[int, float]) -> Interval:
    """The delta ``own - ref`` over the seeds both have (seed -> mIoU maps)."""
    return t_interval(paired_differences(own, ref))


def verdict(interval: Interval, threshold: float = 0.0, min_seeds: int = MIN_SEEDS) -> str:
    """supported: the interval lies above ``threshold``; contradicted: below it; otherwise,
    or with fewer than ``min_seeds`` seeds, inconclusive."""
    if interval.n < min_seeds or math.isnan(interval.lo):
        return "inconclusive"
    if interval.lo > threshold:
        return "supported"
    if interval.hi < threshold:
        return "contradicted"
    return "inconclusive"
