"""Putting it together (outcome vs the indicators' prediction) and the conclusion (the study's findings)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragdistill.evaluation.statistics import Difference, format_difference
from ragdistill.experiments.report.format import _holds, _metric_title, _ms
from ragdistill.experiments.report.indicators import FAILS, HOLDS
from ragdistill.experiments.settings import ITEMS_BY_NAME as BY_NAME


def _status_cell(point: bool | None, iv: str | None) -> str:
    txt = _holds(point)
    return txt if iv is None else f"{txt} (interval: {iv})"


def together_table(rows: Sequence[dict[str, Any]]) -> str:
    head = [
        "#",
        "setting",
        "teacher (reader analysed)",
        "signal",
        "ΔHR@5 [95 % CI], n",
        "outcome (interval)",
        "Indicator 1",
        "Indicator 2",
        "indicators predict",
        "agree?",
        "why undefined",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] in ("not run", "failed") or not BY_NAME[r["name"]].reference:
            continue
        v = r["verdict"] or {}
        iv = r.get("intervals") or {}
        i1 = _status_cell((v.get("indicator1") or {}).get("holds"), iv.get("indicator1")) if v else "–"
        i2 = _status_cell((v.get("indicator2") or {}).get("holds"), iv.get("indicator2")) if v else "–"
        teacher = r["analysis_same_as"] or BY_NAME[r["name"]].reader_from or r["name"]
        d5 = (r.get("deltas") or {}).get("hr@5")
        delta = "–" if d5 is None else f"{format_difference(d5)}, n={d5.n}"
        if (r.get("across_seeds") or {}).get("delta_hr5"):
            delta += f"; {len(r['seed_runs'])} seeds: {_ms(r['across_seeds']['delta_hr5'], signed=True)}"
        agree = "–" if r["agrees"] is None else ("yes" if r["agrees"] else "**no**")
        why = (
            "; ".join(
                dict.fromkeys(
                    x
                    for x in (
                        r.get("outcome_why"),
                        r.get("prediction_why") if r["prediction"] is None else "",
                        r.get("agrees_why") if r["agrees"] is None and r["prediction"] and r["outcome"] != "–" else "",
                    )
                    if x
                )
            )
            or "–"
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    r["number"],
                    r["name"],
                    f"{teacher}'s final reader",
                    r["signal"],
                    delta,
                    r["outcome"],
                    i1,
                    i2,
                    r["prediction"] or "–",
                    agree,
                    why,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


REPRODUCED, NOT_REPRODUCED, UNDECIDED_FINDING = "reproduced", "did not reproduce", "could not be decided"


def _ci_text(d: Difference, scale: float = 100.0, unit: str = " points") -> str:
    return (
        f"{scale * d.estimate:+.1f}{unit} [95 % CI {scale * d.low:+.1f}, {scale * d.high:+.1f}], n={d.n}"
        if scale != 1
        else f"{d.estimate:+.3g} [95 % CI {d.low:+.3g}, {d.high:+.3g}], n={d.n}"
    )


def _missing(row: dict[str, Any] | None, name: str) -> str | None:
    if row is None:
        return f"setting {name} is not in this run"
    if row["status"] == "not run":
        return f"setting {row['number']} {name} did not run" + (f" ({row['reason']})" if row.get("reason") else "")
    if row["status"] == "failed":
        return f"setting {row['number']} {name} failed ({row['error']})"
    return None


def _retrieval_finding(row: dict[str, Any] | None, name: str, want: str) -> tuple[str, str]:
    miss = _missing(row, name)
    if miss:
        return UNDECIDED_FINDING, miss
    d = (row.get("deltas") or {}).get("hr@5")
    if d is None:
        return UNDECIDED_FINDING, f"no ΔHR@5: {row.get('outcome_why') or 'undefined'}"
    txt = f"ΔHR@5 {_ci_text(d)} ({d.method})"
    if d.outcome == want:
        return REPRODUCED, txt
    if d.outcome == "no detectable change":
        return UNDECIDED_FINDING, f"{txt}: the interval includes 0 at n={d.n}"
    return NOT_REPRODUCED, f"{txt}: it {d.outcome}"


def _indicator_text(row: dict[str, Any]) -> str:
    v, iv = row["verdict"], row.get("intervals") or {}
    return (
        f"Indicator 1 {_holds(v['indicator1']['holds'])} (intervals: {iv.get('indicator1') or 'none'}), "
        f"Indicator 2 {_holds(v['indicator2']['holds'])} (intervals: {iv.get('indicator2') or 'none'})"
    )


def _indicator_finding(row: dict[str, Any] | None, name: str, kind: str) -> tuple[str, str]:
    """kind: 'both' (both indicators hold), 'encdec' (only Indicator 1's attention trend), 'neither'."""
    miss = _missing(row, name)
    if miss:
        return UNDECIDED_FINDING, miss
    v, iv = row.get("verdict"), row.get("intervals")
    if v is None or not v.get("compared_to_reference"):
        return UNDECIDED_FINDING, f"no verdict against the reference ({(v or {}).get('note') or 'no analysis'})"
    if not iv:
        return UNDECIDED_FINDING, "no per-instance measures to put intervals on the indicator differences"
    s1, s2 = iv.get("indicator1"), iv.get("indicator2")
    txt = _indicator_text(row)
    if kind == "both":
        if s1 == HOLDS and s2 == HOLDS:
            return REPRODUCED, txt
        if FAILS in (s1, s2):
            return NOT_REPRODUCED, txt
        return UNDECIDED_FINDING, txt + f": an interval includes 0 at n={_n_inst(iv)}"
    if kind == "neither":
        if HOLDS in (s1, s2):
            return NOT_REPRODUCED, txt
        if s1 == FAILS and s2 == FAILS:
            return REPRODUCED, txt
        return UNDECIDED_FINDING, txt + f": not clearly failing either, an interval includes 0 at n={_n_inst(iv)}"
    # encoder-decoder: the answer-related attention rises, and not both indicators hold
    quantity = "mean_attention" if iv["measure"] == "mean" else "lift"
    d = iv["answer"][quantity]
    if d is None:
        return UNDECIDED_FINDING, "the answer-related attention difference is undefined"
    txt = f"answer-related Δ {quantity.replace('_', ' ')} {_ci_text(d, 1)}: {d.outcome}; " + txt
    if d.outcome == "improves" and s2 != HOLDS:
        return REPRODUCED, txt
    if d.outcome == "hurts" or (s1 == HOLDS and s2 == HOLDS):
        return NOT_REPRODUCED, txt
    return UNDECIDED_FINDING, txt + f": an interval includes 0 at n={d.n}"


def _n_inst(iv: dict[str, Any]) -> str:
    ns = sorted({d.n for g in ("answer", "question") for d in iv[g].values() if d is not None})
    return "/".join(map(str, ns)) or "0"


def conclusion(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The study's findings, each reproduced / not reproduced / undecided on this data, from the intervals."""
    by = {r["name"]: r for r in rows}
    teacher = by.get("finetuned_step1")
    findings = [
        (
            "Off-the-shelf distillation hurts the retriever (row 2)",
            _retrieval_finding(by.get("offshelf_distill"), "offshelf_distill", "hurts"),
        ),
        (
            "Fine-tuned distillation, step 2, improves the retriever (row 4)",
            _retrieval_finding(by.get("finetuned_step2"), "finetuned_step2", "improves"),
        ),
        (
            "Indicators 1 and 2 hold for a good teacher (row 3's fine-tuned reader, row 4's teacher)",
            _indicator_finding(teacher, "finetuned_step1", "both"),
        ),
        (
            "Encoder-decoder distillation: only Indicator 1's attention trend (row 5)",
            _indicator_finding(by.get("encdec_distill"), "encdec_distill", "encdec"),
        ),
        (
            "Perplexity distillation: neither indicator holds (row 6)",
            _indicator_finding(by.get("perplexity_distill"), "perplexity_distill", "neither"),
        ),
    ]
    counts = {k: sum(1 for _, (st, _) in findings if st == k) for k in (REPRODUCED, NOT_REPRODUCED, UNDECIDED_FINDING)}
    out = [
        f"Of the study's {len(findings)} findings, {counts[REPRODUCED]} reproduced on this data, "
        f"{counts[NOT_REPRODUCED]} did not, and {counts[UNDECIDED_FINDING]} could not be decided.",
        "",
    ]
    out += [f"- **{title}**: {status} — {detail}." for title, (status, detail) in findings]
    if teacher and teacher.get("status") not in ("not run", "failed"):
        em = (teacher.get("deltas") or {}).get("em")
        if em is not None:
            out.append(
                f"- Step 1's reader against the off-the-shelf reader: ΔEM {_ci_text(em)} ({em.outcome}) — the "
                "study's step 2 presumes a clearly better (well-tuned) reader."
            )
    out += ["", power_line(rows)]
    return out


def power_line(rows: Sequence[dict[str, Any]]) -> str:
    """The 95 % half-widths of every interval: what differences this run can tell from noise."""
    parts = []
    for key in sorted(
        {k for r in rows for k in (r.get("deltas") or {})},
        key=lambda k: (0, int(k[3:]), "") if k.startswith("hr@") and k[3:].isdigit() else (1, 0, k),
    ):
        ds = [(r, r["deltas"][key]) for r in rows if (r.get("deltas") or {}).get(key) is not None]
        if ds:
            parts.append(
                f"Δ{_metric_title(key)} ± "
                + ", ".join(f"{100 * d.half_width:.1f} (row {r['number']}, n={d.n})" for r, d in ds)
                + " points"
            )
    for r in rows:
        iv = r.get("intervals")
        if not iv:
            continue
        q = "mean_attention" if iv["measure"] == "mean" else "lift"
        bits = []
        for g, title in (("answer", "answer"), ("question", "question")):
            d, rho = iv[g][q], iv[g]["spearman"]
            if d is not None:
                bits.append(f"{title} Δ{q.replace('_', ' ')} ± {d.half_width:.3g}")
            if rho is not None:
                bits.append(f"{title} ΔSpearman ± {rho.half_width:.3f}")
        if bits:
            n = _n_inst(iv)
            parts.append(f"row {r['number']} indicators (n={n}): " + ", ".join(bits))
    if not parts:
        return "No difference had an interval (nothing to compare)."
    return (
        "Interval half-widths (95 %), i.e. the smallest differences this run can tell from noise: "
        + "; ".join(parts)
        + "."
    )
