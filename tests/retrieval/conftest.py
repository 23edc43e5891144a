"""Fixtures of the retrieval tests: a tiny random retriever and a small synthetic corpus."""

from __future__ import annotations

import pytest
import torch

from tests.retrieval.tiny import make_tiny_retriever, synthetic_passages


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_models(request):
    """Tiny models run 10-20x faster on one thread on a busy 2-core CI box; real models keep the default."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def tiny_retriever():
    return make_tiny_retriever(seed=0)


@pytest.fixture(scope="module")
def passages():
    return synthetic_passages(120, seed=0)
