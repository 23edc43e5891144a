"""Tiny random models saved to disk and loaded by path like real ones (shared by several suites).

The reader is a 2-layer Llama (hidden 32, GQA) with SmolLM2's tokenizer, the retriever a
2-layer BERT (hidden 32) with MiniLM's tokenizer: the code paths are the real ones
(transformers loading, prompts, attention capture, FAISS, checkpoints), the arithmetic is tiny.
"""

from __future__ import annotations

from pathlib import Path

import torch


def make_tiny_reader(out: Path, seed: int = 0) -> Path:
    """A 2-layer Llama (hidden 32, 4 heads, 2 KV heads) with SmolLM2's tokenizer, saved to `out`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ragdistill.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_tiny_retriever(out: Path, seed: int = 0, dropout: float = 0.0) -> Path:
    """A 2-layer BERT (hidden 32) with MiniLM's tokenizer, saved to `out`.

    Dropout is off by default so data-parallel and resumed runs compare exactly.
    """
    from transformers import BertConfig, BertModel

    from ragdistill.models import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_overrides(models: dict[str, str], world: dict[str, str], **extra) -> list[str]:
    """--set overrides that turn a demo config into a seconds-long run on the tiny models."""
    sets = {
        "reader.name": models["reader"],
        "reader.kind": "decoder",
        "reader.max_prompt_tokens": 96,
        "reader.max_new_tokens": 3,
        "retriever.name": models["retriever"],
        "retriever.max_length": 48,
        "data.corpus": world["corpus"],
        "data.train": world["train"],
        "data.dev": world["dev"],
        "data.test": world["test"],
        "data.max_dev": 6,
        "data.max_test": 4,
        "train.k": 3,
        "train.steps": 4,
        "train.log_every": 1,
        "train.save_every": 2,
        "eval.every": 2,
        "eval.batch_size": 4,
        "index.refresh": "2",
        "eval.ks": "[1, 3]",
        "runtime.device": "cpu",
        "runtime.threads": 0,
        "optim.warmup_steps": 1,
        "monitor.every": 0,
    }
    sets.update(extra)
    return [f"{k}={v}" for k, v in sets.items()]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    """Every final weight file of a run directory (reader/, retriever/), not the checkpoints."""
    from safetensors.torch import load_file

    out = {}
    for f in sorted(run.rglob("*.safetensors")):
        if "checkpoints" in f.parts:
            continue
        for k, v in load_file(str(f)).items():
            out[f"{f.relative_to(run)}:{k}"] = v
    return out


def run_metrics(run: Path, timing: tuple[str, ...]) -> list[dict]:
    """metrics.jsonl of a run without its timing fields (those differ between two identical runs)."""
    import json

    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in timing and not k.startswith("time/")} for r in recs]
