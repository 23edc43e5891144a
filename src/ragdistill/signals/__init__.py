"""Supervision signals: the reader's passage scores S, the target p_gold and the KL loss.

``get_signal(name)(reader, question, passages, answer, **opts) -> Tensor[K]``:

* ``attention`` — S_i from the reader's attention on passage i's tokens (DESIGN §3); options
  ``layers``, ``value_norm``, ``aggregation``.
* ``perplexity`` — S_i = −mean NLL of the answer given the question and passage i alone.
* ``attention-debiased`` — ``attention`` averaged over ``orders`` (4) passage orders (signals/debiased.py).

New signals register with ``@register_signal("name")``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError
from ragdistill.signals.loss import distillation_loss
from ragdistill.signals.targets import MODES, p_retr, target

Signal = Callable[..., torch.Tensor]
_SIGNALS: dict[str, Signal] = {}

__all__ = ["register_signal", "get_signal", "available_signals", "target", "p_retr", "distillation_loss", "MODES"]


def register_signal(name: str) -> Callable[[Signal], Signal]:
    """Decorator: make `fn(reader, question, passages, answer, **opts) -> Tensor[K]` available by name."""
    def deco(fn: Signal) -> Signal:
        if name in _SIGNALS and _SIGNALS[name] is not fn:
            raise ValueError(f"signal '{name}' is already registered")
        _SIGNALS[name] = fn
        return fn
    return deco


def available_signals() -> list[str]:
    return sorted(_SIGNALS)


def get_signal(name: str) -> Signal:
    """The signal function registered under `name`; ConfigError listing the known ones otherwise."""
    try:
        return _SIGNALS[name]
    except KeyError:
        raise ConfigError("signal", f"unknown signal {name!r}; available: {', '.join(available_signals())}") from None


@register_signal("attention")
def attention_signal(reader: Any, question: str, passages: Sequence[Passage], answer: str, layers: Sequence[int] | None = None,
                     value_norm: bool = True, aggregation: str = "sum") -> torch.Tensor:
    """S_i: the reader's value-norm-weighted attention from the answer queries to passage i (DESIGN §3)."""
    result = reader.attention_scores(question, passages, answer, layers=layers, value_norm=value_norm, aggregation=aggregation)
    return result.passage_scores


@register_signal("perplexity")
def perplexity_signal(reader: Any, question: str, passages: Sequence[Passage], answer: str, **unused: Any) -> torch.Tensor:
    """S_i = −mean NLL of the answer given the question and passage i alone."""
    defaults = {"layers": None, "value_norm": True, "aggregation": "sum"}   # attention options left at their defaults
    extra = sorted(k for k, v in unused.items() if k not in defaults or v != defaults[k])
    if extra:
        raise ConfigError("signal", f"the perplexity signal takes no options, got {', '.join(extra)}")
    return reader.perplexity_scores(question, passages, answer)


# registered on import, so the name works wherever a signal name is looked up (get_signal)
from ragdistill.signals import debiased as _debiased  # noqa: E402,F401  (registers "attention-debiased")
