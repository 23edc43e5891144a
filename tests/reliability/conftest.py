"""Shared fixtures of the reliability suite: tiny random models and a tiny world on disk, a CLI runner.

The models are 2-layer random transformers saved with ``save_pretrained`` and loaded by path,
so every code path (transformers loading, prompts, FAISS, checkpoints) is the real one while
the arithmetic takes milliseconds. Hypothesis runs a fixed, derandomised number of examples
(profile ``reliability``), so CI is repeatable; ``HYPOTHESIS_PROFILE=reliability-long`` runs more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]

settings.register_profile("reliability", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large])
settings.register_profile("reliability-long", parent=settings.get_profile("reliability"), max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reliability"))

# Counts reported at the end of the session (see pytest_terminal_summary below).
COUNTS: dict[str, int] = {}


def count(key: str, n: int = 1) -> None:
    COUNTS[key] = COUNTS.get(key, 0) + n


def make_tiny_reader(out: Path, seed: int = 0) -> Path:
    """A 2-layer Llama (hidden 32) with SmolLM2's tokenizer, saved to `out`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ragdistill.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_tiny_retriever(out: Path, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32, no dropout) with MiniLM's tokenizer, saved to `out`."""
    from transformers import BertConfig, BertModel

    from ragdistill.models import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("rel_tiny_models")
    return {"reader": str(make_tiny_reader(root / "reader")), "retriever": str(make_tiny_retriever(root / "retriever"))}


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> dict[str, str]:
    from ragdistill.data.demo import write_demo_world

    root = tmp_path_factory.mktemp("rel_tiny_world")
    paths = write_demo_world(root, seed=0, countries=3, people=3, companies=3, rivers=2, inventions=2)
    return {k: str(v) for k, v in paths.items()}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m ragdistill ARGS` in a fresh process (1 torch thread, so runs repeat bit for bit)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONHASHSEED": "0", **(env or {})}
    full_env.pop("RAGDISTILL_FAULT", None) if not env or "RAGDISTILL_FAULT" not in env else None
    return subprocess.run([sys.executable, "-m", "ragdistill", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest hook signature
    if COUNTS:
        terminalreporter.write_sep("-", "reliability counts")
        for k in sorted(COUNTS):
            terminalreporter.write_line(f"{k}: {COUNTS[k]}")
