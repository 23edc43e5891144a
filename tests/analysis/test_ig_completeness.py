"""Integrated-gradients completeness of the perplexity token scores (issue 15, item 7).

Σ_t g_t over a passage's tokens must equal the change of the answer's mean log-likelihood
between the input and the baseline, ΔS_i = S_i(x) − S_i(x'), up to the quadrature error; the
default (adaptive) rule keeps that error under 5 % (the 4-step midpoint rule, the previous
default, did not), reusing its nodes as it refines; ``steps=N`` still gives a fixed rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragdistill.analysis import perplexity as ig
from ragdistill.analysis.perplexity import (
    QUADRATURES,
    perplexity_token_scores,
    quadrature_nodes,
    trapezoid_weights,
)
from ragdistill.data.types import Passage, Question
from ragdistill.errors import ConfigError
from ragdistill.utils.ig_rule import check_ig_options

QUESTION = "Who wrote the novel Moby Dick?"
ANSWER = "Herman Melville"
PASSAGES = [
    Passage("a", "Moby Dick", "Moby Dick is an 1851 novel by the American writer Herman Melville about a whale hunt."),
    Passage("b", "Rome", "Rome is the capital city of Italy and of the Lazio region."),
]


@pytest.fixture(scope="module")
def tiny_reader(tiny_models):
    from ragdistill.readers import get_reader

    return get_reader(tiny_models["reader"], kind="decoder")


@pytest.fixture(scope="module")
def tiny_fid():
    from ragdistill.readers.fid import FiDReader
    from ragdistill.readers.fid_tiny import tiny_t5, tiny_tokenizer

    tok = tiny_tokenizer()
    return FiDReader(tiny_t5(tok, seed=0), tok, name="tiny-t5")


@pytest.fixture(scope="module")
def adaptive(tiny_reader):
    """The default (adaptive) rule on the tiny Llama, counting the sequences the model is run on."""
    calls: list[tuple[int, bool]] = []
    real = ig._answer_loglik

    def counting(reader, kind, embeds, *args, **kwargs):
        calls.append((int(embeds.shape[0]), bool(embeds.requires_grad)))
        return real(reader, kind, embeds, *args, **kwargs)

    ig._answer_loglik = counting
    try:
        result, diag = perplexity_token_scores(tiny_reader, QUESTION, PASSAGES, ANSWER)
    finally:
        ig._answer_loglik = real
    return result, diag, calls


@pytest.mark.parametrize("quadrature", QUADRATURES)
@pytest.mark.parametrize("m", [2, 3, 5, 8])
def test_quadrature_rules_integrate_polynomials(quadrature, m):
    nodes, weights = quadrature_nodes(m, quadrature)
    assert nodes.shape == weights.shape == (m,)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool(((nodes >= 0) & (nodes <= 1)).all())
    if quadrature == "gauss-legendre":  # exact up to degree 2m − 1
        for d in range(2 * m):
            assert float((weights * nodes**d).sum()) == pytest.approx(1.0 / (d + 1), rel=1e-10)
    with pytest.raises(ValueError):
        quadrature_nodes(0, quadrature)


def test_trapezoid_weights_on_a_non_uniform_grid():
    a = torch.tensor([0.0, 0.25, 0.375, 0.5, 1.0], dtype=torch.float64)
    w = trapezoid_weights(a)
    assert float(w.sum()) == pytest.approx(1.0)
    assert float((w * a).sum()) == pytest.approx(0.5)  # exact for linear integrands
    torch.testing.assert_close(w, torch.tensor([0.125, 0.1875, 0.125, 0.3125, 0.25], dtype=torch.float64))


def test_default_gains_are_complete_on_a_tiny_model(adaptive):
    _, diag, _ = adaptive
    assert diag.rule == "adaptive-trapezoid" and diag.tolerance == 0.05
    for ll, base, _total in zip(diag.loglik, diag.baseline_loglik, diag.gain_sums):
        delta = ll - base
        assert delta != 0
    assert diag.tolerance_reached()
    assert diag.completeness_error() <= diag.error_bound() < 0.05  # the bound holds and is met
    for g, total in zip(diag.raw_gains, diag.gain_sums):
        assert float(g.sum()) == pytest.approx(total)


def test_adaptive_rule_reuses_its_nodes(adaptive):
    _, diag, calls = adaptive
    assert all(grad for _, grad in calls)  # ΔS comes with the end nodes: no extra forward
    assert sum(b for b, _ in calls) == sum(diag.nodes)  # every sequence run is one node of a final grid
    for alphas, n in zip(diag.alphas, diag.nodes):
        assert alphas.numel() == n == len(set(alphas.tolist()))  # no node evaluated twice
        assert alphas[: ig.INITIAL_INTERVALS + 1].tolist() == [
            j / ig.INITIAL_INTERVALS for j in range(ig.INITIAL_INTERVALS + 1)
        ]
        assert ig.INITIAL_INTERVALS + 1 <= n <= ig.DEFAULT_MAX_STEPS
        # refinement only bisects: every later node is the midpoint of two earlier neighbours
        for k in range(ig.INITIAL_INTERVALS + 1, n):
            earlier = sorted(alphas[:k].tolist())
            a = float(alphas[k])
            lo = max(x for x in earlier if x < a)
            hi = min(x for x in earlier if x > a)
            assert a == pytest.approx((lo + hi) / 2)


def test_a_tight_tolerance_refines_until_max_steps(tiny_reader):
    _, loose = perplexity_token_scores(tiny_reader, QUESTION, PASSAGES[:1], ANSWER, tolerance=0.2)
    _, capped = perplexity_token_scores(tiny_reader, QUESTION, PASSAGES[:1], ANSWER, tolerance=1e-9, max_steps=12)
    assert loose.tolerance_reached() and loose.error_bound() < 0.2
    assert capped.nodes == [12] and capped.error_bound() > 1e-9  # stopped at max_steps, not at the tolerance
    assert not capped.tolerance_reached() or capped.completeness_error() < 1e-9


def test_fixed_steps_still_work(tiny_reader, adaptive):
    _, diag, _ = adaptive
    for steps, quadrature in ((4, "midpoint"), (3, "gauss-legendre"), (1, "midpoint")):
        _, fixed = perplexity_token_scores(tiny_reader, QUESTION, PASSAGES, ANSWER, steps=steps, quadrature=quadrature)
        assert fixed.nodes == [steps] * len(PASSAGES) and fixed.rule == f"{quadrature}-{steps}"
        assert fixed.error_bound() is None and fixed.completeness_error() is not None
        np.testing.assert_allclose(fixed.loglik, diag.loglik, rtol=1e-4, atol=1e-5)  # same S_i(x), S_i(x')
        np.testing.assert_allclose(fixed.baseline_loglik, diag.baseline_loglik, rtol=1e-4, atol=1e-5)
        nodes, _ = quadrature_nodes(steps, quadrature)
        torch.testing.assert_close(fixed.alphas[0], nodes)


def test_default_meets_the_tolerance_on_a_tiny_fid_reader(tiny_fid):
    passages = [
        Passage("1", "Moby Dick", "Herman Melville wrote Moby Dick in 1851."),
        Passage("2", "Eiffel Tower", "The Eiffel Tower is in Paris, France."),
    ]
    _, diag = perplexity_token_scores(tiny_fid, "who wrote the novel?", passages, "Herman Melville")
    assert diag.tolerance_reached() and diag.completeness_error() < 0.05
    ref = tiny_fid.perplexity_scores("who wrote the novel?", passages, "Herman Melville")
    np.testing.assert_allclose(diag.loglik, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_ig_options_are_checked():
    check_ig_options(None, 0.05, 128)
    check_ig_options(4, 0.05, 128)
    for bad in ((0, 0.05, 128), (None, 0.0, 128), (None, 1.5, 128), (None, 0.05, 2), (True, 0.05, 128)):
        with pytest.raises(ConfigError):
            check_ig_options(*bad)
    with pytest.raises(ValueError):
        perplexity_token_scores(None, QUESTION, PASSAGES, ANSWER, steps=0)


def test_completeness_error_is_recorded_per_instance(tiny_reader):
    from ragdistill.analysis.run import Instance, analyze_reader, ig_settings

    inst = Instance(Question("q1", QUESTION, [ANSWER]), list(PASSAGES), noun_spans=[])
    analysis = analyze_reader(tiny_reader, [inst], name="tiny", signal="perplexity", progress=False)
    record = analysis.records[0]
    gains = np.array(record["passage_loglik_gain"])
    sums = np.array(record["passage_gain_sum"])
    expected = float(np.abs(sums - gains).sum() / np.abs(gains).sum())
    assert record["ig_completeness_error"] == pytest.approx(expected)
    assert 0 <= record["ig_completeness_error"] <= record["ig_error_bound"] < 0.05
    assert record["ig_tolerance_reached"] is True and record["ig_rule"] == "adaptive-trapezoid"
    assert record["ig_nodes"] == sum(record["passage_ig_nodes"]) and len(record["passage_ig_nodes"]) == len(PASSAGES)
    torch.testing.assert_close(torch.tensor(sums), torch.tensor(gains), rtol=0.05, atol=1e-4)
    settings = ig_settings([analysis], None, 0.05, 128)
    assert settings["ig_rule"] == "adaptive-trapezoid" and settings["ig_within_tolerance_share"] == 1.0
    assert (
        settings["ig_completeness_error_median"]
        == settings["ig_completeness_error_max"]
        == record["ig_completeness_error"]
    )
    assert settings["ig_nodes_median"] == record["ig_nodes"]


def test_fixed_steps_are_recorded(tiny_reader):
    from ragdistill.analysis.run import Instance, analyze_reader, ig_settings

    inst = Instance(Question("q1", QUESTION, [ANSWER]), list(PASSAGES), noun_spans=[])
    analysis = analyze_reader(tiny_reader, [inst], name="tiny", signal="perplexity", progress=False, ig_steps=2)
    record = analysis.records[0]
    assert (
        record["ig_rule"] == "midpoint-2" and record["passage_ig_nodes"] == [2, 2] and record["ig_error_bound"] is None
    )
    assert record["ig_tolerance_reached"] == (record["ig_completeness_error"] < 0.05)
    assert ig_settings([analysis], 2, 0.05, 128)["ig_steps"] == 2


@pytest.mark.parametrize("which", ["decoder", "fid"])
def test_pooled_passages_give_the_one_at_a_time_values(which, tiny_reader, tiny_fid, monkeypatch):
    """The K passages' path points run in one right-padded batch, a decoder's shared prefix from its cache; the
    reference is one whole input per forward (no padding, no cache), as the analysis ran before."""
    reader = tiny_reader if which == "decoder" else tiny_fid
    passages = PASSAGES + [Passage("c", "Whale", "Whales are large marine mammals.")]  # three different lengths
    paths = [ig._Path(reader, QUESTION, p, ANSWER, "mean") for p in passages]
    prefix = ig._Instance(paths).prefix
    assert (prefix is not None and prefix.length > 0) if which == "decoder" else prefix is None
    for steps in (None, 3):
        _, pooled = perplexity_token_scores(reader, QUESTION, passages, ANSWER, steps=steps)
        monkeypatch.setattr(ig, "ROW_TOKENS", 1)  # every batch is a single row
        monkeypatch.setattr(ig, "PREFIX_CACHE", False)  # and runs the whole input
        _, alone = perplexity_token_scores(reader, QUESTION, passages, ANSWER, steps=steps)
        monkeypatch.undo()
        assert pooled.nodes == alone.nodes
        for a, b in zip(pooled.alphas, alone.alphas):
            torch.testing.assert_close(a, b)
        np.testing.assert_allclose(pooled.loglik, alone.loglik, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pooled.baseline_loglik, alone.baseline_loglik, rtol=1e-5, atol=1e-5)
        for g, h in zip(pooled.raw_gains, alone.raw_gains):
            torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-5)
    if which == "decoder":  # S_i(x) is the reader's own perplexity score of passage i alone
        ref = reader.perplexity_scores(QUESTION, passages, ANSWER)
        np.testing.assert_allclose(pooled.loglik, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_batches_respect_the_token_budget(monkeypatch):
    class P:
        kind = "fid"

        def __init__(self, n):
            self.x = torch.zeros(n, 2)

    inst = ig._Instance([P(10), P(30), P(20)])
    rows = [(i, a) for i in range(3) for a in (0.0, 0.5, 1.0)]
    monkeypatch.setattr(ig, "ROW_TOKENS", 64)
    batches = list(inst._batches(rows))
    assert [r for b in batches for r in b] == rows  # every row once, in order
    assert len(batches) > 1
    for b in batches:
        assert len(b) == 1 or max(inst.paths[i].x.shape[0] for i, _ in b) * len(b) <= 64
    monkeypatch.setattr(ig, "ROW_TOKENS", 1)
    assert [len(b) for b in inst._batches(rows)] == [1] * 9
