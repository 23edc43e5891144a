"""ragdistill.evaluation.statistics against hand-computed and brute-force references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ragdistill.evaluation.statistics import (
    HURTS,
    IMPROVES,
    NO_CHANGE,
    format_difference,
    mcnemar,
    mean_se,
    outcome_word,
    paired_bootstrap,
    unpaired_bootstrap,
)


def _exact_mcnemar_p(n10: int, n01: int) -> float:
    """Two-sided exact p by enumeration: P(X with prob <= P(observed)) under Binomial(m, 1/2)."""
    m = n10 + n01
    probs = [math.comb(m, k) / 2**m for k in range(m + 1)]
    obs = probs[n10]
    return min(1.0, sum(p for p in probs if p <= obs * (1 + 1e-7)))


def _pairs(n11, n10, n01, n00):
    a = [1] * n11 + [1] * n10 + [0] * n01 + [0] * n00
    b = [1] * n11 + [0] * n10 + [1] * n01 + [0] * n00
    return a, b


@pytest.mark.parametrize("table", [(5, 7, 1, 3), (10, 2, 2, 6), (0, 9, 0, 1), (3, 1, 6, 0), (20, 12, 5, 3)])
def test_mcnemar_p_value_matches_enumeration(table):
    n11, n10, n01, n00 = table
    a, b = _pairs(*table)
    d = mcnemar(a, b)
    assert d.discordant == (n10, n01)
    assert d.n == sum(table)
    assert d.estimate == pytest.approx((n10 - n01) / sum(table))
    assert d.p_value == pytest.approx(_exact_mcnemar_p(n10, n01), rel=1e-9)
    assert d.low <= d.estimate <= d.high


def test_mcnemar_hand_table_and_outcome():
    # 7 vs 1 discordant: p = 2 * (1 + 8) / 256 = 0.0703125 -> the interval includes 0
    d = mcnemar(*_pairs(5, 7, 1, 3))
    assert d.p_value == pytest.approx(18 / 256)
    assert d.low < 0 < d.high and d.outcome == NO_CHANGE
    # 9 vs 0: p = 2 / 512 -> improves; reversed -> hurts
    up = mcnemar(*_pairs(0, 9, 0, 1))
    assert up.p_value == pytest.approx(2 / 512) and up.outcome == IMPROVES and up.low > 0
    assert mcnemar(*_pairs(0, 0, 9, 1)).outcome == HURTS


def test_mcnemar_interval_is_the_exact_conditional_one():
    # m discordant, n items: ends = m/n * (2 * Clopper-Pearson(n10, m) - 1), brute-forced by bisection on the binomial tails
    from scipy.stats import binom

    n10, n01, n = 8, 3, 30
    a, b = _pairs(n - n10 - n01 - 4, n10, n01, 4)
    d = mcnemar(a, b)
    m = n10 + n01
    grid = np.linspace(0, 1, 200001)
    lo = grid[np.argmax(binom.sf(n10 - 1, m, grid) >= 0.025)]  # smallest p with P(X >= n10) >= 2.5 %
    hi = grid[::-1][np.argmax(binom.cdf(n10, m, grid[::-1]) >= 0.025)]  # largest p with P(X <= n10) >= 2.5 %
    assert d.low == pytest.approx(m / n * (2 * lo - 1), abs=1e-4)
    assert d.high == pytest.approx(m / n * (2 * hi - 1), abs=1e-4)


def test_mcnemar_without_discordant_pairs_is_a_point_at_zero():
    d = mcnemar([1, 0, 1], [1, 0, 1])
    assert (d.estimate, d.low, d.high, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert d.outcome == NO_CHANGE
    assert mcnemar([], []) is None
    with pytest.raises(ValueError):
        mcnemar([1, 0], [1])


def test_bootstrap_of_a_constant_difference_is_a_point():
    a = [0.7, 0.2, 0.9, 0.4]
    b = [x - 0.25 for x in a]
    d = paired_bootstrap(a, b, resamples=500)
    assert d.estimate == pytest.approx(0.25)
    assert d.low == pytest.approx(0.25) and d.high == pytest.approx(0.25)
    assert d.outcome == IMPROVES and d.half_width == pytest.approx(0, abs=1e-12)


def test_bootstrap_is_seeded_and_repeatable():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.1, 1, 60), rng.normal(0, 1, 60)
    d1, d2 = paired_bootstrap(a, b, seed=3), paired_bootstrap(a, b, seed=3)
    assert (d1.low, d1.high) == (d2.low, d2.high)
    d3 = paired_bootstrap(a, b, seed=4)
    assert (d3.low, d3.high) != (d1.low, d1.high)
    assert d1.resamples == 10_000 and d1.seed == 3 and d1.method == "paired bootstrap"


def test_bootstrap_interval_shrinks_with_n_and_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    widths = []
    for n in (25, 100, 400):
        d = rng.normal(0.0, 1.0, n)
        r = paired_bootstrap(d, np.zeros(n), resamples=4000)
        widths.append(r.half_width)
        se = d.std(ddof=1) / math.sqrt(n)
        assert r.half_width == pytest.approx(1.96 * se, rel=0.15)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_by_brute_force_on_a_tiny_sample():
    # n = 3: all 27 resamples are equally likely; the bootstrap distribution of the mean must approach them
    d = np.array([0.0, 1.0, 5.0])
    exact = sorted(np.mean(c) for c in itertools.product(d, repeat=3))
    r = paired_bootstrap(d, np.zeros(3), resamples=20000, seed=0)
    assert r.low == pytest.approx(np.percentile(np.repeat(exact, 1000), 2.5), abs=0.35)
    assert r.high == pytest.approx(np.percentile(np.repeat(exact, 1000), 97.5), abs=0.35)


def test_unpaired_bootstrap():
    a, b = [1.0] * 10, [0.0, 0.0, 0.0, 0.0, 0.0]
    d = unpaired_bootstrap(a, b, resamples=300)
    assert (d.estimate, d.low, d.high, d.n, d.n_b) == (1.0, 1.0, 1.0, 10, 5)
    assert d.method == "unpaired bootstrap"
    assert unpaired_bootstrap([], [1.0]) is None
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 1, 80), rng.normal(0, 1, 80)
    u = unpaired_bootstrap(x, y, resamples=4000)
    se = math.sqrt(x.var(ddof=1) / 80 + y.var(ddof=1) / 80)
    assert u.half_width == pytest.approx(1.96 * se, rel=0.15)


def test_mean_se_and_outcome_word():
    m, se, n = mean_se([1.0, 2.0, 3.0, 4.0])
    assert (m, n) == (2.5, 4) and se == pytest.approx(math.sqrt(5 / 3) / 2)
    assert mean_se([]) == (None, None, 0)
    assert mean_se([2.0]) == (2.0, None, 1)
    assert outcome_word(0.1, 0.3) == IMPROVES
    assert outcome_word(-0.3, -0.1) == HURTS
    assert outcome_word(-0.1, 0.3) == NO_CHANGE
    assert outcome_word(0.0, 0.0) == NO_CHANGE
    assert outcome_word(0.1, 0.3, higher_is_better=False) == HURTS
    assert outcome_word(None, 0.1) is None


def test_format_and_to_dict():
    d = mcnemar(*_pairs(0, 9, 0, 1))
    assert format_difference(d).startswith("+90.0 [")
    assert format_difference(None) == "–"
    js = d.to_dict()
    assert js["outcome"] == IMPROVES and js["discordant"] == [9, 0] and js["method"] == "exact McNemar"
