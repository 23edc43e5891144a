"""The bundled SmolLM2 reader on a hand-written example (slow: loads the real model)."""

from __future__ import annotations

import pytest
import torch

from ragdistill.data.types import Passage
from ragdistill.readers.decoder import DecoderReader

pytestmark = pytest.mark.slow

PASSAGES = [
    Passage(
        "everest",
        "Mount Everest",
        "Mount Everest is Earth's highest mountain above sea level, located in the Himalayas.",
    ),
    Passage(
        "curie",
        "Marie Curie",
        "Marie Curie was a physicist and chemist who conducted pioneering research on radioactivity.",
    ),
    Passage(
        "canberra",
        "Canberra",
        "Canberra is the capital city of Australia. It was founded following the federation of the colonies.",
    ),
    Passage(
        "pasta",
        "Pasta",
        "Pasta is a type of food typically made from an unleavened dough of wheat flour mixed with water or eggs.",
    ),
]
QUESTION = "What is the capital city of Australia?"


@pytest.fixture(scope="module")
def reader(smollm2):
    model, tok = smollm2
    return DecoderReader(model, tok)


def test_answer_passage_gets_the_highest_attention(reader):
    res = reader.attention_scores(QUESTION, PASSAGES, "Canberra")
    scores = res.passage_scores.tolist()
    assert max(range(4), key=scores.__getitem__) == 2, scores
    # also when the answer passage comes first or last
    for order in ([2, 0, 1, 3], [3, 1, 0, 2]):
        res = reader.attention_scores(QUESTION, [PASSAGES[i] for i in order], "Canberra")
        assert order[int(res.passage_scores.argmax())] == 2, (order, res.passage_scores.tolist())


def test_perplexity_prefers_the_answer_passage_and_generation_is_clean(reader):
    s = reader.perplexity_scores(QUESTION, PASSAGES, "Canberra")
    assert int(s.argmax()) == 2 and (s < 0).all()
    answer = reader.generate([QUESTION], [PASSAGES], max_new_tokens=12)[0]
    assert "Canberra" in answer and "\n" not in answer and "<|im_end|>" not in answer


def test_paper_scale_budget_keeps_spans_exact(reader):
    tight = DecoderReader(reader.model, reader.tokenizer, max_prompt_tokens=128)
    res = tight.attention_scores(QUESTION, PASSAGES, "Canberra")
    assert res.answer_span[0] == 128
    assert torch.isfinite(res.passage_scores).all() and (res.passage_scores > 0).all()
