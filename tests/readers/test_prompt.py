"""Prompt layout, exact spans and the shared token budget."""

from __future__ import annotations

import pytest

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError
from ragdistill.readers.prompt import PromptBuilder, PromptTemplate
from tests.readers.test_decoder_reference import PASSAGES, QUESTION, tokenizer

LONG = [Passage(f"l{i}", f"Title {i}", " ".join(f"word{i}x{j}" for j in range(60))) for i in range(3)]


@pytest.mark.parametrize("chat", [True, False])
def test_spans_decode_to_question_and_passages(chat):
    tok = tokenizer()
    b = PromptBuilder(tok, PromptTemplate(chat=chat))
    built = b.build(QUESTION, PASSAGES)
    text = tok.decode(built.input_ids)
    for p, (s, e) in zip(PASSAGES, built.passage_spans):
        assert tok.decode(built.input_ids[s:e]).strip() == p.as_text()
    qs, qe = built.question_span
    assert tok.decode(built.input_ids[qs:qe]).strip() == QUESTION
    assert "Document 2: Berlin. Berlin is the capital" in text
    assert text.index("Document 1:") < text.index("Document 3:") < text.index("Question:")
    if chat:
        assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
        assert not b.answer_needs_space(3)
    else:
        assert text.endswith("Answer:") and b.answer_needs_space(3)
        assert b.answer_ids("Paris", 3) == tok(" Paris", add_special_tokens=False)["input_ids"]
    assert built.truncated == [False] * 3


def test_budget_is_shared_and_template_never_cut():
    tok = tokenizer()
    free = PromptBuilder(tok).build(QUESTION, LONG)
    fixed = len(free.input_ids) - sum(e - s for s, e in free.passage_spans)
    b = PromptBuilder(tok, max_prompt_tokens=fixed + 61)
    built = b.build(QUESTION, LONG)
    assert len(built.input_ids) == fixed + 61
    assert sorted(e - s for s, e in built.passage_spans) == [20, 20, 21]
    assert built.truncated == [True] * 3
    for full, cut in zip(free.passage_spans, built.passage_spans):  # each passage keeps its own first tokens
        assert built.input_ids[cut[0] : cut[1]] == free.input_ids[full[0] : full[0] + cut[1] - cut[0]]
    qs, qe = built.question_span
    assert tok.decode(built.input_ids[qs:qe]).strip() == QUESTION


def test_water_filling_gives_short_passages_all_they_need():
    assert PromptBuilder.allocate([5, 100, 100], 65) == [5, 30, 30]
    assert PromptBuilder.allocate([5, 7, 9], 100) == [5, 7, 9]
    assert PromptBuilder.allocate([50, 50], 7) == [3, 4] or PromptBuilder.allocate([50, 50], 7) == [4, 3]
    assert sum(PromptBuilder.allocate([10, 20, 30, 40], 37)) == 37


def test_budget_errors():
    tok = tokenizer()
    with pytest.raises(ConfigError, match="max_prompt_tokens.*template and question alone take"):
        PromptBuilder(tok, max_prompt_tokens=20).build(QUESTION, PASSAGES)
    with pytest.raises(ConfigError, match="max_prompt_tokens"):
        PromptBuilder(tok, max_prompt_tokens=0)
    with pytest.raises(ConfigError, match="model reads at most"):
        PromptBuilder(tok, context_window=64).build(QUESTION, LONG)


def test_custom_template_and_validation():
    tok = tokenizer()
    t = PromptTemplate(
        user="Q: {question}\nContext:\n{documents}", document="[{i}] {passage}", chat=False, answer_prefix="\nA:"
    )
    built = PromptBuilder(tok, t).build("who?", PASSAGES[:2])
    text = tok.decode(built.input_ids)
    assert text.startswith("Q: who?\nContext:\n[1] Paris. Paris") and text.endswith("A:")
    assert built.question_span[0] < built.passage_spans[0][0]
    with pytest.raises(ConfigError, match="prompt.user"):
        PromptTemplate(user="no placeholders")
    with pytest.raises(ConfigError, match="prompt.document"):
        PromptTemplate(document="Document {i}")
    with pytest.raises(ConfigError, match="placeholder"):
        PromptBuilder(tok, PromptTemplate(user="{documents} {question} {other}")).build("q", PASSAGES)
    with pytest.raises(ConfigError, match="question"):
        PromptBuilder(tok).build("   ", PASSAGES)
    with pytest.raises(ConfigError, match="answer"):
        PromptBuilder(tok).answer_ids("", 2)


def test_passage_text_with_braces_and_no_passages():
    tok = tokenizer()
    odd = [Passage("x", "", "Set {a, b} and {documents} stay literal.")]
    built = PromptBuilder(tok).build("What is {x}?", odd)
    s, e = built.passage_spans[0]
    assert tok.decode(built.input_ids[s:e]).strip() == odd[0].text
    empty = PromptBuilder(tok).build("Closed book?", [])
    assert empty.passage_spans == []
