"""Integrated-gradients completeness of the perplexity token scores (issue 15, item 7).

Σ_t g_t over a passage's tokens must equal the change of the answer's mean log-likelihood
between the input and the baseline, ΔS_i = S_i(x) − S_i(x'), up to the quadrature error; the
default rule keeps that error under 5 % (the 4-step midpoint rule, the previous default, did not).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragdistill.analysis.perplexity import QUADRATURES, perplexity_token_scores, quadrature_nodes
from ragdistill.data.types import Passage, Question

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


@pytest.mark.parametrize("quadrature", QUADRATURES)
@pytest.mark.parametrize("m", [2, 3, 5, 8])
def test_quadrature_rules_integrate_polynomials(quadrature, m):
    nodes, weights = quadrature_nodes(m, quadrature)
    assert nodes.shape == weights.shape == (m,)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool(((nodes >= 0) & (nodes <= 1)).all())
    if quadrature == "gauss-legendre":        # exact up to degree 2m − 1
        for d in range(2 * m):
            assert float((weights * nodes ** d).sum()) == pytest.approx(1.0 / (d + 1), rel=1e-10)
    with pytest.raises(ValueError):
        quadrature_nodes(0, quadrature)


def test_default_gains_are_complete_on_a_tiny_model(tiny_reader):
    _, diag = perplexity_token_scores(tiny_reader, QUESTION, PASSAGES, ANSWER)
    for ll, base, total in zip(diag.loglik, diag.baseline_loglik, diag.gain_sums):
        delta = ll - base
        assert delta != 0
        assert abs(total - delta) / abs(delta) < 0.05, (total, delta)
    for g, total in zip(diag.raw_gains, diag.gain_sums):
        assert float(g.sum()) == pytest.approx(total)


def test_completeness_error_is_recorded_per_instance(tiny_reader):
    from ragdistill.analysis.run import Instance, analyze_reader

    inst = Instance(Question("q1", QUESTION, [ANSWER]), list(PASSAGES), noun_spans=[])
    analysis = analyze_reader(tiny_reader, [inst], name="tiny", signal="perplexity", progress=False)
    record = analysis.records[0]
    gains = np.array(record["passage_loglik_gain"])
    sums = np.array(record["passage_gain_sum"])
    expected = float(np.abs(sums - gains).sum() / np.abs(gains).sum())
    assert record["ig_completeness_error"] == pytest.approx(expected)
    assert 0 <= record["ig_completeness_error"] < 0.05
    torch.testing.assert_close(torch.tensor(sums), torch.tensor(gains), rtol=0.05, atol=1e-4)
