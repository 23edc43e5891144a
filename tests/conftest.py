"""Shared fixtures: paths to ../shared/data and the real bundled models (loaded once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RAGDISTILL_SHARED_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_file(rel: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (it lives in ../shared/data beside the project)")
    return path


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the bundled SmolLM2-135M reader, float32, eval mode."""
    from ragdistill.models import load_causal_lm

    return load_causal_lm("smollm2-135m")


@pytest.fixture(scope="session")
def minilm():
    """(model, tokenizer) of the bundled MiniLM-L6 encoder."""
    from ragdistill.models import load_encoder

    return load_encoder("minilm-l6")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> dict[str, str]:
    """A small seeded demo world (corpus, train/dev/test questions) on disk; read-only for the tests."""
    from ragdistill.data.demo import write_demo_world

    root = tmp_path_factory.mktemp("tiny_world")
    paths = write_demo_world(root, seed=0, countries=3, people=3, companies=3, rivers=2, inventions=2)
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """A 2-layer Llama reader and a 2-layer BERT retriever saved to disk (tests/tiny_models.py).

    tests/experiments overrides it with a set that also holds a tiny FiD T5.
    """
    from tests.tiny_models import make_tiny_reader, make_tiny_retriever

    root = tmp_path_factory.mktemp("tiny_models")
    return {"reader": str(make_tiny_reader(root / "reader")), "retriever": str(make_tiny_retriever(root / "retriever"))}
