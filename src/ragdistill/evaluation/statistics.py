"""Telling a change from noise (METHOD.md §7): paired differences with 95 % intervals and an outcome word.

Every difference between two settings is computed over the *same* items (test questions,
analysis instances) where it can be, and carries its interval, its n and an outcome read off
the interval:

* ``paired_bootstrap(a, b)`` — mean(a − b) over paired items; percentile interval of the mean
  difference over ``resamples`` (10,000) resamples of the items, with a fixed seed (the same
  inputs give the same interval on every machine);
* ``unpaired_bootstrap(a, b)`` — mean(a) − mean(b) when the items are not the same (each sample
  resampled on its own);
* ``mcnemar(a, b)`` — paired binary outcomes (a hit, an exact match): the exact McNemar test
  (a two-sided binomial test on the discordant pairs, ``scipy.stats.binomtest``) and an interval
  for the difference in rates, (n₁₀ − n₀₁)/n: the exact (Clopper–Pearson) interval of
  π = n₁₀/(n₁₀ + n₀₁) among the discordant pairs, mapped to (n₁₀ + n₀₁)/n · (2π − 1) — the
  conditional interval that goes with the exact test;
* ``mean_se(values)`` — a mean with its standard error (sample std, ddof = 1, over √n);
* ``outcome_word(low, high)`` — "improves" when the interval lies above 0, "hurts" when it lies
  below 0, otherwise "no detectable change" (for a measure where lower is better, pass
  ``higher_is_better=False``).

Lives in ``evaluation`` so that ``analysis`` and ``experiments`` can both import it (it imports
nothing of the project).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

IMPROVES = "improves"
HURTS = "hurts"
NO_CHANGE = "no detectable change"
OUTCOMES = (IMPROVES, HURTS, NO_CHANGE)

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
_CHUNK_ELEMENTS = 4_000_000  # resample indices drawn per chunk (bounded memory for large n)


def outcome_word(low: float | None, high: float | None, higher_is_better: bool = True) -> str | None:
    """The outcome an interval supports: improves / hurts / no detectable change (None: no interval)."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return None
    if low > 0:
        return IMPROVES if higher_is_better else HURTS
    if high < 0:
        return HURTS if higher_is_better else IMPROVES
    return NO_CHANGE


@dataclass(frozen=True)
class Difference:
    """A difference a − b with its interval."""

    estimate: float  # mean(a − b) (paired) or mean(a) − mean(b)
    low: float  # lower end of the interval
    high: float  # upper end
    n: int  # paired items (unpaired: the items of a)
    method: str  # "paired bootstrap" | "unpaired bootstrap" | "exact McNemar"
    confidence: float = DEFAULT_CONFIDENCE
    n_b: int | None = None  # unpaired: the items of b
    p_value: float | None = None  # McNemar's exact two-sided p-value
    discordant: tuple[int, int] | None = None  # McNemar: (n10 a-only, n01 b-only)
    resamples: int | None = None
    seed: int | None = None
    higher_is_better: bool = True

    @property
    def outcome(self) -> str:
        return outcome_word(self.low, self.high, self.higher_is_better) or NO_CHANGE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outcome"] = self.outcome
        d["half_width"] = self.half_width
        if d["discordant"] is not None:
            d["discordant"] = list(d["discordant"])
        return d


def _array(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds a non-finite value")
    return arr


def mean_se(values: Sequence[float]) -> tuple[float | None, float | None, int]:
    """(mean, standard error = sample std (ddof 1) / √n, n); the SE is None below two values."""
    arr = _array(values, "values")
    n = int(arr.size)
    if n == 0:
        return None, None, 0
    mean = float(arr.mean())
    if n < 2:
        return mean, None, n
    return mean, float(arr.std(ddof=1) / math.sqrt(n)), n


def _check(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie in (0, 1)")


def _bootstrap_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` resamples (with replacement) of x, drawn in bounded-memory chunks."""
    n = x.size
    out = np.empty(resamples, dtype=np.float64)
    per = max(1, _CHUNK_ELEMENTS // max(1, n))
    for start in range(0, resamples, per):
        m = min(per, resamples - start)
        idx = rng.integers(0, n, size=(m, n))
        out[start : start + m] = x[idx].mean(axis=1)
    return out


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    lo, hi = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    higher_is_better: bool = True,
) -> Difference | None:
    """mean(a − b) over paired items with a percentile bootstrap interval (None without items)."""
    _check(resamples, confidence)
    x, y = _array(a, "a"), _array(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired samples differ in length ({x.size} vs {y.size})")
    if x.size == 0:
        return None
    d = x - y
    means = _bootstrap_means(d, resamples, np.random.default_rng(seed))
    lo, hi = _percentiles(means, confidence)
    est = float(d.mean())
    return Difference(
        est,
        min(lo, est),
        max(hi, est),
        int(d.size),
        "paired bootstrap",
        confidence,
        resamples=resamples,
        seed=seed,
        higher_is_better=higher_is_better,
    )


def unpaired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    higher_is_better: bool = True,
) -> Difference | None:
    """mean(a) − mean(b) of two independent samples, each resampled on its own (None if one is empty)."""
    _check(resamples, confidence)
    x, y = _array(a, "a"), _array(b, "b")
    if x.size == 0 or y.size == 0:
        return None
    rng = np.random.default_rng(seed)
    diffs = _bootstrap_means(x, resamples, rng) - _bootstrap_means(y, resamples, rng)
    lo, hi = _percentiles(diffs, confidence)
    est = float(x.mean() - y.mean())
    return Difference(
        est,
        min(lo, est),
        max(hi, est),
        int(x.size),
        "unpaired bootstrap",
        confidence,
        n_b=int(y.size),
        resamples=resamples,
        seed=seed,
        higher_is_better=higher_is_better,
    )


def mcnemar(
    a: Sequence[bool], b: Sequence[bool], confidence: float = DEFAULT_CONFIDENCE, higher_is_better: bool = True
) -> Difference | None:
    """Paired binary outcomes: rate(a) − rate(b), the exact McNemar p-value and its interval (None without items).

    With no discordant pair the difference is 0 with the point interval [0, 0] and p = 1.
    """
    from scipy.stats import binomtest

    _check(1, confidence)
    x = np.asarray(a, dtype=bool).reshape(-1)
    y = np.asarray(b, dtype=bool).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"paired samples differ in length ({x.size} vs {y.size})")
    n = int(x.size)
    if n == 0:
        return None
    n10 = int(np.sum(x & ~y))
    n01 = int(np.sum(~x & y))
    m = n10 + n01
    est = (n10 - n01) / n
    if m == 0:
        return Difference(
            0.0,
            0.0,
            0.0,
            n,
            "exact McNemar",
            confidence,
            p_value=1.0,
            discordant=(0, 0),
            higher_is_better=higher_is_better,
        )
    res = binomtest(n10, m, 0.5, alternative="two-sided")
    ci = res.proportion_ci(confidence_level=confidence, method="exact")
    scale = m / n
    lo, hi = scale * (2 * ci.low - 1), scale * (2 * ci.high - 1)
    return Difference(
        float(est),
        float(min(lo, est)),
        float(max(hi, est)),
        n,
        "exact McNemar",
        confidence,
        p_value=float(min(1.0, res.pvalue)),
        discordant=(n10, n01),
        higher_is_better=higher_is_better,
    )


def paired_items(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The item ids present in both mappings, in a's order (what a paired difference runs over)."""
    return [k for k in a if k in b]


def format_difference(d: Difference | None, scale: float = 100.0, digits: int = 1, signed: bool = True) -> str:
    """'+2.5 [−1.0, +6.0]' (the estimate and its interval, times `scale`), or '–'."""
    if d is None:
        return "–"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{fmt.format(scale * d.estimate)} [{fmt.format(scale * d.low)}, {fmt.format(scale * d.high)}]"


__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "Difference",
    "HURTS",
    "IMPROVES",
    "NO_CHANGE",
    "OUTCOMES",
    "format_difference",
    "mcnemar",
    "mean_se",
    "outcome_word",
    "paired_bootstrap",
    "paired_items",
    "unpaired_bootstrap",
]
