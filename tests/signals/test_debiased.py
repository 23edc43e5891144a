"""The position-debiased attention signal (signals/debiased.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

from ragdistill.data.types import Passage
from ragdistill.signals import available_signals, get_signal
from ragdistill.signals.debiased import debiased_scores, passage_orders

PASSAGES = [Passage(id=f"p{i}", title="", text=f"text {i}") for i in range(4)]
POSITION = [3.0, 1.0, 0.5, 0.25]  # a pure position effect
CONTENT = {"p0": 0.1, "p1": 0.7, "p2": 0.3, "p3": 0.9}


class _Result:
    def __init__(self, s):
        self.passage_scores = torch.tensor(s)


class PositionReader:
    """S_j = position effect of slot j + content effect of the passage there."""

    calls = 0

    def attention_scores(self, question, passages, answer, layers=None, value_norm=True, aggregation="sum"):
        PositionReader.calls += 1
        return _Result([POSITION[j] + CONTENT[p.id] for j, p in enumerate(passages)])


def test_registered_by_name():
    assert "attention-debiased" in available_signals()


def test_orders_one_equals_plain_signal():
    r = PositionReader()
    plain = get_signal("attention")(r, "q", PASSAGES, "a")
    deb = get_signal("attention-debiased")(r, "q", PASSAGES, "a", orders=1)
    assert torch.allclose(plain.float(), deb)


def test_average_is_order_invariant_on_a_permutation_symmetric_case():
    r = PositionReader()
    fn = get_signal("attention-debiased")
    ref = None
    for perm in itertools.permutations(range(4)):
        ps = [PASSAGES[i] for i in perm]
        s = fn(r, "q", ps, "a", orders=4)  # orders = K: every passage at every position once
        by_id = {p.id: float(v) for p, v in zip(ps, s)}
        if ref is None:
            ref = by_id
        assert by_id == pytest.approx(ref, abs=1e-6)
    mean_pos = sum(POSITION) / 4
    assert ref == pytest.approx({k: v + mean_pos for k, v in CONTENT.items()}, abs=1e-6)


def test_orders_are_seeded_and_start_with_the_given_order():
    assert passage_orders(3, 1) == [[0, 1, 2]]
    assert passage_orders(3, 6, seed=1) == passage_orders(3, 6, seed=1)
    assert passage_orders(3, 6, seed=1)[:3] == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    s = debiased_scores(lambda ps: torch.tensor([POSITION[j] for j in range(len(ps))]), PASSAGES, orders=4)
    assert torch.allclose(s, torch.full((4,), sum(POSITION) / 4))


def test_real_tiny_reader_orders_one_matches_attention(tiny_models):
    from ragdistill.readers import get_reader

    reader = get_reader(tiny_models["reader"], kind="decoder", device="cpu", max_prompt_tokens=96)
    ps = [Passage(id=f"d{i}", title="T", text=f"River {i} flows through Ardan.") for i in range(3)]
    plain = get_signal("attention")(reader, "Where does river 1 flow?", ps, "Ardan")
    deb1 = get_signal("attention-debiased")(reader, "Where does river 1 flow?", ps, "Ardan", orders=1)
    deb3 = get_signal("attention-debiased")(reader, "Where does river 1 flow?", ps, "Ardan", orders=3)
    assert torch.allclose(plain.float(), deb1, atol=1e-6)
    assert deb3.shape == (3,) and torch.isfinite(deb3).all()
