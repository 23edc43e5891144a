"""The answer-related group G holds the answer's in-context token forms (issue 15, item 4).

In chat mode the decoder reader scores the answer without a leading space (SmolLM2: "Jane" is
id 44611), while inside a passage the same word is " Jane" (12405). The analysis's G must contain
the in-context form so that the answer's own occurrences in the passages get sim = 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from ragdistill.data.types import Passage, Question

QUESTION = "Who founded the Acme Rocket Company?"
ANSWER = "Jane Doe"
PASSAGES = [
    Passage("p1", "Acme Rocket Company", "The Acme Rocket Company was founded in 1921 by Jane Doe in Ohio."),
    Passage("p2", "Rome", "Rome is the capital city of Italy."),
]


def _find(seq: list[int], sub: list[int]) -> list[int]:
    for i in range(len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return list(range(i, i + len(sub)))
    return []


def test_answer_context_ids_hold_both_forms():
    from ragdistill.analysis.quality import answer_context_ids, answer_group_ids
    from ragdistill.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    bare = tok(ANSWER, add_special_tokens=False)["input_ids"]
    spaced = tok(" " + ANSWER, add_special_tokens=False)["input_ids"]
    assert bare != spaced  # the premise: "Jane" vs " Jane"
    ids = answer_context_ids(ANSWER, tok)
    assert set(bare) | set(spaced) <= set(ids)
    assert all(tok.decode([i]).strip() for i in ids)  # no bare space piece
    assert answer_group_ids(bare, tok, answer=ANSWER)[: len(bare)] == bare
    assert answer_context_ids("   ", tok) == []


@pytest.mark.slow
def test_answer_occurrence_in_a_passage_has_similarity_one(smollm2, monkeypatch):
    """Through the analysis's own call site (analysis/run.py, which the training monitor uses too)."""
    import ragdistill.analysis.run as run
    from ragdistill.analysis.quality import max_cosine_similarity, passage_positions
    from ragdistill.readers.decoder import DecoderReader

    model, tok = smollm2
    reader = DecoderReader(model, tok)
    seen = {}
    original = run.measure_instance

    def spy(result, embeddings, answer_ids=None, **kw):
        seen["result"], seen["G"] = result, list(answer_ids)
        return original(result, embeddings, answer_ids=answer_ids, **kw)

    monkeypatch.setattr(run, "measure_instance", spy)
    inst = run.Instance(Question("q1", QUESTION, [ANSWER]), list(PASSAGES), noun_spans=[])
    analysis = run.analyze_reader(reader, [inst], name="smollm2", progress=False)
    result, G = seen["result"], seen["G"]
    ids = result.input_ids.tolist()
    s, e = result.passage_spans[0]
    occurrence = [s + i for i in _find(ids[s:e], tok(" " + ANSWER, add_special_tokens=False)["input_ids"])]
    assert occurrence, "the passage holds the answer verbatim"
    sim = max_cosine_similarity(np.asarray(ids)[occurrence], G, reader.input_embedding_matrix())
    assert np.all(sim == 1.0), (sim, [tok.decode([i]) for i in G])
    # those tokens are then in M_A at both percentiles
    pos = passage_positions(result)
    all_sim = max_cosine_similarity(np.asarray(ids)[pos], G, reader.input_embedding_matrix())
    assert analysis.measures[0].groups["answer"].by_percentile[95].threshold <= 1.0
    assert int((all_sim == 1.0).sum()) >= len(occurrence)
