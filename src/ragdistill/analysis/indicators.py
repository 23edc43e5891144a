"""Aggregating per-instance measures into the two indicators, and the verdict against a reference.

Aggregation (one reader, one group ∈ {answer, question}, one p ∈ {90, 95}):

* attention and lift: mean and std (numpy's population std, ddof=0) over every instance
  the group was not skipped for (a question without nouns skips the question group);
* Spearman: mean and std over the instances where ρ is defined; the instances where it is
  undefined (constant â or sim over M, or |M| < 2) are counted in ``n_undefined``;
* counts: ``n_instances`` (all analysed), ``n_used`` (ρ defined), ``n_undefined``,
  ``n_skipped_no_nouns`` / ``n_skipped_other``.

Verdict (METHOD.md §3 "Indicators", thresholds are options):

* Indicator 1 (answer-related) holds when the reader's mean attention at p95 **and** its mean
  Spearman (p95) on answer-related tokens both exceed the reference reader's;
* Indicator 2 (question-related) holds when its mean attention at p95 on question-related
  tokens exceeds the reference's and its mean Spearman (p95) is above ``corr_threshold`` (0.3).

Which attention decides (``VerdictOptions.attention_measure``, METHOD.md §3 "which attention is
compared"; the caller chooses):

* ``"mean"`` — the study's mean attention on M. Right where every reader sees the same
  instances with the same prompt budget (``reproduce``: one tokenizer per family, one budget).
* ``"lift"`` — mean â over M × number of passage tokens: the raw mean shrinks as prompts grow,
  so readers whose prompts differ (another tokenizer, template or budget) are only comparable
  through the lift.
* ``"auto"`` — ``"mean"`` when the two readers' prompts are the same (the per-instance numbers of
  passage tokens that ``summarize`` fingerprints agree), otherwise ``"lift"``; for ``analyze`` /
  ``diagnose``, where the readers may tokenise differently.

The verdict records the measure that decided (``attention_measure``, ``decided_by``, and
``measure_reason``) and carries both values (``mean_attention``/``lift`` and the reference's) so
a report shows the other beside it. ``measure_for(same_prompts)`` is the rule as a function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragdistill.analysis.quality import GROUPS, PERCENTILES, SKIP_NO_NOUNS, InstanceMeasures

ATTENTION_MEASURES = ("mean", "lift", "auto")
MEASURE_TITLE = {"mean": "mean attention on M", "lift": "lift"}


def measure_for(same_prompts: bool) -> str:
    """The measure a verdict should compare: the study's mean attention when both readers saw the same
    prompts (same instances, tokenizer and budget), else the lift."""
    return "mean" if same_prompts else "lift"


def prompt_fingerprint(instances: Sequence[InstanceMeasures]) -> dict[str, Any]:
    """What tells two readers' prompts apart: the per-instance numbers of passage tokens (their sha1 and mean)."""
    counts = [int(i.n_passage_tokens) for i in instances]
    digest = hashlib.sha1(",".join(map(str, counts)).encode()).hexdigest()
    return {
        "n": len(counts),
        "passage_tokens_sha1": digest,
        "passage_tokens_mean": float(np.mean(counts)) if counts else None,
    }


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def summarize(instances: Sequence[InstanceMeasures], percentiles: Iterable[int] = PERCENTILES) -> dict[str, Any]:
    """indicators.json's per-reader block: {group: {"p90": {...}, "p95": {...}}} plus counts."""
    percentiles = tuple(int(p) for p in percentiles)
    out: dict[str, Any] = {"n_instances": len(instances), "prompts": prompt_fingerprint(instances)}
    for group in GROUPS:
        gblock: dict[str, Any] = {}
        for p in percentiles:
            att, lift, rho = [], [], []
            n_undef = n_no_nouns = n_other = 0
            reasons: dict[str, int] = {}
            for inst in instances:
                g = inst.groups.get(group)
                if g is None or g.skipped:
                    if g is not None and g.skipped == SKIP_NO_NOUNS:
                        n_no_nouns += 1
                    else:
                        n_other += 1
                    continue
                m = g.by_percentile[p]
                att.append(m.mean_attention)
                lift.append(m.lift)
                if m.spearman is None:
                    n_undef += 1
                    reasons[m.undefined_reason or "undefined"] = reasons.get(m.undefined_reason or "undefined", 0) + 1
                else:
                    rho.append(m.spearman)
            a_mean, a_std = _stats(att)
            l_mean, l_std = _stats(lift)
            r_mean, r_std = _stats(rho)
            gblock[f"p{p}"] = {
                "attention_mean": a_mean,
                "attention_std": a_std,
                "lift_mean": l_mean,
                "lift_std": l_std,
                "spearman_mean": r_mean,
                "spearman_std": r_std,
                "n_instances": len(instances),
                "n_measured": len(att),
                "n_used": len(rho),
                "n_undefined": n_undef,
                "undefined_reasons": reasons,
                "n_skipped_no_nouns": n_no_nouns,
                "n_skipped_other": n_other,
            }
        out[group] = gblock
    return out


@dataclass(frozen=True)
class VerdictOptions:
    """The thresholds of the verdict (all CLI options)."""

    corr_threshold: float = 0.3  # Indicator 2: mean Spearman on question-related tokens must exceed it
    percentile: int = 95  # which selection the verdict reads
    attention_measure: str = "lift"  # "mean" (the study's mean â on M), "lift" (comparable across prompts) or "auto"
    lift_threshold: float = 1.0  # absolute rule (no reference): attention above uniform


def _get(summary: dict[str, Any], group: str, p: int, key: str) -> float | None:
    return summary.get(group, {}).get(f"p{p}", {}).get(key)


def _gt(a: float | None, b: float | None) -> bool | None:
    if a is None or b is None:
        return None
    return bool(a > b)


def _resolve_measure(requested: str, summary: dict[str, Any], reference: dict[str, Any] | None) -> tuple[str, str]:
    """(measure, why) for a verdict: an explicit choice stands; "auto" compares the two readers' prompts."""
    if requested != "auto":
        return requested, "chosen by the caller"
    if reference is None:
        return "lift", "no reference: the absolute rule reads the lift"
    mine, theirs = summary.get("prompts"), reference.get("prompts")
    if not mine or not theirs:
        return "lift", "the prompts of the two readers are not known to be the same"
    same = mine.get("passage_tokens_sha1") == theirs.get("passage_tokens_sha1") and mine.get("n") == theirs.get("n")
    return measure_for(same), (
        "both readers saw the same prompts (same passage tokens per instance)"
        if same
        else "the readers' prompts differ (another tokenizer or budget): only the lift is comparable"
    )


def _both(mine: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """Both attention measures of one group, the reader's and the reference's (the report shows the other one beside)."""
    return {
        "mean_attention": mine["mean_attention"],
        "reference_mean_attention": ref["mean_attention"],
        "lift": mine["lift"],
        "reference_lift": ref["lift"],
        "mean_attention_higher": _gt(mine["mean_attention"], ref["mean_attention"]),
        "lift_higher": _gt(mine["lift"], ref["lift"]),
    }


def verdict(
    summary: dict[str, Any], reference: dict[str, Any] | None, options: VerdictOptions = VerdictOptions()
) -> dict[str, Any]:
    """Whether each indicator holds for `summary` against `reference` (None: no comparison possible).

    With ``reference=None`` (the reader *is* the reference, e.g. an off-the-shelf checkpoint)
    the comparisons are undefined: ``holds`` is None, and ``absolute`` reports the reference-free
    checks (mean Spearman > corr_threshold, mean lift > lift_threshold) used for advice.
    """
    if options.attention_measure not in ATTENTION_MEASURES:
        raise ValueError(f"attention_measure must be one of {ATTENTION_MEASURES}")
    p = options.percentile
    measure, reason = _resolve_measure(options.attention_measure, summary, reference)
    akey = "lift_mean" if measure == "lift" else "attention_mean"
    out: dict[str, Any] = {
        "percentile": p,
        "attention_measure": measure,
        "measure_requested": options.attention_measure,
        "decided_by": MEASURE_TITLE[measure],
        "measure_reason": reason,
        "corr_threshold": options.corr_threshold,
        "compared_to_reference": reference is not None,
    }
    values = {
        g: {
            "attention": _get(summary, g, p, akey),
            "lift": _get(summary, g, p, "lift_mean"),
            "mean_attention": _get(summary, g, p, "attention_mean"),
            "spearman": _get(summary, g, p, "spearman_mean"),
        }
        for g in GROUPS
    }
    absolute = {
        g: {
            "spearman_above_threshold": _gt(values[g]["spearman"], options.corr_threshold),
            "lift_above_uniform": _gt(values[g]["lift"], options.lift_threshold),
        }
        for g in GROUPS
    }
    out["absolute"] = absolute
    if reference is None:
        note = "comparison undefined: the reader is its own reference"
        out["indicator1"] = {"holds": None, "note": note, **{k: values["answer"][k] for k in ("attention", "spearman")}}
        out["indicator2"] = {
            "holds": None,
            "note": note,
            **{k: values["question"][k] for k in ("attention", "spearman")},
        }
        return out
    ref = {
        g: {
            "attention": _get(reference, g, p, akey),
            "lift": _get(reference, g, p, "lift_mean"),
            "mean_attention": _get(reference, g, p, "attention_mean"),
            "spearman": _get(reference, g, p, "spearman_mean"),
        }
        for g in GROUPS
    }
    att1 = _gt(values["answer"]["attention"], ref["answer"]["attention"])
    cor1 = _gt(values["answer"]["spearman"], ref["answer"]["spearman"])
    att2 = _gt(values["question"]["attention"], ref["question"]["attention"])
    cor2 = _gt(values["question"]["spearman"], options.corr_threshold)
    out["indicator1"] = {
        "holds": None if att1 is None or cor1 is None else (att1 and cor1),
        "attention": values["answer"]["attention"],
        "reference_attention": ref["answer"]["attention"],
        "spearman": values["answer"]["spearman"],
        "reference_spearman": ref["answer"]["spearman"],
        "attention_higher": att1,
        "spearman_higher": cor1,
        **_both(values["answer"], ref["answer"]),
    }
    out["indicator2"] = {
        "holds": None if att2 is None or cor2 is None else (att2 and cor2),
        "attention": values["question"]["attention"],
        "reference_attention": ref["question"]["attention"],
        "spearman": values["question"]["spearman"],
        "reference_spearman": ref["question"]["spearman"],
        "attention_higher": att2,
        "spearman_above_threshold": cor2,
        **_both(values["question"], ref["question"]),
    }
    return out


DISTIL = "distil from this reader"
FINE_TUNE = "fine-tune it first (step 1)"
NO_BENEFIT = "expect no benefit"


def advice(v: dict[str, Any]) -> tuple[str, str]:
    """(advice, reason) from a `verdict` — the rule `ragdistill diagnose` prints.

    Against a reference (the reader differs from the off-the-shelf checkpoint):
      both indicators hold → distil from this reader;
      exactly one holds → fine-tune it first (step 1): its attention improved on one axis only;
      neither holds (or cannot be computed) → expect no benefit: its attention is no better a
      teacher than the off-the-shelf reader's, which the study found hurts the retriever.
    Without a reference (reader == reference, off-the-shelf): the comparison is undefined, so
    the absolute numbers decide: on both answer- and question-related tokens, mean Spearman
    above the threshold (0.3) and mean lift above 1 → distil from this reader; otherwise →
    fine-tune it first (step 1), the study's remedy for an off-the-shelf teacher.
    """
    if not v["compared_to_reference"]:
        ab = v["absolute"]
        ok = all(ab[g]["spearman_above_threshold"] and ab[g]["lift_above_uniform"] for g in GROUPS)
        if ok:
            return DISTIL, (
                "no reference to compare with; on its own numbers the attention concentrates on "
                "answer- and question-related tokens (lift > 1) and follows their similarity (Spearman > threshold)"
            )
        return FINE_TUNE, (
            "no reference to compare with (the reader is the off-the-shelf checkpoint); its own numbers fall short "
            "(Spearman vs threshold, lift vs 1), and the study found distilling from an off-the-shelf reader hurts"
        )
    h1, h2 = v["indicator1"]["holds"], v["indicator2"]["holds"]
    if h1 and h2:
        return DISTIL, "both indicators hold against the reference"
    if h1 or h2:
        which = "Indicator 1 (answer-related)" if h1 else "Indicator 2 (question-related)"
        return FINE_TUNE, f"only {which} holds: its attention improved over the reference on one axis only"
    if h1 is None and h2 is None:
        return NO_BENEFIT, (
            "neither indicator can be computed (no instance with a defined Spearman): "
            "there is no evidence that its attention is a better teacher than the reference's"
        )
    return NO_BENEFIT, "neither indicator holds: its attention is no better a teacher than the reference's"
