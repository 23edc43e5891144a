"""The loaders on the real public files of ../shared/data (skipped when absent): exact counts."""

from __future__ import annotations

from ragdistill.data import count_passages, detect_format, iter_passages, load_questions
from tests.conftest import shared_file


def test_squad_dev_is_corpus_and_question_set():
    path = shared_file("squad/dev-v1.1.json")
    assert detect_format(path) == "squad"
    assert count_passages(path) == 2067
    questions = load_questions(path)
    assert len(questions) == 10570
    assert questions[0].question == "Which NFL team represented the AFC at Super Bowl 50?"
    assert questions[0].answers == ["Denver Broncos"]
    first = next(iter_passages(path))
    assert first.id == "0-0" and first.title == "Super Bowl 50"


def test_nq_open_dev():
    path = shared_file("nq_open/NQ-open.dev.jsonl")
    assert detect_format(path) == "nq-open"
    questions = load_questions(path)
    assert len(questions) == 3610
    assert questions[0].answers == ["14 December 1972 UTC", "December 1972"]


def test_triviaqa_dev_as_dpr_jsonl():
    path = shared_file("triviaqa/trivia-unfiltered.dev.jsonl")
    assert len(load_questions(path)) == 8837


def test_triviaqa_official_sample():
    path = shared_file("triviaqa/official-format-sample.json")
    assert detect_format(path) == "triviaqa"
    (q,) = load_questions(path)
    assert q.id == "tc_33" and q.answers[0] == "Sunset Boulevard"
    assert "Sunset Blvd" in q.answers and "sunset bulevard" in q.answers
    assert len(q.answers) == len(set(q.answers))


def test_dpr_biencoder_distinct_passages():
    path = shared_file("dpr/nq-dev-biencoder-tiny.jsonl")
    assert detect_format(path) == "dpr-biencoder"
    assert count_passages(path) == 1504
    questions = load_questions(path)
    assert len(questions) == 10 and questions[0].answers == ["Linda Davis"]
