"""Readers: a language model that answers from retrieved passages and says where it looked.

``get_reader(name, kind="auto")`` returns a :class:`DecoderReader` (causal LMs: SmolLM2,
Llama, Qwen, Mistral, Falcon, ...) or a ``FiDReader`` (encoder-decoder models, T5 family).
Both expose ``generate``, ``attention_scores``, ``perplexity_scores``, ``lm_loss`` and
``lm_loss_and_attention`` (see docs/ARCHITECTURE.md, "Readers").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, ModelError
from ragdistill.models import resolve
from ragdistill.readers.base import SPANS, AttentionResult
from ragdistill.readers.decoder import DecoderReader
from ragdistill.readers.eq1 import select_layers
from ragdistill.readers.fid import FiDReader, is_fid_name

KINDS = ("auto", "decoder", "fid")

__all__ = [
    "AttentionResult",
    "SPANS",
    "Reader",
    "DecoderReader",
    "FiDReader",
    "get_reader",
    "detect_kind",
    "select_layers",
    "KINDS",
]


@runtime_checkable
class Reader(Protocol):
    """What training, evaluation and analysis may rely on, whatever the reader kind."""

    kind: str
    tokenizer: Any
    model: torch.nn.Module
    num_score_layers: int | None  # how many layers `attention_scores(layers=None)` averages over (eq1.select_layers)

    def generate(self, questions: list[str], passages: list[list[Passage]]) -> list[str]: ...

    def attention_scores(
        self,
        question: str,
        passages: Sequence[Passage],
        answer: str,
        layers: Sequence[int] | None = None,
        value_norm: bool = True,
        aggregation: str = "sum",
        span: str = "block",
    ) -> AttentionResult: ...

    def perplexity_scores(self, question: str, passages: Sequence[Passage], answer: str) -> torch.Tensor: ...

    def lm_loss(self, questions: list[str], passages: list[list[Passage]], answers: list[str]) -> torch.Tensor: ...

    def lm_loss_and_attention(
        self, questions: list[str], passages: list[list[Passage]], answers: list[str], **attention_opts: Any
    ) -> tuple[torch.Tensor, list[AttentionResult]]: ...

    def input_embedding_matrix(self) -> torch.Tensor: ...

    def save_pretrained(self, out_dir: str | Path) -> None: ...


def detect_kind(name: str, trust_remote_code: bool = False) -> str:
    """'fid' for an encoder-decoder config, 'decoder' for a causal LM (reads only the config)."""
    if is_fid_name(name):
        return "fid"  # bundled encoder-decoder reader names (e.g. minilm-bert2bert)
    src = resolve(name)
    if src.gguf_file:
        return "decoder"  # GGUF files hold decoder-only LMs
    saved = Path(src.path) / "ragdistill_reader.json"
    if saved.is_file():
        kind = json.loads(saved.read_text()).get("kind")
        if kind in ("decoder", "fid"):
            return kind
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(src.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"could not read the config of reader '{name}' ({exc.__class__.__name__}): pass a bundled name "
            "(smollm2-135m), a local model directory or a reachable Hugging Face id"
        ) from exc
    return "fid" if getattr(config, "is_encoder_decoder", False) else "decoder"


def get_reader(name: str = "smollm2-135m", kind: str = "auto", **options: Any) -> Reader:
    """Load a reader by model name; `kind` 'auto' picks FiD for encoder-decoder configs, decoder otherwise.

    Options go to the reader's constructor (decoder: device, dtype, template, max_prompt_tokens,
    max_new_tokens, batch_size, train_eos, trust_remote_code).
    """
    if kind not in KINDS:
        raise ConfigError("reader.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "auto":
        kind = detect_kind(name, trust_remote_code=bool(options.get("trust_remote_code", False)))
    if kind == "fid":
        return FiDReader.from_pretrained(name, **options)
    return DecoderReader(name, **options)
