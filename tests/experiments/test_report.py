"""Pieces of the study report checked by hand: the paired ΔHR@5, its outcome, Table 1's layout."""

from __future__ import annotations

import math

import pytest

from ragdistill.experiments.report import outcome, paired_delta, table1


def test_paired_delta_against_a_hand_computation():
    a = {"q1": True, "q2": True, "q3": False, "q4": True, "q5": False}
    b = {"q1": False, "q2": True, "q3": False, "q4": False, "q5": False, "extra": True}
    d, se, n = paired_delta(a, b)
    diffs = [1, 0, 0, 1, 0]  # only the questions both answered
    mean = sum(diffs) / 5
    var = sum((x - mean) ** 2 for x in diffs) / 4
    assert n == 5 and d == pytest.approx(0.4) and se == pytest.approx(math.sqrt(var / 5))
    assert paired_delta({}, b) == (None, None, 0)
    assert paired_delta({"q1": True}, b)[1] is None  # one question: no standard error


def test_outcome_needs_two_standard_errors():
    assert outcome(0.10, 0.04) == "improved"
    assert outcome(-0.10, 0.04) == "hurt"
    assert outcome(0.05, 0.04) == "no clear change"
    assert outcome(0.0, 0.0) == "no clear change"
    assert outcome(None, None) == "–"


def test_table1_columns_follow_the_metrics():
    row = {
        "number": "2",
        "name": "offshelf_distill",
        "reader": "smollm2-135m",
        "what_trains": "both",
        "status": "ran",
        "metrics": {"n": 40, "hr@1": 0.5, "hr@5": 0.75, "em": 0.125, "f1": 0.25},
        "delta_hr5": -0.025,
    }
    lines = table1([row]).splitlines()
    assert lines[0] == (
        "| # | setting | reader | what trains | HR@1 | HR@5 | EM | F1 | n test | ΔHR@5 [95 % CI] | outcome | status |"
    )
    assert len(lines[1].strip("|").split("|")) == 12
    assert (
        lines[2] == "| 2 | offshelf_distill | `smollm2-135m` | both | 50.0 | 75.0 | 12.5 | 25.0 | 40 | -2.5 | – | ran |"
    )


def test_reader_note_when_the_fid_fit_did_not_run_says_so_without_placeholders():
    from ragdistill.experiments.report.details import _reader_notes

    fit = {"name": "fid_reader_fit", "family": "fid", "reader": "minilm-bert2bert", "dataset": "squad-open"}
    not_run = _reader_notes([{**fit, "status": "not run", "reason": "not selected by --only", "steps": None}])
    assert any("did not run here (not selected by --only)" in n for n in not_run)
    assert not any("? steps" in n or "– %" in n for n in not_run)
    assert len(not_run) == 1  # the generic BERT-to-BERT note is not added beside it
    ran = _reader_notes(
        [
            {**fit, "status": "ran", "steps": 250},
            {
                "name": "offshelf_checkpoint_fid",
                "family": "fid",
                "reader": "fit/reader",
                "dataset": "squad-open",
                "status": "ran",
                "metrics": {"em": 0.31},
            },
        ]
    )
    assert any("250 steps" in n and "31.0 %" in n and "≥ 30 %" in n for n in ran)
