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
