"""Per-instance measures against brute-force references (numpy / scipy / hand computation)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from ragdistill.analysis.quality import (
    SKIP_NO_NOUNS,
    InstanceMeasures,
    answer_group_ids,
    max_cosine_similarity,
    measure_instance,
    normalized_passage_scores,
    percentile_selection,
    question_noun_ids,
    spearman_or_none,
)
from ragdistill.readers.base import AttentionResult


def make_result(ids, scores, spans, answer_ids=(7,)):
    ids = torch.tensor(ids, dtype=torch.long)
    scores = torch.tensor(scores, dtype=torch.float32)
    ps = torch.stack([scores[s:e].sum() for s, e in spans])
    return AttentionResult(
        passage_scores=ps,
        token_scores=scores,
        input_ids=ids,
        passage_spans=list(spans),
        answer_span=(len(ids) - len(answer_ids), len(ids)),
        answer_ids=torch.tensor(answer_ids),
    )


def test_normalised_scores_cover_passage_tokens_only_and_sum_to_one():
    # positions 0-1 question/template, 2-4 passage 1, 5 template, 6-8 passage 2, 9 answer
    r = make_result([1, 2, 3, 4, 5, 6, 3, 4, 8, 7], [5, 5, 1, 2, 3, 9, 4, 0, 1, 0], [(2, 5), (6, 9)])
    pos, a = normalized_passage_scores(r)
    assert pos.tolist() == [2, 3, 4, 6, 7, 8]
    np.testing.assert_allclose(a, np.array([1, 2, 3, 4, 0, 1]) / 11)
    assert a.sum() == pytest.approx(1.0)


def test_per_token_scores_sum_to_passage_scores():
    r = make_result([1, 2, 3, 4, 5, 6, 3, 4, 8, 7], [5, 5, 1, 2, 3, 9, 4, 0, 1, 0], [(2, 5), (6, 9)])
    pos, a = normalized_passage_scores(r)
    total = float(r.passage_scores.sum())
    for i, (s, e) in enumerate(r.passage_spans):
        in_i = (pos >= s) & (pos < e)
        assert a[in_i].sum() * total == pytest.approx(float(r.passage_scores[i]), rel=1e-6)


def test_max_cosine_against_brute_force():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(12, 5))
    E[11] = 0.0  # a zero row has cosine 0 with everything
    toks = [0, 3, 3, 5, 11, 2]
    G = [5, 7]
    sim = max_cosine_similarity(toks, G, torch.tensor(E))
    ref = []
    for t in toks:
        best = -np.inf
        for g in G:
            nt, ng = np.linalg.norm(E[t]), np.linalg.norm(E[g])
            c = 0.0 if nt == 0 or ng == 0 else E[t] @ E[g] / (nt * ng)
            best = max(best, c)
        ref.append(best)
    np.testing.assert_allclose(sim, ref, atol=1e-12)
    assert sim[1] == sim[2]  # a repeated id gets exactly the same similarity
    assert sim[3] == 1.0  # a token of G is exactly 1


@given(st.lists(st.integers(0, 6), min_size=1, max_size=40), st.sampled_from([90, 95, 50, 0, 100]))
@settings(max_examples=60, deadline=None)
def test_percentile_selection_matches_numpy_with_ties(values, p):
    sim = np.asarray(values, dtype=float) / 6.0  # few distinct values: many ties
    mask, thr = percentile_selection(sim, p)
    assert thr == np.percentile(sim, p)  # linear interpolation, numpy's default
    brute = np.array([s >= thr for s in sim])
    assert (mask == brute).all()
    assert mask.any()  # the maximum is always selected


def test_percentile_selection_hand_example():
    sim = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0])
    mask, thr = percentile_selection(sim, 90)
    # 90th percentile of 11 values: rank 9.0 -> value 1.0 exactly (linear interpolation)
    assert thr == pytest.approx(1.0)
    assert mask.tolist() == [False] * 9 + [True, True]
    mask, thr = percentile_selection(sim[:-1], 90)  # 10 values: rank 8.1 -> 0.9 + 0.1*0.1
    assert thr == pytest.approx(0.91)
    assert mask.sum() == 1


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=30))
@settings(max_examples=80, deadline=None)
def test_spearman_matches_scipy_including_ties_and_constants(pairs):
    x = np.array([a for a, _ in pairs], dtype=float)
    y = np.array([b for _, b in pairs], dtype=float)
    rho, why = spearman_or_none(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = spearmanr(x, y).statistic
    if np.isnan(ref):
        assert rho is None and why in {"constant_attention", "constant_similarity"}
    else:
        assert rho == pytest.approx(ref, abs=1e-12)


def test_spearman_undefined_cases():
    assert spearman_or_none(np.array([0.3]), np.array([1.0])) == (None, "too_few_tokens")
    assert spearman_or_none(np.array([0.2, 0.2, 0.2]), np.array([1, 2, 3.0])) == (None, "constant_attention")
    assert spearman_or_none(np.array([0.1, 0.2, 0.3]), np.array([1, 1, 1.0])) == (None, "constant_similarity")
    rho, _ = spearman_or_none(np.array([0.1, 0.1, 0.3, 0.5]), np.array([1, 2, 2, 3.0]))  # ties: average ranks
    assert rho == pytest.approx(spearmanr([0.1, 0.1, 0.3, 0.5], [1, 2, 2, 3.0]).statistic)


def test_measure_instance_matches_hand_pipeline():
    rng = np.random.default_rng(1)
    V, D = 30, 8
    E = torch.tensor(rng.normal(size=(V, D)))
    T = 60
    ids = rng.integers(0, V, size=T)
    scores = rng.random(T)
    spans = [(5, 25), (30, 55)]
    r = make_result(ids.tolist(), scores.tolist(), spans, answer_ids=(3, 4))
    nouns = [9, 10, 11]
    m = measure_instance(r, E, answer_ids=[3, 4], noun_ids=nouns)
    pos = np.r_[5:25, 30:55]
    a = scores[pos].astype(np.float32).astype(np.float64)
    a = a / a.sum()
    En = E.numpy() / np.linalg.norm(E.numpy(), axis=1, keepdims=True)
    for group, G in (("answer", [3, 4]), ("question", nouns)):
        # rounded: a token of G has similarity exactly 1 (not 1 ± 1e-16), as the implementation guarantees
        sim = np.round((En[ids[pos]] @ En[G].T).max(axis=1), 12)
        for p in (90, 95):
            sel = sim >= np.percentile(sim, p) - 1e-11
            got = m.groups[group].by_percentile[p]
            assert got.n_selected == sel.sum()
            assert got.mean_attention == pytest.approx(a[sel].mean(), rel=1e-9)
            assert got.lift == pytest.approx(a[sel].mean() * len(pos), rel=1e-9)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns (and returns NaN) on constant input
                ref = spearmanr(a[sel], sim[sel]).statistic if sel.sum() > 1 else np.nan
            if np.isnan(ref):
                assert got.spearman is None
            else:
                assert got.spearman == pytest.approx(ref, abs=1e-9)
    assert m.n_passage_tokens == len(pos)
    # round trip through instances.jsonl's dict form
    back = InstanceMeasures.from_dict(m.to_dict())
    assert back.groups["answer"].by_percentile[95] == m.groups["answer"].by_percentile[95]


def test_uniform_attention_has_lift_one_and_undefined_spearman():
    E = torch.eye(6, dtype=torch.float64)
    r = make_result([0, 1, 2, 3, 4, 5, 1, 2], [1.0] * 8, [(1, 8)], answer_ids=(2,))
    m = measure_instance(r, E, answer_ids=[2], noun_ids=[])
    g = m.groups["answer"].by_percentile[95]
    assert g.lift == pytest.approx(1.0)
    assert g.spearman is None and g.undefined_reason == "constant_attention"
    assert m.groups["question"].skipped == SKIP_NO_NOUNS


def test_answer_group_drops_special_tokens():
    class Tok:
        all_special_ids = [1]

    assert answer_group_ids(torch.tensor([5, 6, 1]), Tok()) == [5, 6]


def test_question_noun_ids_with_real_spacy_and_a_bpe_tokenizer():
    pytest.importorskip("spacy")
    from ragdistill.models import load_spacy, load_tokenizer

    try:
        nlp = load_spacy()
        tok = load_tokenizer("smollm2-135m")
    except Exception as exc:  # pragma: no cover - the bundled packages are part of the install
        pytest.skip(f"bundled models unavailable: {exc}")
    ids = question_noun_ids("Who wrote the play Hamlet in London?", tok, nlp)
    words = {tok.decode([i]).strip() for i in ids}
    assert {"play", "London"} <= words and "Who" not in words and "wrote" not in words
    assert "Ham" in "".join(words)  # Hamlet, whatever the BPE split
    assert question_noun_ids("is it?", tok, nlp) == []
