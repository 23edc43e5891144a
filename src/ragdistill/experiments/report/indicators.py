"""Table 2's indicators: intervals on the indicator differences, the verdict lines, and Table 2b (controlled view)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragdistill.evaluation.statistics import Difference
from ragdistill.experiments.report.format import _holds, _row_label

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"


def _instance_values(
    a: dict[str, Any], group: str, p: int, quantity: str
) -> tuple[list[str | None], list[float | None]]:
    keys, vals = [], []
    for key, m in zip(a.get("keys") or [None] * len(a["measures"]), a["measures"]):
        g = m.groups.get(group)
        v = None
        if g is not None and not g.skipped and p in g.by_percentile:
            v = getattr(g.by_percentile[p], quantity)
        keys.append(key)
        vals.append(None if v is None else float(v))
    return keys, vals


def indicator_difference(
    a: dict[str, Any], ref: dict[str, Any], group: str, p: int, quantity: str, seed: int = 0, pair_by: str = "instance"
) -> Difference | None:
    """reader − reference of a per-instance measure's mean ("mean_attention", "lift", "spearman"): paired over the
    instances both readers were analysed on (same question, same passages), otherwise an unpaired bootstrap.

    ``pair_by="question"``: paired over the questions both analysed, whatever passages each retriever gave them (the
    own-retriever view, where a trained retriever retrieves other passages for the same sampled questions).
    """
    from ragdistill.evaluation.statistics import paired_bootstrap, unpaired_bootstrap

    ka, va = _instance_values(a, group, p, quantity)
    kb, vb = _instance_values(ref, group, p, quantity)
    if pair_by == "question":
        ka = [None if k is None else k.split("|", 1)[0] for k in ka]
        kb = [None if k is None else k.split("|", 1)[0] for k in kb]
    if (
        ka
        and kb
        and None not in ka
        and None not in kb
        and len(set(ka)) == len(ka)
        and len(set(kb)) == len(kb)
        and set(ka) & set(kb)
    ):
        other = dict(zip(kb, vb))
        pairs = [(x, other[k]) for k, x in zip(ka, va) if k in other and x is not None and other[k] is not None]
        if not pairs:
            return None
        return paired_bootstrap([x for x, _ in pairs], [y for _, y in pairs], seed=seed)
    return unpaired_bootstrap([x for x in va if x is not None], [y for y in vb if y is not None], seed=seed)


def threshold_difference(a: dict[str, Any], group: str, p: int, threshold: float, seed: int = 0) -> Difference | None:
    """mean Spearman − threshold (Indicator 2's absolute rule) with a bootstrap interval over the instances."""
    from ragdistill.evaluation.statistics import paired_bootstrap

    vals = [x for x in _instance_values(a, group, p, "spearman")[1] if x is not None]
    return paired_bootstrap(vals, [threshold] * len(vals), seed=seed) if vals else None


def interval_status(parts: Sequence[Difference | None]) -> str | None:
    """An indicator by its intervals: holds when every part improves, fails when one hurts, else undecided."""
    if any(d is None for d in parts):
        return None
    outs = [d.outcome for d in parts]
    if all(o == "improves" for o in outs):
        return HOLDS
    if any(o == "hurts" for o in outs):
        return FAILS
    return UNDECIDED


def indicator_intervals(
    a: dict[str, Any],
    ref: dict[str, Any],
    percentile: int,
    measure: str,
    corr_threshold: float,
    pair_by: str = "instance",
) -> dict[str, Any]:
    """The intervals behind a verdict: Δ mean attention, Δ lift and Δ Spearman per group, ρ_Q − threshold, statuses."""
    from ragdistill.analysis.quality import GROUPS

    quantity = {"mean": "mean_attention", "lift": "lift"}[measure]
    out: dict[str, Any] = {"percentile": percentile, "measure": measure, "paired_by": pair_by}
    for g in GROUPS:
        out[g] = {
            q: indicator_difference(a, ref, g, percentile, q, pair_by=pair_by)
            for q in ("mean_attention", "lift", "spearman")
        }
    out["question"]["spearman_minus_threshold"] = threshold_difference(a, "question", percentile, corr_threshold)
    out["indicator1"] = interval_status([out["answer"][quantity], out["answer"]["spearman"]])
    out["indicator2"] = interval_status([out["question"][quantity], out["question"]["spearman_minus_threshold"]])
    return out


def _public_intervals(iv: dict[str, Any] | None) -> dict[str, Any] | None:
    if iv is None:
        return None
    out = {k: v for k, v in iv.items() if not isinstance(v, dict)}
    for g in ("answer", "question"):
        out[g] = {q: (d.to_dict() if d is not None else None) for q, d in iv[g].items()}
    return out


def verdict_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        v = r["verdict"]
        if v is None:
            continue
        if not v.get("compared_to_reference"):
            ab = v["absolute"]
            out.append(
                f"- **{r['number']} {r['name']}** ({r['signal']}, reference row): comparisons undefined; "
                f"on its own numbers — answer-related Spearman > {v['corr_threshold']}: "
                f"{_holds(ab['answer']['spearman_above_threshold'])}, lift > 1: {_holds(ab['answer']['lift_above_uniform'])}; "
                f"question-related Spearman > {v['corr_threshold']}: {_holds(ab['question']['spearman_above_threshold'])}, "
                f"lift > 1: {_holds(ab['question']['lift_above_uniform'])}. Advice: *{v['advice']}*."
            )
            continue
        i1, i2 = v["indicator1"], v["indicator2"]
        iv = r.get("intervals") or {}
        mq = "mean_attention" if v["attention_measure"] == "mean" else "lift"
        other = "lift" if mq == "mean_attention" else "mean_attention"
        name = {"mean_attention": "mean attention", "lift": "lift"}
        head = (
            f"- **{r['number']} {r['name']}** vs {r['reference']} ({r['signal']}, p{v['percentile']}; decided by the "
            f"{v['decided_by']}"
            + (
                ", the study's measure: every reader scored the same instances with the same "
                "prompt budget; the lift beside it"
                if v["attention_measure"] == "mean"
                else ""
            )
            + "): "
        )
        parts = []
        for label, ind, g in (("Indicator 1", i1, "answer"), ("Indicator 2", i2, "question")):
            gi = iv.get(g) or {}
            txt = (
                f"{label} {_holds(ind['holds'])}"
                + (f" (by the intervals: {iv['indicator' + label[-1]]})" if iv.get("indicator" + label[-1]) else "")
                + f" — {name[mq]} {_num(ind.get(mq))} vs {_num(ind.get('reference_' + mq))}{_iv(gi.get(mq))}; "
                f"{name[other]} {_num(ind.get(other))} vs {_num(ind.get('reference_' + other))}{_iv(gi.get(other))}; "
            )
            if g == "answer":
                txt += f"Spearman {_num(ind['spearman'])} vs {_num(ind['reference_spearman'])}{_iv(gi.get('spearman'))}"
            else:
                txt += (
                    f"Spearman {_num(ind['spearman'])} vs > {v['corr_threshold']}"
                    f"{_iv(gi.get('spearman_minus_threshold'), 'ρ − threshold')}"
                )
            parts.append(txt)
        out.append(head + "; ".join(parts) + f". Advice: *{v['advice']}* — {v['advice_reason']}.")
    return out


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3g}" if abs(x) < 0.01 and x != 0 else f"{x:.3f}"


def _iv(d: Difference | None, what: str = "Δ") -> str:
    """' (Δ +0.01 [−0.00, +0.02], n=40 paired: no detectable change)' for an indicator difference."""
    if d is None:
        return ""
    f = lambda x: f"{x:+.3g}"  # noqa: E731
    n = f"n={d.n} paired" if d.method == "paired bootstrap" else f"n={d.n}/{d.n_b} unpaired"
    return f" ({what} {f(d.estimate)} [{f(d.low)}, {f(d.high)}], {n}: {d.outcome})"


def controlled_section(drows: Sequence[dict[str, Any]], pct: Sequence[int], suffix: str = "") -> list[str]:
    """Table 2b: the controlled view — every reader on the initial retriever's passages (the same instances)."""
    from ragdistill.analysis.report import table2

    analysed = [(r, sig, a) for r in drows for sig, a in (r.get("analyses_controlled") or {}).items()]
    out = [f"## Table 2b — controlled view: every reader on the initial retriever's passages{suffix}", ""]
    if not analysed:
        return out + ["No setting has a controlled-view analysis.", ""]
    n = next(iter(analysed))[2]["settings"].get("n_instances", "?")
    readers = {_row_label(r, sig): a["summary"] for r, sig, a in analysed}
    out += [
        f"The same readers as Table 2, each scoring the same {n} instances: the sampled test questions with the "
        "top-K passages of the **initial** retriever, whatever retriever the setting trained — a controlled "
        "comparison of the readers alone, paired by instance. Rows whose retriever did not train show the same "
        "numbers as in Table 2 (one analysis serves both views); step 2's row is step 1's reader (frozen), "
        "analysed once. Means ± standard errors.",
        "",
        table2(readers, None, "attention", pct, se=True),
        "",
        "Lift, controlled view:",
        "",
        table2(readers, None, "lift", pct, se=True),
        "",
        "### Verdicts, controlled view",
        "",
    ]
    view_rows = [
        {**r, "verdict": r.get("verdict_controlled"), "intervals": r.get("intervals_controlled")} for r in drows
    ]
    out += verdict_lines(view_rows)
    for r in drows:
        if r.get("controlled_same_as"):
            out.append(
                f"- {r['number']} {r['name']}: its controlled view is {r['controlled_same_as']}'s analysis "
                "(the same frozen reader on the same instances)."
            )
    return out + [""]
