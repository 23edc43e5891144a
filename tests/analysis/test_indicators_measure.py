"""Issue 15 item 5: which attention the verdict compares (the study's mean attention on M, or the lift)."""

from __future__ import annotations

import pytest

from ragdistill.analysis.indicators import VerdictOptions, measure_for, summarize, verdict
from ragdistill.analysis.quality import GroupMeasure, InstanceMeasures, SelectionMeasure


def _inst(att: float, rho: float, n_tokens: int) -> InstanceMeasures:
    sel = SelectionMeasure(threshold=0.5, n_selected=5, mean_attention=att, lift=att * n_tokens, spearman=rho)
    g = {p: sel for p in (90, 95)}
    return InstanceMeasures(
        n_passage_tokens=n_tokens,
        groups={
            "answer": GroupMeasure(n_group_tokens=2, by_percentile=g),
            "question": GroupMeasure(n_group_tokens=2, by_percentile=g),
        },
    )


def _pair(n_reader: int, n_reference: int):
    # the reader: mean attention 0.02 (higher), lift 0.02 x n_reader; the reference: 0.015 x n_reference
    reader = summarize([_inst(0.02, 0.5, n_reader)] * 4)
    reference = summarize([_inst(0.015, 0.2, n_reference)] * 4)
    return reader, reference


def test_mean_and_lift_disagree_and_the_verdict_follows_the_chosen_measure():
    reader, reference = _pair(100, 200)  # mean 0.02 > 0.015, lift 2.0 < 3.0
    by_mean = verdict(reader, reference, VerdictOptions(attention_measure="mean"))
    by_lift = verdict(reader, reference, VerdictOptions(attention_measure="lift"))
    assert by_mean["indicator1"]["holds"] is True and by_lift["indicator1"]["holds"] is False
    assert by_mean["attention_measure"] == "mean" and by_mean["decided_by"] == "mean attention on M"
    assert by_lift["decided_by"] == "lift"
    # both measures travel with the verdict, whichever decided
    i1 = by_mean["indicator1"]
    assert i1["mean_attention"] == pytest.approx(0.02) and i1["reference_mean_attention"] == pytest.approx(0.015)
    assert i1["lift"] == pytest.approx(2.0) and i1["reference_lift"] == pytest.approx(3.0)
    assert i1["mean_attention_higher"] is True and i1["lift_higher"] is False


def test_auto_takes_the_mean_on_the_same_prompts_and_the_lift_when_prompts_differ():
    same_r, same_ref = _pair(100, 100)
    v = verdict(same_r, same_ref, VerdictOptions(attention_measure="auto"))
    assert v["attention_measure"] == "mean" and v["measure_requested"] == "auto"
    assert "same prompts" in v["measure_reason"]
    diff_r, diff_ref = _pair(100, 200)
    v = verdict(diff_r, diff_ref, VerdictOptions(attention_measure="auto"))
    assert v["attention_measure"] == "lift" and "differ" in v["measure_reason"]
    assert v["indicator1"]["holds"] is False
    # an old indicators.json without the prompt fingerprint: the lift, the safe choice
    old = {k: val for k, val in same_ref.items() if k != "prompts"}
    assert verdict(same_r, old, VerdictOptions(attention_measure="auto"))["attention_measure"] == "lift"
    assert measure_for(True) == "mean" and measure_for(False) == "lift"
    with pytest.raises(ValueError):
        verdict(same_r, same_ref, VerdictOptions(attention_measure="median"))
