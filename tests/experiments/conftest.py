"""Tiny random models (decoder Llama, BERT retriever, FiD T5) and a tiny demo world, saved to disk.

The reproduce runner loads models by name like a user would, so the tiny ones are written
to directories: the code paths are the real ones, the arithmetic is tiny.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_models import make_tiny_reader, make_tiny_retriever


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    from ragdistill.readers.fid_tiny import write_tiny_t5

    root = tmp_path_factory.mktemp("repro_models")
    return {
        "reader": str(make_tiny_reader(root / "decoder")),
        "retriever": str(make_tiny_retriever(root / "retriever", dropout=0.1)),
        "fid": str(write_tiny_t5(root / "t5")),
    }


TINY_SETS = [
    "train.steps=2",
    "train.log_every=1",
    "train.save_every=0",
    "eval.every=2",
    "eval.batch_size=4",
    "eval.ks=[1,5]",
    "data.max_dev=4",
    "data.max_test=6",
    "reader.max_prompt_tokens=96",
    "reader.max_new_tokens=3",
    "retriever.max_length=48",
    "index.batch_size=16",
    "index.refresh=1",
    "optim.warmup_steps=1",
    "runtime.device=cpu",
]


def tiny_argv(models: dict[str, str], world: dict[str, str], out: Path, *extra: str) -> list[str]:
    """`ragdistill reproduce` arguments for a seconds-long run of every setting on the tiny models."""
    argv = [
        "reproduce",
        "--scale",
        "demo",
        "--out",
        str(out),
        "--corpus",
        world["corpus"],
        "--questions-train",
        world["train"],
        "--questions-dev",
        world["dev"],
        "--questions-test",
        world["test"],
        "--reader",
        models["reader"],
        "--encdec-reader",
        models["fid"],
        "--retriever",
        models["retriever"],
        "--analysis-n",
        "3",
        "--ig-steps",
        "1",
        "--no-progress",
        "--no-hub-check",
    ]
    for s in TINY_SETS:
        argv += ["--set", s]
    return argv + list(extra)
