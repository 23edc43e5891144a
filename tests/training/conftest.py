"""Tiny random models and a tiny demo world, saved to disk and loaded by path like real ones.

The reader is a 2-layer Llama (hidden 32) with SmolLM2's tokenizer, the retriever a
2-layer BERT (hidden 32) with MiniLM's tokenizer: the code paths are the real ones
(transformers loading, prompts, attention capture, FAISS), the arithmetic is tiny.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.tiny_models import make_tiny_reader, make_tiny_retriever


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {"reader": str(make_tiny_reader(root / "reader")), "retriever": str(make_tiny_retriever(root / "retriever"))}


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> dict[str, str]:
    from ragdistill.data.demo import write_demo_world

    root = tmp_path_factory.mktemp("tiny_world")
    paths = write_demo_world(root, seed=0, countries=3, people=3, companies=3, rivers=2, inventions=2)
    return {k: str(v) for k, v in paths.items()}


def tiny_overrides(models: dict[str, str], world: dict[str, str], **extra) -> list[str]:
    """--set overrides that turn a demo config into a seconds-long run on the tiny models."""
    sets = {
        "reader.name": models["reader"], "reader.kind": "decoder", "reader.max_prompt_tokens": 96,
        "reader.max_new_tokens": 3, "retriever.name": models["retriever"], "retriever.max_length": 48,
        "data.corpus": world["corpus"], "data.train": world["train"], "data.dev": world["dev"], "data.test": world["test"],
        "data.max_dev": 6, "data.max_test": 4, "train.k": 3, "train.steps": 4, "train.log_every": 1,
        "train.save_every": 2, "eval.every": 2, "eval.batch_size": 4, "index.refresh": "2", "eval.ks": "[1, 3]",
        "runtime.device": "cpu", "runtime.threads": 0, "optim.warmup_steps": 1, "monitor.every": 0,
    }
    sets.update(extra)
    return [f"{k}={v}" for k, v in sets.items()]
