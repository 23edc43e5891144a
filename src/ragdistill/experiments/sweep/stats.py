"""The numbers of `ragdistill validate-indicators` that need no model: predictors, correlations, decision record.

Everything here works on plain arrays (per-instance inputs, per-question hits), so the tests
check it on hand-made fixtures:

* :func:`ranking_skill` — share of instances whose top-S passage contains the answer minus the
  share whose top-retrieved passage (rank 1 of the initial retriever) does;
* :func:`position_shares` / :func:`position_bias` — the share of S on each prompt position,
  averaged over instances, and its total-variation distance from uniform (0 = no position bias);
* :func:`indicator_correlations` — across teachers, Spearman's ρ between each input (an
  indicator input or a predictor) and ΔHR@5, with a bootstrap interval that resamples the
  test questions of the step-2 evaluations, the analysed instances, and the teachers;
* :func:`decision_record` — how often each advice of the indicators (analysis/indicators.py)
  matched the outcome step 2 observed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ragdistill.analysis.indicators import DISTIL, FINE_TUNE, NO_BENEFIT
from ragdistill.evaluation.statistics import HURTS, IMPROVES, NO_CHANGE

ADVICES = (DISTIL, FINE_TUNE, NO_BENEFIT)
OUTCOME_WORDS = (IMPROVES, NO_CHANGE, HURTS)
# what each advice predicts of distilling from the reader as it is (step 2 run from it now)
EXPECTED = {DISTIL: (IMPROVES,), FINE_TUNE: (NO_CHANGE, HURTS), NO_BENEFIT: (NO_CHANGE, HURTS)}


# --------------------------------------------------------------------------- predictors


def score_shares(scores: Sequence[float]) -> np.ndarray:
    """S as shares summing to one: S / ΣS when S ≥ 0 (attention), softmax(S) otherwise (log-likelihoods)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    if np.all(s >= 0):
        tot = s.sum()
        return s / tot if tot > 0 else np.full(s.size, 1.0 / s.size)
    e = np.exp(s - s.max())
    return e / e.sum()


def ranking_skill_items(scores: Sequence[Sequence[float]], passage_hits: Sequence[Sequence[bool]]) -> np.ndarray:
    """Per instance: hit(top-S passage) − hit(top-retrieved passage) ∈ {−1, 0, 1}.

    ``passage_hits[i][j]`` says whether instance i's j-th retrieved passage contains the answer
    (j = 0 is the initial retriever's rank 1). Ties in S go to the earlier passage.
    """
    out = []
    for s, h in zip(scores, passage_hits):
        if len(s) == 0:
            out.append(0.0)
            continue
        out.append(float(bool(h[int(np.argmax(np.asarray(s, dtype=np.float64)))])) - float(bool(h[0])))
    return np.asarray(out, dtype=np.float64)


def ranking_skill(scores: Sequence[Sequence[float]], passage_hits: Sequence[Sequence[bool]]) -> float:
    """Share of instances whose top-S passage holds the answer minus the share whose top-retrieved one does."""
    items = ranking_skill_items(scores, passage_hits)
    return float(items.mean()) if items.size else float("nan")


def position_share_items(scores: Sequence[Sequence[float]]) -> np.ndarray:
    """[instances, K]: each instance's share of S on each prompt position (:func:`score_shares`)."""
    return np.asarray([score_shares(s) for s in scores], dtype=np.float64)


def position_shares(scores: Sequence[Sequence[float]]) -> np.ndarray:
    """The share of S on each prompt position, averaged over instances."""
    return position_share_items(scores).mean(axis=0)


def tv_from_uniform(shares: np.ndarray) -> float:
    shares = np.asarray(shares, dtype=np.float64)
    return float(0.5 * np.abs(shares - 1.0 / shares.size).sum())


def position_bias(scores: Sequence[Sequence[float]]) -> float:
    """Total-variation distance of the mean position shares from uniform: 0 = none, (K−1)/K = all on one position."""
    return tv_from_uniform(position_shares(scores))


# --------------------------------------------------------------------------- correlations


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ (average ranks for ties); nan when fewer than 3 pairs or either side is constant."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def reduce_input(values: np.ndarray, rows: np.ndarray | None = None) -> float:
    """One teacher's value of an input from its per-instance values (optionally a resample of the rows):
    the mean over defined instances (1-D), or the position bias of the mean shares (2-D, [instances, K])."""
    v = np.asarray(values, dtype=np.float64)
    if rows is not None:
        v = v[rows]
    if v.ndim == 2:
        if v.shape[0] == 0:
            return float("nan")
        return tv_from_uniform(v.mean(axis=0))
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _as_array(values: Sequence[Any]) -> np.ndarray:
    arr = (
        np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        if (len(values) and not isinstance(values[0], (list, tuple, np.ndarray)))
        else np.asarray(values, dtype=np.float64)
    )
    return arr


def indicator_correlations(
    inputs: Mapping[str, Mapping[str, Sequence[Any]]],
    hits: Mapping[str, Sequence[bool]],
    baseline: Sequence[bool],
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Across teachers: Spearman ρ between each input and ΔHR@5, with a bootstrap interval.

    ``inputs[teacher][input]`` holds the per-instance values on the analysed instances (the
    same instances, in the same order, for every teacher; None = undefined); ``hits[teacher]``
    the per-question HR@5 hits of its step-2 retriever and ``baseline`` the initial retriever's
    on the same questions, in the same order. Each resample draws the questions (one draw shared by
    every teacher, so the differences stay paired), the instances (likewise shared) and the teachers,
    each with replacement, and recomputes every teacher's input and ΔHR@5 and their ρ; resamples
    where ρ is undefined (a constant side) are left out and counted.
    """
    teachers = [t for t in inputs if t in hits]
    base = np.asarray(baseline, dtype=np.float64)
    hit = {t: np.asarray(hits[t], dtype=np.float64) for t in teachers}
    for t in teachers:
        if hit[t].size != base.size:
            raise ValueError(f"teacher {t!r}: {hit[t].size} step-2 hits for {base.size} baseline questions")
    names: list[str] = []
    for t in teachers:
        names += [n for n in inputs[t] if n not in names]
    arrays = {t: {n: _as_array(inputs[t][n]) for n in inputs[t]} for t in teachers}
    n_inst = max((len(a) for t in teachers for a in arrays[t].values()), default=0)
    delta = np.asarray([hit[t].mean() - base.mean() for t in teachers]) if base.size else np.full(len(teachers), np.nan)
    out: dict[str, dict[str, Any]] = {}
    rng = np.random.default_rng(seed)
    nq, nt = base.size, len(teachers)
    draws = []
    for _ in range(resamples):
        qi = rng.integers(0, nq, nq) if nq else np.zeros(0, dtype=int)
        ii = rng.integers(0, n_inst, n_inst) if n_inst else np.zeros(0, dtype=int)
        ti = rng.integers(0, nt, nt) if nt else np.zeros(0, dtype=int)
        draws.append((qi, ii, ti))
    for name in names:
        have = [t for t in teachers if name in arrays[t]]
        idx = [teachers.index(t) for t in have]
        x = np.asarray([reduce_input(arrays[t][name]) for t in have])
        rho = spearman(x, delta[idx])
        boots = []
        for qi, ii, ti in draws:
            sel = [j for j in ti if teachers[j] in have]
            if len(sel) < 3:
                continue
            xb = [reduce_input(arrays[teachers[j]][name], ii) for j in sel]
            yb = [hit[teachers[j]][qi].mean() - base[qi].mean() for j in sel]
            r = spearman(xb, yb)
            if math.isfinite(r):
                boots.append(r)
        alpha = (1 - confidence) / 2
        lo, hi = (
            (float(np.percentile(boots, 100 * alpha)), float(np.percentile(boots, 100 * (1 - alpha))))
            if boots
            else (None, None)
        )
        out[name] = {
            "rho": None if not math.isfinite(rho) else rho,
            "low": lo,
            "high": hi,
            "n_teachers": len(have),
            "n_resamples": resamples,
            "n_defined_resamples": len(boots),
            "confidence": confidence,
            "seed": seed,
            "values": {t: (None if not math.isfinite(v) else float(v)) for t, v in zip(have, x)},
        }
    return out


# --------------------------------------------------------------------------- decision record


def advice_matches(advice: str | None, outcome: str | None) -> bool | None:
    """Did the advice foresee the observed outcome of distilling from this reader as it is? (None: unknown)"""
    if advice not in EXPECTED or outcome not in OUTCOME_WORDS:
        return None
    return outcome in EXPECTED[advice]


def decision_record(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How often each advice matched the observed outcome: rows carry 'teacher', 'advice' and 'outcome'.

    Returns the advice × outcome table, per-advice matched counts and the overall share matched.
    """
    table = {a: {o: 0 for o in OUTCOME_WORDS} for a in ADVICES}
    per = {a: {"n": 0, "matched": 0} for a in ADVICES}
    matched = total = 0
    detail = []
    for r in rows:
        a, o = r.get("advice"), r.get("outcome")
        m = advice_matches(a, o)
        detail.append({"teacher": r.get("teacher"), "advice": a, "outcome": o, "matched": m})
        if m is None:
            continue
        table[a][o] += 1
        per[a]["n"] += 1
        per[a]["matched"] += int(m)
        total += 1
        matched += int(m)
    return {
        "table": table,
        "per_advice": per,
        "n": total,
        "matched": matched,
        "share_matched": (matched / total) if total else None,
        "rows": detail,
        "rule": {a: list(v) for a, v in EXPECTED.items()},
    }


__all__ = [
    "ADVICES",
    "EXPECTED",
    "OUTCOME_WORDS",
    "advice_matches",
    "decision_record",
    "indicator_correlations",
    "position_bias",
    "position_share_items",
    "position_shares",
    "ranking_skill",
    "ranking_skill_items",
    "reduce_input",
    "score_shares",
    "spearman",
    "tv_from_uniform",
]
