"""Answer matching (DPR token sequences, SQuAD-normalised substrings) and HR@k by hand."""

from __future__ import annotations

import pytest

from ragdistill.errors import ConfigError
from ragdistill.retrieval.metrics import (
    dpr_tokens,
    has_answer,
    hit_flags,
    hits_at_k,
    hits_from_flags,
    markdown_table,
    squad_normalize,
)


def test_dpr_tokens_follow_simple_tokenizer():
    # runs of letters/digits, every other non-space character on its own, lower-cased
    assert dpr_tokens("U.S.A. won't  pay $5,000!") == [
        "u",
        ".",
        "s",
        ".",
        "a",
        ".",
        "won",
        "'",
        "t",
        "pay",
        "$",
        "5",
        ",",
        "000",
        "!",
    ]
    # NFD keeps the combining accent inside the word (\p{M}), on both sides of a match
    assert dpr_tokens("Café") == ["cafe\u0301"]


def test_token_match_is_contiguous_and_whole_token():
    assert has_answer("The Denver Broncos won.", ["denver broncos"])
    assert not has_answer("The Denver Broncos won.", ["Bronco"])  # no partial tokens
    assert not has_answer("Denver beat the Broncos", ["Denver Broncos"])  # not contiguous
    assert has_answer("BEYONCÉ sang", ["Beyoncé"])  # case and unicode normalised alike
    assert has_answer("born in 1961.", ["1961"])
    assert not has_answer("the answer is 420", ["42"])


def test_substring_match_uses_squad_normalisation():
    assert squad_normalize("The  Eiffel-Tower!") == "eiffeltower"
    assert has_answer("the answer is 420", ["42"], match="substring")
    assert has_answer("An Apple a day", ["the apple"], match="substring")  # articles dropped
    assert not has_answer("pear", ["apple"], match="substring")


def test_empty_answers_never_match():
    assert not has_answer("anything", [""])
    assert not has_answer("anything", ["..."], match="substring")
    assert not has_answer("anything", [])


def test_unknown_match_is_a_config_error():
    with pytest.raises(ConfigError, match="match"):
        has_answer("x", ["x"], match="fuzzy")


def test_hits_at_k_hand_worked():
    texts = [
        ["Berlin is big", "paris, France", "x"],  # hit at rank 2
        ["new york city", "boston", "chicago"],  # hit at rank 1
        ["the answer is 420", "forty two", "4 2"],  # no hit (token match)
        ["nothing", "nothing", "BEYONCÉ sang"],  # hit at rank 3
    ]
    answers = [["Paris"], ["New York"], ["42"], ["Beyoncé", "Knowles"]]
    assert [hit_flags(t, a) for t, a in zip(texts, answers)] == [
        [False, True, False],
        [True, False, False],
        [False, False, False],
        [False, False, True],
    ]
    assert hits_at_k(texts, answers, ks=(1, 2, 3)) == {"hr@1": 0.25, "hr@2": 0.5, "hr@3": 0.75}
    # question 3's "42" is a substring of "420": substring matching counts it at rank 1
    assert hits_at_k(texts, answers, ks=(1, 2, 3), match="substring") == {"hr@1": 0.5, "hr@2": 0.75, "hr@3": 1.0}
    # k beyond the list length counts what is there
    assert hits_at_k(texts, answers, ks=[20]) == {"hr@20": 0.75}


def test_hits_from_flags_and_errors():
    assert hits_from_flags([], ks=[1]) == {"hr@1": 0.0}
    assert hits_from_flags([[False, True], [True]], ks=[1, 2]) == {"hr@1": 0.5, "hr@2": 1.0}
    with pytest.raises(ConfigError, match="ks"):
        hits_from_flags([[True]], ks=[0])
    with pytest.raises(ConfigError, match="answers"):
        hits_at_k([["a"]], [["a"], ["b"]])


def test_markdown_table_in_percent():
    table = markdown_table({"hr@1": 0.25, "hr@5": 0.5}, n_questions=4)
    assert table.splitlines() == ["| questions | HR@1 | HR@5 |", "|---:|---:|---:|", "| 4 | 25.00 | 50.00 |"]


def test_passage_hit_flags_text_only_by_default_title_on_request():
    from ragdistill.data.types import Passage
    from ragdistill.retrieval.metrics import passage_hit_flags

    ps = [
        Passage("1", "Canberra", "the capital of a country"),
        Passage("2", "Cities", "Canberra is inland"),
        Passage("3", "New", "York times"),
    ]
    assert passage_hit_flags(ps, ["Canberra"]) == [False, True, False]  # DPR: the text only
    assert passage_hit_flags(ps, ["Canberra"], match_title=True) == [True, True, False]
    # fields are matched on their own: "New York" never spans the title/text boundary
    assert passage_hit_flags(ps, ["New York"], match_title=True) == [False, False, False]
    assert passage_hit_flags(ps, ["canberra"], match="substring", match_title=True) == [True, True, False]
