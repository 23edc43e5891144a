"""Markdown report of an analysis: the study's Table 2 layout, the mean ± std tables, the verdict.

Table 2 (study layout): one row per reader (the reference included, marked), columns
answer-related / question-related × p90 / p95 × Attn. / Corr., where Attn. is the mean over
instances of mean_{t∈M} â_t and Corr. the mean Spearman ρ. A second table in the same layout
gives the lift (comparable across prompt lengths; what the verdict reads by default).
Tables 3 and 4 (study layout): mean ± std per reader, answer-related and question-related,
with the counts of instances used / undefined / skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragdistill.analysis.quality import GROUPS, PERCENTILES

GROUP_TITLE = {"answer": "Answer-related", "question": "Question-related"}


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _att_fmt(x: float | None) -> str:
    return "–" if x is None else (f"{x:.2e}" if abs(x) < 1e-2 else f"{x:.4f}")


def _row_name(name: str, reference: str | None) -> str:
    return f"{name} (reference)" if reference is not None and name == reference else name


def _se(std: float | None, n: int | None) -> float | None:
    """Standard error of a mean from the stored population std (ddof 0) and n: std / √(n − 1)."""
    if std is None or not n or n < 2:
        return None
    return std / (n - 1) ** 0.5


def table2(
    readers: dict[str, dict[str, Any]],
    reference: str | None,
    measure: str = "attention",
    percentiles: Sequence[int] = PERCENTILES,
    se: bool = False,
) -> str:
    """The study's Table 2: rows = readers, columns = group × percentile × (Attn., Corr.).

    `measure` = "attention" (raw mean â over M) or "lift" (mean â over M × passage tokens).
    `se=True`: each mean carries its standard error (mean ± SE over the instances it averages).
    """
    key = "attention_mean" if measure == "attention" else "lift_mean"
    label = "Attn." if measure == "attention" else "Lift"
    fmt = _att_fmt if measure == "attention" else (lambda x: _f(x, ".2f"))
    head1 = ["Reader"] + [GROUP_TITLE[g] for g in GROUPS for _ in percentiles for _ in range(2)]
    head2 = [""] + [f"p{p} {c}" for _ in GROUPS for p in percentiles for c in (label, "Corr.")]
    lines = [
        "| " + " | ".join(f"{a} {b}".strip() if a != "Reader" else a for a, b in zip(head1, head2)) + " |",
        "|" + "---|" * len(head1),
    ]
    for name, s in readers.items():
        cells = [_row_name(name, reference)]
        for g in GROUPS:
            for p in percentiles:
                blk = s[g][f"p{p}"]
                if se:
                    ea = _se(blk[key.replace("_mean", "_std")], blk.get("n_measured"))
                    er = _se(blk.get("spearman_std"), blk.get("n_used"))
                    cells += [
                        fmt(blk[key]) + ("" if ea is None else f" ± {fmt(ea)}"),
                        _f(blk["spearman_mean"], ".3f") + ("" if er is None else f" ± {er:.3f}"),
                    ]
                    continue
                cells += [fmt(blk[key]), _f(blk["spearman_mean"], ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_std_table(
    readers: dict[str, dict[str, Any]], group: str, reference: str | None, percentiles: Sequence[int] = PERCENTILES
) -> str:
    """Tables 3/4: mean ± std of attention, lift and Spearman per reader for one group, with counts."""
    head = ["Reader"]
    for p in percentiles:
        head += [f"p{p} Attn.", f"p{p} Lift", f"p{p} Corr."]
    head += ["used / undefined", "skipped"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in readers.items():
        cells = [_row_name(name, reference)]
        for p in percentiles:
            b = s[group][f"p{p}"]
            cells.append(
                "–"
                if b["attention_mean"] is None
                else f"{_att_fmt(b['attention_mean'])} ± {_att_fmt(b['attention_std'])}"
            )
            cells.append("–" if b["lift_mean"] is None else f"{b['lift_mean']:.2f} ± {b['lift_std']:.2f}")
            cells.append("–" if b["spearman_mean"] is None else f"{b['spearman_mean']:.3f} ± {b['spearman_std']:.3f}")
        b = s[group][f"p{max(percentiles)}"]
        cells.append(f"{b['n_used']} / {b['n_undefined']}")
        skipped = b["n_skipped_no_nouns"] + b["n_skipped_other"]
        cells.append(f"{skipped}" + (f" (no nouns: {b['n_skipped_no_nouns']})" if b["n_skipped_no_nouns"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _yes_no(x: bool | None) -> str:
    return "undefined" if x is None else ("**holds**" if x else "**fails**")


def verdict_section(
    verdicts: dict[str, dict[str, Any]], advices: dict[str, tuple[str, str]], reference: str | None
) -> str:
    lines = []
    for name, v in verdicts.items():
        i1, i2 = v["indicator1"], v["indicator2"]
        what = "lift" if v["attention_measure"] == "lift" else "mean attention"
        lines.append(f"### {name}")
        if not v["compared_to_reference"]:
            lines.append(
                f"- No reference to compare with ({'the reader is the reference' if reference else 'no --reference given'}): "
                "both indicators are **undefined**."
            )
            ab = v["absolute"]
            for g in GROUPS:
                lines.append(
                    f"- {GROUP_TITLE[g]} (p{v['percentile']}): Spearman above {v['corr_threshold']}: "
                    f"{_yes_no(ab[g]['spearman_above_threshold'])}; lift above 1 (uniform): {_yes_no(ab[g]['lift_above_uniform'])}"
                )
        else:
            lines.append(
                f"- Indicator 1 (answer-related, p{v['percentile']} {what} and Spearman above the reference's): "
                f"{_yes_no(i1['holds'])} — {what} {_att_or_lift(i1['attention'], v)} vs {_att_or_lift(i1['reference_attention'], v)}, "
                f"Spearman {_f(i1['spearman'], '.3f')} vs {_f(i1['reference_spearman'], '.3f')}"
            )
            lines.append(
                f"- Indicator 2 (question-related, p{v['percentile']} {what} above the reference's and Spearman > {v['corr_threshold']}): "
                f"{_yes_no(i2['holds'])} — {what} {_att_or_lift(i2['attention'], v)} vs {_att_or_lift(i2['reference_attention'], v)}, "
                f"Spearman {_f(i2['spearman'], '.3f')}"
            )
        adv, why = advices[name]
        lines.append(f"- Advice: **{adv}** ({why}).")
        lines.append("")
    return "\n".join(lines)


def _att_or_lift(x: float | None, v: dict[str, Any]) -> str:
    return _f(x, ".2f") if v["attention_measure"] == "lift" else _att_fmt(x)


def render_report(indicators: dict[str, Any], figures: Sequence[str] = ()) -> str:
    """The whole report.md from an indicators.json object."""
    readers = indicators["readers"]
    reference = indicators.get("reference")
    settings = indicators.get("settings", {})
    pct = tuple(settings.get("percentiles", PERCENTILES))
    out = ["# Attention-quality analysis", ""]
    if settings:
        out.append("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "percentiles") + ".")
        out.append("")
    out += [
        "Per instance: â = the reader's token scores over the passage tokens, normalised to sum to 1; "
        "sim = max cosine similarity (reader input embeddings) to the answer's tokens (answer-related) or to the "
        "question's noun tokens (question-related); M = passage tokens with sim ≥ the p-th percentile "
        "(numpy, linear interpolation). Attn. = mean â over M; Lift = Attn. × number of passage tokens "
        "(1 = uniform); Corr. = Spearman ρ(â, sim) over M. Values are means over instances.",
        "",
        "## Table 2 — mean attention and Spearman (study layout)",
        "",
        table2(readers, reference, "attention", pct),
        "",
        "## Table 2 (lift) — mean lift and Spearman",
        "",
        "The raw mean attention shrinks as prompts grow; the lift is comparable across readers and prompt lengths.",
        "",
        table2(readers, reference, "lift", pct),
        "",
    ]
    for i, g in enumerate(GROUPS):
        out += [
            f"## Table {3 + i} — {GROUP_TITLE[g].lower()} tokens, mean ± std",
            "",
            mean_std_table(readers, g, reference, pct),
            "",
        ]
    out += [
        "Spearman is undefined for an instance whose attention or similarity is constant over M "
        "(or |M| < 2); such instances are counted as *undefined*, never dropped silently. "
        "Std is the population std (ddof = 0).",
        "",
    ]
    verdicts = indicators.get("verdict", {})
    if verdicts:
        advices = {n: (v["advice"], v["advice_reason"]) for n, v in verdicts.items()}
        out += ["## Verdict", ""]
        if reference:
            out += [f"Reference reader: `{reference}`.", ""]
        out.append(verdict_section(verdicts, advices, reference))
    if figures:
        out += ["## Figures", ""]
        for f in figures:
            out.append(f"![{f}]({f})")
        out.append("")
    return "\n".join(out)
