"""Targets and the KL distillation loss against torch's kl_div and a hand-computed example."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ragdistill.errors import ConfigError
from ragdistill.signals import available_signals, distillation_loss, get_signal, p_retr, register_signal, target


def test_target_softmax_and_normalize_by_hand():
    S = torch.tensor([1.0, 2.0, 3.0])
    e = [math.exp(x / 0.5) for x in (1, 2, 3)]
    torch.testing.assert_close(target(S, 0.5), torch.tensor([x / sum(e) for x in e]))
    torch.testing.assert_close(target(S, mode="normalize"), torch.tensor([1 / 6, 2 / 6, 3 / 6]))
    # zero sums -> uniform, row by row
    got = target(torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 3.0]]), mode="normalize")
    torch.testing.assert_close(got, torch.tensor([[0.25] * 4, [0.0, 0.25, 0.0, 0.75]]))


def test_target_is_detached_and_validates():
    S = torch.tensor([0.2, 0.1], requires_grad=True)
    assert not target(S).requires_grad
    with pytest.raises(ConfigError, match="tau_gold"):
        target(S, tau_gold=0)
    with pytest.raises(ConfigError, match="tau_gold"):
        target(S, tau_gold=float("nan"))
    with pytest.raises(ConfigError, match="mode"):
        target(S, mode="sharpen")
    with pytest.raises(ConfigError, match="non-negative"):
        target(torch.tensor([-1.0, -2.0]), mode="normalize")


def test_p_retr():
    s = torch.tensor([[0.3, -0.2, 1.0]])
    torch.testing.assert_close(p_retr(s, 0.1), torch.softmax(s / 0.1, -1))
    with pytest.raises(ConfigError, match="theta"):
        p_retr(s, -1.0)


def test_loss_hand_computed_example():
    # p_gold = softmax([0, ln 3]) = [1/4, 3/4]; p_retr = softmax([0, 0]) = [1/2, 1/2]
    loss = distillation_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3.0)]]), theta=1.0)
    want = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert loss.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("mode", ["softmax", "normalize"])
def test_loss_matches_torch_kl_div_and_grads_only_reach_retriever(mode):
    torch.manual_seed(0)
    s = torch.randn(4, 5, requires_grad=True)
    S = torch.rand(4, 5, requires_grad=True)
    theta, tau = 0.7, 0.3
    loss = distillation_loss(s, S, theta, tau, mode)
    p_gold = torch.softmax(S.detach() / tau, -1) if mode == "softmax" else S.detach() / S.detach().sum(-1, keepdim=True)
    ref = F.kl_div(F.log_softmax(s / theta, -1), p_gold, reduction="batchmean")
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-7)
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert S.grad is None  # p_gold is detached


def test_loss_edge_cases_are_finite():
    zeros = torch.zeros(2, 5, requires_grad=True)
    assert distillation_loss(zeros, torch.zeros(2, 5), 1.0).item() == pytest.approx(0.0, abs=1e-7)
    assert distillation_loss(zeros, torch.zeros(2, 5), 1.0, mode="normalize").item() == pytest.approx(0.0, abs=1e-7)
    one = torch.tensor([[3.0]], requires_grad=True)
    assert distillation_loss(one, torch.tensor([[7.0]]), 0.1).item() == 0.0  # K = 1
    for theta, tau in [(1e-8, 1e-8), (1e-30, 1.0), (1.0, 1e-30), (1e-6, 1e-6)]:
        s = torch.tensor([[0.5, 0.1, -0.3], [0.0, 0.0, 1e-3]], requires_grad=True)
        loss = distillation_loss(s, torch.tensor([[0.1, 0.9, 0.3], [2.0, 2.0, 2.0]]), theta, tau)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(s.grad).all(), (theta, tau)


def test_loss_mask_equals_dropping_padded_slots():
    s = torch.tensor([[0.2, 0.5, 9.0], [0.1, -0.4, 0.3]])
    S = torch.tensor([[1.0, 3.0, -5.0], [0.3, 0.2, 0.1]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    got = distillation_loss(s, S, 0.5, 2.0, mask=mask)
    want = (distillation_loss(s[:1, :2], S[:1, :2], 0.5, 2.0) + distillation_loss(s[1:], S[1:], 0.5, 2.0)) / 2
    torch.testing.assert_close(got, want)


def test_loss_validation():
    s = torch.zeros(1, 3)
    with pytest.raises(ConfigError, match="theta"):
        distillation_loss(s, s, 0.0)
    with pytest.raises(ConfigError, match="tau_gold"):
        distillation_loss(s, s, 1.0, tau_gold=-2)
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        distillation_loss(torch.zeros(1, 3), torch.zeros(1, 4), 1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=6), st.floats(1e-4, 10), st.floats(1e-4, 10), st.randoms())
def test_loss_non_negative_and_zero_when_distributions_match(scores, theta, tau, rnd):
    s = torch.tensor([scores], dtype=torch.float64)
    S = torch.tensor([[rnd.uniform(-3, 3) for _ in scores]], dtype=torch.float64)
    assert distillation_loss(s, S, theta, tau).item() >= -1e-9
    # p_RETR equals p_gold when s/θ = S/τ
    assert distillation_loss(S * theta / tau, S, theta, tau).item() == pytest.approx(0.0, abs=1e-6)


class _FakeReader:
    def attention_scores(self, question, passages, answer, layers=None, value_norm=True, aggregation="sum"):
        class R:
            passage_scores = torch.tensor([float(len(passages)), 1.0 if value_norm else 0.0])

        self.opts = (layers, value_norm, aggregation)
        return R()

    def perplexity_scores(self, question, passages, answer):
        return torch.tensor([-1.0, -2.0])


def test_registry():
    assert {"attention", "perplexity"} <= set(available_signals())
    reader = _FakeReader()
    assert get_signal("attention")(reader, "q", [1, 2], "a", layers=[0], value_norm=False).tolist() == [2.0, 0.0]
    assert reader.opts == ([0], False, "sum")
    assert get_signal("perplexity")(reader, "q", [1, 2], "a", layers=None).tolist() == [-1.0, -2.0]
    with pytest.raises(ConfigError, match="perplexity signal takes no options"):
        get_signal("perplexity")(reader, "q", [1, 2], "a", layers=[1])
    with pytest.raises(ConfigError, match="available: attention"):
        get_signal("gradient")

    @register_signal("constant-test")
    def constant(reader, question, passages, answer):
        return torch.ones(len(passages))

    assert get_signal("constant-test")(None, "q", [1, 2, 3], "a").tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="already registered"):
        register_signal("constant-test")(lambda *a: None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gradient_stays_finite_at_the_smallest_temperatures(dtype):
    """θ = 1e-45 (the smallest float32): the gradient (q - p)/θ would overflow; T is floored instead."""
    S = torch.tensor([[1e4, 0.0, 0.0]])
    s = torch.zeros(1, 3, dtype=dtype, requires_grad=True)
    loss = distillation_loss(s, S, theta=1e-45, tau_gold=1e-45)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert s.grad[0, 0] < 0 < s.grad[0, 1]  # still pushes the retriever towards the reader's passage
