"""The measures on real readers: the bundled SmolLM2 (slow) and a tiny random FiD reader (fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ragdistill.analysis.monitor import IndicatorMonitor
from ragdistill.analysis.perplexity import passage_token_gains, perplexity_token_scores
from ragdistill.analysis.quality import answer_group_ids, measure_instance, normalized_passage_scores
from ragdistill.data.types import Passage, Question

PASSAGES = [
    Passage("1", "Moby Dick", "Herman Melville wrote Moby Dick in 1851."),
    Passage("2", "Eiffel Tower", "The Eiffel Tower is in Paris, France."),
    Passage("3", "Rome", "Rome is the capital city of Italy."),
]


def check_sums(result) -> None:
    """Σ_{t∈n_i} â_t × Σ_j S_j = S_i: the normalised token scores of a passage add up to its score."""
    pos, a_hat = normalized_passage_scores(result)
    total = float(result.passage_scores.sum())
    assert a_hat.sum() == pytest.approx(1.0)
    for i, (s, e) in enumerate(result.passage_spans):
        in_i = (pos >= s) & (pos < e)
        assert a_hat[in_i].sum() * total == pytest.approx(float(result.passage_scores[i]), rel=1e-4, abs=1e-7)
        assert float(result.token_scores[s:e].sum()) == pytest.approx(float(result.passage_scores[i]), rel=1e-4)


@pytest.fixture(scope="module")
def tiny_fid():
    from ragdistill.readers.fid import FiDReader
    from ragdistill.readers.fid_tiny import tiny_t5, tiny_tokenizer

    tok = tiny_tokenizer()
    return FiDReader(tiny_t5(tok, seed=0), tok, name="tiny-t5")


def test_fid_reader_token_scores_sum_to_passage_scores_and_measure(tiny_fid):
    r = tiny_fid.attention_scores("who wrote the novel?", PASSAGES, "Herman Melville")
    check_sums(r)
    a_ids = answer_group_ids(r.answer_ids, tiny_fid.tokenizer)
    m = measure_instance(r, tiny_fid.input_embedding_matrix(), answer_ids=a_ids, noun_ids=a_ids[:1])
    for g in ("answer", "question"):
        for p in (90, 95):
            sm = m.groups[g].by_percentile[p]
            assert sm.n_selected >= 1 and math.isfinite(sm.mean_attention) and sm.lift > 0


def test_perplexity_gains_match_reader_loglik_and_complete_as_steps_grow(tiny_fid):
    q, ans = "who wrote the novel?", "Herman Melville"
    ref = tiny_fid.perplexity_scores(q, PASSAGES, ans)
    errors = []
    for steps in (1, 8, 64):
        result, diag = perplexity_token_scores(tiny_fid, q, PASSAGES, ans, steps=steps)
        np.testing.assert_allclose(diag.loglik, ref.numpy(), rtol=1e-4, atol=1e-5)  # same S_i as the perplexity signal
        gain = np.array(diag.loglik) - np.array(diag.baseline_loglik)
        errors.append(float(np.abs(np.array(diag.gain_sums) - gain).max()))
        check_sums(result)  # positive parts: Σ w_t over a passage = that passage's score in the result
        assert (result.token_scores >= 0).all()
    assert errors[-1] < errors[0] and errors[-1] < 0.05 * max(1e-3, float(np.abs(gain).max())) + 1e-3


def test_monitor_logs_and_stops_after_patience(tiny_fid):
    qs = [Question("a", "who wrote the novel?", ["Herman Melville"]), Question("b", "where is the tower?", ["Paris"])]
    passages = [PASSAGES, PASSAGES[::-1]]
    from ragdistill.models import load_spacy

    nlp = load_spacy()
    mon = IndicatorMonitor(qs, passages=passages, every=10, patience=2, reference="first", nlp=nlp)
    assert mon.is_due(20) and not mon.is_due(15)
    out = mon.check(tiny_fid, 0)
    assert out["indicators/failed_both"] == 0.0 and "indicators/indicator1" not in out  # undefined: not logged
    assert "indicators/answer_p95_lift" in out and "indicators/probe_hr@5" in out
    assert out["indicators/probe_hr@5"] == 1.0
    # the same reader again: not strictly better than itself -> both indicators fail
    out = mon.check(tiny_fid, 10)
    assert out["indicators/indicator1"] == 0.0 and out["indicators/failed_both"] == 1.0
    assert not mon.should_stop()
    mon.check(tiny_fid, 20)
    assert mon.should_stop() and "2 consecutive checks" in mon.stop_message()
    # an unbeatable reference: every check fails both
    assert [h["step"] for h in mon.history] == [0, 10, 20]
    unbeatable = {
        g: {f"p{p}": {"attention_mean": 1.0, "lift_mean": 1e9, "spearman_mean": 1.0} for p in (90, 95)}
        for g in ("answer", "question")
    }
    mon2 = IndicatorMonitor(qs, passages=passages, every=1, patience=1, reference=unbeatable, nlp=nlp)
    mon2.check(tiny_fid, 1)
    assert mon2.should_stop()


@pytest.mark.slow
def test_bundled_reader_token_scores_sum_to_passage_scores(smollm2):
    from ragdistill.analysis.quality import question_noun_ids
    from ragdistill.models import load_spacy
    from ragdistill.readers.decoder import DecoderReader

    model, tok = smollm2
    reader = DecoderReader(model, tok)
    q = "Who wrote Moby Dick?"
    r = reader.attention_scores(q, PASSAGES, "Herman Melville")
    check_sums(r)
    nouns = question_noun_ids(q, tok, load_spacy())
    assert nouns
    m = measure_instance(
        r, reader.input_embedding_matrix(), answer_ids=answer_group_ids(r.answer_ids, tok), noun_ids=nouns
    )
    ans = m.groups["answer"].by_percentile[95]
    # the answer's own tokens occur in passage 1: they have similarity 1 and are selected
    assert ans.threshold <= 1.0 and ans.n_selected >= 2
    # the perplexity per-token path reproduces the reader's perplexity signal exactly
    layout, gains, ll, base_ll = passage_token_gains(reader, q, PASSAGES[0], "Herman Melville", steps=1)
    assert ll == pytest.approx(float(reader.perplexity_scores(q, PASSAGES[:1], "Herman Melville")[0]), abs=1e-4)
    assert gains.shape[0] == layout.passage_spans[0][1] - layout.passage_spans[0][0]
    assert torch.isfinite(gains).all()


def test_monitor_from_training_config(tiny_fid, tmp_path):
    """The training loop's form: IndicatorMonitor.from_config(cfg, dev_questions, index, retriever, out_dir=..., **options)."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(
        monitor=SimpleNamespace(every=5, instances=2, options={}),
        train=SimpleNamespace(k=3, seed=0),
        signal=SimpleNamespace(name="attention", layers=None, value_norm=True, aggregation="sum"),
        trains_reader=True,
    )

    class FixedIndex:
        def retrieve(self, retriever, questions, k):
            from ragdistill.retrieval.index import Retrieved

            return [[Retrieved(p, 1.0, r + 1, r) for r, p in enumerate(PASSAGES[:k])] for _ in questions]

    qs = [
        Question(str(i), q, [a])
        for i, (q, a) in enumerate(
            [
                ("who wrote the novel?", "Herman Melville"),
                ("where is the tower?", "Paris"),
                ("what is the capital of Italy?", "Rome"),
            ]
        )
    ]
    mon = IndicatorMonitor.from_config(cfg, qs, FixedIndex(), object(), out_dir=tmp_path / "monitor", patience=1)
    assert mon.every == 5 and mon.k == 3 and len(mon.questions) == 2 and mon.reference_mode == "first"
    assert mon.patience == 1  # every monitor.options key reaches the monitor (patience was once dropped)
    mon.check(tiny_fid, 5)
    assert (tmp_path / "monitor" / "history.jsonl").read_text().count("\n") == 1
    with pytest.raises(Exception, match="unknown option"):
        IndicatorMonitor.from_config(cfg, qs, FixedIndex(), object(), bogus=1)

    # refresh_passages: each check retrieves from the index it is handed (the run's current one after a refresh)
    class CountingIndex(FixedIndex):
        def __init__(self):
            self.calls = 0

        def retrieve(self, retriever, questions, k):
            self.calls += 1
            return super().retrieve(retriever, questions, k)

    built_with, current = CountingIndex(), CountingIndex()
    mon = IndicatorMonitor.from_config(cfg, qs, built_with, object(), refresh_passages=True, prefix="probe/")
    assert mon.refresh_passages and mon.prefix == "probe/" and mon.patience == 3
    mon.check(tiny_fid, 5)
    mon.check(tiny_fid, 10, index=current)
    mon.check(tiny_fid, 15)  # without an index: the last one it was handed
    assert (built_with.calls, current.calls) == (1, 2)
