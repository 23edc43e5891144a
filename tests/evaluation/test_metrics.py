"""EM / F1 against the official SQuAD v1.1 evaluation script's logic.

The reference functions below are copied from `evaluate-v1.1.py` (the script released
with SQuAD v1.1); the project's implementation must agree on every case, including the
aggregate numbers the official `evaluate()` prints (times 100 there).
"""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragdistill.evaluation.metrics import answer_metrics, exact_match, f1_score, normalize_answer


# ---- official SQuAD v1.1 evaluation logic (reference) --------------------------------
def official_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def official_exact_match_score(prediction, ground_truth):
    return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)


def official_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def official_evaluate(pairs):
    f1 = exact_match = total = 0
    for prediction, ground_truths in pairs:
        total += 1
        exact_match += official_metric_max_over_ground_truths(official_exact_match_score, prediction, ground_truths)
        f1 += official_metric_max_over_ground_truths(official_f1_score, prediction, ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# ---- a fixed predictions file with tricky cases ---------------------------------------
FIXED = [
    ("The Eiffel Tower", ["Eiffel Tower"]),  # article dropped
    ("eiffel tower!!!", ["The Eiffel Tower."]),  # punctuation and case
    ("an apple a day", ["apple day"]),  # several articles
    ("theater", ["the ater"]),  # 'the' only as a whole word
    ("Denver Broncos", ["Broncos", "Denver Broncos", "The Denver Broncos"]),  # several golds
    ("Carolina", ["Denver Broncos", "Broncos"]),  # no overlap
    ("", ["Paris"]),  # empty prediction
    ("Paris", [""]),  # empty gold
    ("", [""]),  # both empty: EM 1, F1 0
    ("São Paulo", ["sao paulo", "São Paulo"]),  # unicode accents are not folded
    ("Zürich – Switzerland", ["zürich switzerland"]),  # en dash is not ASCII punctuation
    ("“quoted”", ['"quoted"']),  # curly quotes are kept
    ("1,000,000", ["1000000"]),  # comma inside a number
    ("U.S.A.", ["USA"]),
    ("  lots   of\tspace\n", ["lots of space"]),
    ("the the the", ["the"]),  # only articles -> empty
    ("New York City", ["New York"]),  # partial overlap
    ("red red blue", ["red blue blue"]),  # repeated tokens (Counter intersection)
    ("ÉCOLE", ["école"]),  # unicode lower-casing
    ("A", ["a"]),
]


@pytest.mark.parametrize("pred,golds", FIXED)
def test_agrees_with_official_per_case(pred, golds):
    assert normalize_answer(pred) == official_normalize_answer(pred)
    assert exact_match(pred, golds) == float(
        official_metric_max_over_ground_truths(official_exact_match_score, pred, golds)
    )
    assert f1_score(pred, golds) == pytest.approx(
        official_metric_max_over_ground_truths(official_f1_score, pred, golds), abs=1e-12
    )


def test_aggregate_matches_official_evaluate():
    ours = answer_metrics([p for p, _ in FIXED], [g for _, g in FIXED])
    ref = official_evaluate(FIXED)
    assert 100 * ours["em"] == pytest.approx(ref["exact_match"], abs=1e-9)
    assert 100 * ours["f1"] == pytest.approx(ref["f1"], abs=1e-9)


def test_hand_computed_values():
    assert normalize_answer("The  Quick, brown-fox!") == "quick brownfox"
    assert exact_match("the Eiffel tower", "Eiffel Tower.") == 1.0
    # pred {new, york, city}, gold {new, york}: P = 2/3, R = 1, F1 = 0.8
    assert f1_score("New York City", ["New York"]) == pytest.approx(0.8)
    # best of several golds
    assert f1_score("New York City", ["Boston", "New York City"]) == 1.0
    assert exact_match("", ["Paris"]) == 0.0 and f1_score("", ["Paris"]) == 0.0
    assert exact_match("x", []) == 0.0 and f1_score("x", []) == 0.0  # no gold: 0, not an error
    assert answer_metrics([], []) == {"em": 0.0, "f1": 0.0}
    with pytest.raises(ValueError):
        answer_metrics(["a"], [])


text = st.lists(st.sampled_from(list("aAnN the.,!?-'\"éÉ ü–\t") + ["the ", " an ", " a "]), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(pred=text, golds=st.lists(text, min_size=1, max_size=3))
def test_property_matches_official(pred, golds):
    assert normalize_answer(pred) == official_normalize_answer(pred)
    assert exact_match(pred, golds) == float(
        official_metric_max_over_ground_truths(official_exact_match_score, pred, golds)
    )
    assert f1_score(pred, golds) == pytest.approx(
        official_metric_max_over_ground_truths(official_f1_score, pred, golds)
    )
