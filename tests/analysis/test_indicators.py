"""Aggregation, verdict, advice, report tables and figures on hand-built per-instance measures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ragdistill.analysis.figures import write_figures
from ragdistill.analysis.indicators import DISTIL, FINE_TUNE, NO_BENEFIT, VerdictOptions, advice, summarize, verdict
from ragdistill.analysis.quality import (
    SKIP_NO_NOUNS,
    GroupMeasure,
    InstanceMeasures,
    SelectionMeasure,
    measure_instance,
)
from ragdistill.analysis.report import render_report, table2
from ragdistill.analysis.run import ReaderAnalysis, build_indicators, sample_questions
from ragdistill.data.types import Question
from ragdistill.errors import ConfigError, InputError
from ragdistill.readers.base import AttentionResult


def sel(att, rho, n_tokens=100):
    return SelectionMeasure(
        threshold=0.5,
        n_selected=5,
        mean_attention=att,
        lift=att * n_tokens,
        spearman=rho,
        undefined_reason=None if rho is not None else "constant_similarity",
    )


def inst(a_att, a_rho, q_att=None, q_rho=None):
    groups = {
        "answer": GroupMeasure(n_group_tokens=2, by_percentile={90: sel(a_att, a_rho), 95: sel(a_att * 1.5, a_rho)})
    }
    if q_att is None:
        groups["question"] = GroupMeasure(skipped=SKIP_NO_NOUNS)
    else:
        groups["question"] = GroupMeasure(
            n_group_tokens=3, by_percentile={90: sel(q_att, q_rho), 95: sel(q_att, q_rho)}
        )
    return InstanceMeasures(n_passage_tokens=100, groups=groups)


def test_summarize_means_stds_and_counts():
    items = [inst(0.02, 0.5, 0.01, 0.4), inst(0.04, None, None), inst(0.03, 0.1, 0.03, None)]
    s = summarize(items)
    a = s["answer"]["p90"]
    assert a["attention_mean"] == pytest.approx(0.03)
    assert a["attention_std"] == pytest.approx(np.std([0.02, 0.04, 0.03]))
    assert a["lift_mean"] == pytest.approx(3.0)
    assert a["spearman_mean"] == pytest.approx(0.3)  # undefined instance excluded from ρ ...
    assert (a["n_used"], a["n_undefined"], a["n_measured"]) == (2, 1, 3)  # ... but counted
    assert a["undefined_reasons"] == {"constant_similarity": 1}
    q = s["question"]["p95"]
    assert q["n_skipped_no_nouns"] == 1 and q["n_measured"] == 2 and q["n_used"] == 1 and q["n_undefined"] == 1
    assert q["attention_mean"] == pytest.approx(0.02)


def test_verdict_rules_and_thresholds():
    ref = summarize([inst(0.02, 0.2, 0.01, 0.1)] * 3)
    good = summarize([inst(0.03, 0.4, 0.02, 0.35)] * 3)
    v = verdict(good, ref)
    assert v["indicator1"]["holds"] and v["indicator2"]["holds"]
    assert advice(v)[0] == DISTIL
    # Indicator 2 needs Spearman above the threshold, whatever the reference
    v = verdict(good, ref, VerdictOptions(corr_threshold=0.5))
    assert v["indicator1"]["holds"] and v["indicator2"]["holds"] is False
    assert advice(v)[0] == FINE_TUNE
    # higher attention but lower correlation: Indicator 1 fails
    mixed = summarize([inst(0.05, 0.1, 0.005, 0.1)] * 3)
    v = verdict(mixed, ref)
    assert v["indicator1"]["holds"] is False and v["indicator1"]["attention_higher"] is True
    assert v["indicator2"]["holds"] is False
    assert advice(v)[0] == NO_BENEFIT
    # raw mean vs lift give the same answer when passage lengths agree
    assert verdict(good, ref, VerdictOptions(attention_measure="mean"))["indicator1"]["holds"]


def test_verdict_without_reference_is_undefined_and_advice_is_absolute():
    good = summarize([inst(0.03, 0.4, 0.02, 0.35)] * 2)
    v = verdict(good, None)
    assert v["indicator1"]["holds"] is None and v["indicator2"]["holds"] is None
    assert advice(v)[0] == DISTIL  # lift 4.5 / 2 > 1 and ρ > 0.3 on both groups
    weak = summarize([inst(0.03, 0.4, 0.005, 0.1)] * 2)
    assert advice(verdict(weak, None))[0] == FINE_TUNE


def test_lift_makes_prompt_lengths_comparable():
    """Same attention pattern, twice the passage tokens: raw mean halves, lift is unchanged."""

    def result(n):
        ids = torch.arange(n) % 10
        scores = torch.where(ids == 3, 5.0, 1.0).float()
        return AttentionResult(
            passage_scores=scores.sum()[None],
            token_scores=scores,
            input_ids=ids,
            passage_spans=[(0, n)],
            answer_span=(n, n),
            answer_ids=torch.tensor([3]),
        )

    E = torch.eye(10, dtype=torch.float64) + 0.1
    short, long = (measure_instance(result(n), E, answer_ids=[3]).groups["answer"].by_percentile[95] for n in (50, 100))
    assert long.mean_attention == pytest.approx(short.mean_attention / 2)
    assert long.lift == pytest.approx(short.lift)


def test_sample_questions_is_seeded_and_skips_unanswered():
    qs = [Question(str(i), f"q{i}?", [f"a{i}"] if i % 4 else []) for i in range(40)]
    a, missing = sample_questions(qs, 10, seed=3)
    b, _ = sample_questions(qs, 10, seed=3)
    assert [q.id for q in a] == [q.id for q in b] and len(a) == 10 and missing == 10
    assert all(q.answers for q in a)
    c, _ = sample_questions(qs, 10, seed=4)
    assert [q.id for q in a] != [q.id for q in c]
    assert len(sample_questions(qs, 1000, seed=0)[0]) == 30
    with pytest.raises(ConfigError):
        sample_questions(qs, 0)
    with pytest.raises(InputError):
        sample_questions([Question("x", "q?", [])], 5)


def test_report_tables_and_figures(tmp_path):
    ref = ReaderAnalysis("offshelf", [inst(0.02, 0.2, 0.01, 0.1), inst(0.025, None, 0.012, 0.15)], [])
    ft = ReaderAnalysis("runs/step1/reader", [inst(0.03, 0.4, 0.02, 0.35), inst(0.035, 0.45, None)], [])
    ind = build_indicators([ref, ft], "offshelf", settings={"n": 2})
    assert ind["verdict"]["runs/step1/reader"]["indicator1"]["holds"] is True
    assert ind["verdict"]["offshelf"]["compared_to_reference"] is False
    json.dumps(ind)  # serialisable as indicators.json
    t2 = table2(ind["readers"], "offshelf")
    lines = t2.splitlines()
    assert lines[0].count("|") == 10  # reader + 2 groups × 2 percentiles × (Attn., Corr.)
    assert "offshelf (reference)" in lines[2] and "runs/step1/reader" in lines[3]
    assert "Answer-related p95 Attn." in lines[0] and "Question-related p90 Corr." in lines[0]
    figs = write_figures({a.name: a.measures for a in (ref, ft)}, tmp_path / "figures")
    assert len(figs) == 6  # 2 readers × 2 groups + 2 comparisons
    for f in figs:
        data = (tmp_path / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    md = render_report(ind, figs)
    assert "## Verdict" in md and "Indicator 1" in md and "**holds**" in md and "Table 4" in md
    assert "(no nouns: 1)" in md
