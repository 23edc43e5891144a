"""Model construction for a run: the reader, the retriever, which parameters train, the indicator monitor."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ragdistill.analysis.monitor import IndicatorMonitor
from ragdistill.config import Config
from ragdistill.readers import get_reader, select_layers
from ragdistill.retrieval.retriever import CONFIG_NAME, BiEncoderRetriever


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_reader(cfg: Config, device: torch.device | None):
    opts: dict[str, Any] = dict(
        device=device,
        dtype=_dtype(cfg.reader.dtype),
        max_new_tokens=cfg.reader.max_new_tokens,
        batch_size=cfg.eval.batch_size,
        trust_remote_code=cfg.reader.trust_remote_code,
    )
    opts["max_prompt_tokens"] = cfg.reader.max_prompt_tokens
    return get_reader(cfg.reader.name, kind=cfg.reader.kind, **opts)


def build_retriever(cfg: Config, device: torch.device | None):
    r = cfg.retriever
    if (Path(r.name).expanduser() / CONFIG_NAME).is_file():  # a saved retriever keeps its own settings
        return BiEncoderRetriever.from_pretrained(r.name, query_only=r.query_only, device=device)
    return BiEncoderRetriever.from_pretrained(
        r.name, pooling=r.pooling, shared=r.shared, query_only=r.query_only, max_length=r.max_length, device=device
    )


def build_monitor(cfg: Config, dev_questions, index, retriever, out_dir: Path) -> IndicatorMonitor:
    return IndicatorMonitor.from_config(
        cfg, dev_questions, index, retriever, out_dir=out_dir, **dict(cfg.monitor.options)
    )


def set_trainable(module: torch.nn.Module, trainable: bool) -> list[torch.nn.Parameter]:
    module.requires_grad_(trainable)
    module.train(trainable)
    return [p for p in module.parameters() if p.requires_grad] if trainable else []


def unique(params: Sequence[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def check_layers(cfg: Config, reader) -> None:
    """signal.layers must exist in the reader: refused before the index is built, naming the key."""
    n = getattr(reader, "num_score_layers", None)
    if cfg.signal.layers is not None and n:  # an unknown layer count: the reader checks at the first step
        select_layers(cfg.signal.layers, n, key="signal.layers")
