"""Tiny random models and a tiny demo world, saved to disk and loaded by path like real ones.

The reader is a 2-layer Llama (hidden 32) with SmolLM2's tokenizer, the retriever a
2-layer BERT (hidden 32) with MiniLM's tokenizer: the code paths are the real ones
(transformers loading, prompts, attention capture, FAISS), the arithmetic is tiny.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def make_tiny_reader(out: Path, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from ragdistill.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_tiny_retriever(out: Path, seed: int = 0) -> Path:
    from transformers import BertConfig, BertModel

    from ragdistill.models import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # data-parallel runs compare exactly
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


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
