"""A position-debiased attention signal: S averaged over several passage orders (validate-indicators, issue 18).

A decoder-only reader's attention depends on where a passage sits in the prompt (position
bias), not only on what it says. ``attention-debiased`` reads the same passages in
``orders`` different orders and averages each passage's score over them:

    S_i = mean_{o = 1..orders} S_i(order o)

Order 1 is the given order (so ``orders: 1`` is exactly the plain ``attention`` signal);
orders 2 .. K are the cyclic shifts of the given order (with ``orders = K`` every passage
sits at every position exactly once, so a score that is a position effect plus a passage
effect averages to the passage effect plus a constant, whatever the input order); orders
beyond K are permutations drawn with ``numpy.random.default_rng([seed, o])``. The other
options are the ``attention`` signal's (``layers``, ``value_norm``, ``aggregation``).

Cost: ``orders`` forward passes per question instead of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError
from ragdistill.signals import register_signal

NAME = "attention-debiased"
DEFAULT_ORDERS = 4


def passage_orders(k: int, orders: int, seed: int = 0) -> list[list[int]]:
    """The passage orders averaged over: the given order, its cyclic shifts, then seeded permutations.

    Each order lists, for every prompt position, the index of the passage placed there.
    """
    if int(orders) != orders or orders < 1:
        raise ConfigError("signal.orders", f"must be a whole number >= 1, got {orders!r}")
    base = list(range(k))
    out = [base[j:] + base[:j] for j in range(min(int(orders), max(k, 1)))]
    for o in range(len(out), int(orders)):
        out.append([int(i) for i in np.random.default_rng([int(seed), o]).permutation(k)])
    return out


def debiased_scores(score_fn, passages: Sequence[Passage], orders: int = DEFAULT_ORDERS, seed: int = 0) -> torch.Tensor:
    """mean over `passage_orders` of `score_fn(passages in that order)`, mapped back to the given order."""
    k = len(passages)
    total: torch.Tensor | None = None
    perms = passage_orders(k, orders, seed)
    for perm in perms:
        s = score_fn([passages[i] for i in perm]).detach().double().cpu()
        back = torch.zeros(k, dtype=torch.float64)
        back[torch.tensor(perm)] = s  # s[j] is the score of the passage at position j, passages[perm[j]]
        total = back if total is None else total + back
    assert total is not None
    return (total / len(perms)).float()


@register_signal(
    NAME,
    options=("orders", "layers", "value_norm", "aggregation"),
    token_scores=lambda reader, q, ps, a, **o: reader.attention_scores(q, ps, a, **o),
)
def debiased_attention_signal(
    reader: Any,
    question: str,
    passages: Sequence[Passage],
    answer: str,
    orders: int = DEFAULT_ORDERS,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    value_norm: bool = True,
    aggregation: str = "sum",
) -> torch.Tensor:
    """S_i of the ``attention`` signal averaged over `orders` passage orders (see the module docstring)."""

    def score(ps: list[Passage]) -> torch.Tensor:
        return reader.attention_scores(
            question, ps, answer, layers=layers, value_norm=value_norm, aggregation=aggregation
        ).passage_scores

    return debiased_scores(score, passages, orders=orders, seed=seed)


__all__ = ["DEFAULT_ORDERS", "NAME", "debiased_attention_signal", "debiased_scores", "passage_orders"]
