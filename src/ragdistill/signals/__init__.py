"""Supervision signals: the reader's passage scores S, the target p_gold and the KL loss.

``get_signal(name)(reader, question, passages, answer, **opts) -> Tensor[K]``:

* ``attention`` — S_i from the reader's attention on passage i's tokens (METHOD.md §3); options
  ``layers``, ``value_norm``, ``aggregation``.
* ``perplexity`` — S_i = −mean NLL of the answer given the question and passage i alone.
* ``attention-debiased`` — ``attention`` averaged over ``orders`` (4) passage orders (signals/debiased.py).

New signals register with ``@register_signal("name")``; the registry is what config validation
(``signal.name``), the training loop and the analysis consult, so a registered signal is usable
by name everywhere. What a signal declares at registration:

* ``options`` — the ``signal.*`` config keys passed to it as keyword arguments (none by default);
* ``lm_forward`` — its scores come out of the reader's LM-loss forward
  (``reader.lm_loss_and_attention``), so a regime that trains the reader computes both at once;
* ``token_scores`` — ``fn(reader, question, passages, answer, **options) -> AttentionResult``, the
  per-token scores the attention-quality analysis measures (a signal without them can train but
  not be analysed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError
from ragdistill.signals.loss import distillation_loss
from ragdistill.signals.targets import MODES, p_retr, target

Signal = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class SignalSpec:
    """A registered signal: its function and what the loop and the analysis need to know about it."""

    name: str
    fn: Signal
    options: tuple[str, ...] = ()
    lm_forward: bool = False
    token_scores: Callable[..., Any] | None = None
    batch: Callable[..., torch.Tensor] | None = None  # (reader, questions, passages, answers, **opts) -> Tensor[B, K]

    def scores_batch(
        self,
        reader: Any,
        questions: Sequence[str],
        passages: Sequence[Sequence[Passage]],
        answers: Sequence[str],
        **options: Any,
    ) -> torch.Tensor:
        """S for several questions (Tensor[B, K], no grad): the batched form where the signal has one, else one by one."""
        if self.batch is not None:
            out = self.batch(reader, questions, passages, answers, **options)
            if out is not None:
                return out
        return torch.stack(
            [self.fn(reader, q, ps, a, **options).float() for q, ps, a in zip(questions, passages, answers)]
        )


_SIGNALS: dict[str, SignalSpec] = {}

__all__ = [
    "register_signal",
    "get_signal",
    "get_signal_spec",
    "available_signals",
    "SignalSpec",
    "target",
    "p_retr",
    "distillation_loss",
    "MODES",
]


def register_signal(
    name: str,
    *,
    options: Sequence[str] = (),
    lm_forward: bool = False,
    token_scores: Callable[..., Any] | None = None,
    batch: Callable[..., torch.Tensor] | None = None,
) -> Callable[[Signal], Signal]:
    """Decorator: make `fn(reader, question, passages, answer, **opts) -> Tensor[K]` available by name."""

    def deco(fn: Signal) -> Signal:
        if name in _SIGNALS and _SIGNALS[name].fn is not fn:
            raise ValueError(f"signal '{name}' is already registered")
        _SIGNALS[name] = SignalSpec(name, fn, tuple(options), lm_forward, token_scores, batch)
        return fn

    return deco


def available_signals() -> list[str]:
    return sorted(_SIGNALS)


def get_signal_spec(name: str) -> SignalSpec:
    """The registration of `name`; ConfigError listing the known signals otherwise."""
    try:
        return _SIGNALS[name]
    except KeyError:
        raise ConfigError("signal", f"unknown signal {name!r}; available: {', '.join(available_signals())}") from None


def get_signal(name: str) -> Signal:
    """The signal function registered under `name`; ConfigError listing the known ones otherwise."""
    return get_signal_spec(name).fn


def _attention_token_scores(reader: Any, question: str, passages: Sequence[Passage], answer: str, **options: Any):
    return reader.attention_scores(question, passages, answer, **options)


def _attention_batch(reader: Any, questions, passages, answers, **options: Any) -> torch.Tensor | None:
    """Several questions' S in padded batches (one forward per `reader.batch_size` questions); None: no batched API."""
    fn = getattr(reader, "attention_scores_batch", None)
    if fn is None:
        return None
    results = fn(questions, passages, answers, **options)
    return torch.stack([r.passage_scores.float() for r in results])


@register_signal(
    "attention",
    options=("layers", "value_norm", "aggregation"),
    lm_forward=True,
    token_scores=_attention_token_scores,
    batch=_attention_batch,
)
def attention_signal(
    reader: Any,
    question: str,
    passages: Sequence[Passage],
    answer: str,
    layers: Sequence[int] | None = None,
    value_norm: bool = True,
    aggregation: str = "sum",
) -> torch.Tensor:
    """S_i: the reader's value-norm-weighted attention from the answer queries to passage i (METHOD.md §3)."""
    result = reader.attention_scores(
        question, passages, answer, layers=layers, value_norm=value_norm, aggregation=aggregation
    )
    return result.passage_scores


@register_signal("perplexity")
def perplexity_signal(
    reader: Any, question: str, passages: Sequence[Passage], answer: str, **unused: Any
) -> torch.Tensor:
    """S_i = −mean NLL of the answer given the question and passage i alone."""
    defaults = {"layers": None, "value_norm": True, "aggregation": "sum"}  # attention options left at their defaults
    extra = sorted(k for k, v in unused.items() if k not in defaults or v != defaults[k])
    if extra:
        raise ConfigError("signal", f"the perplexity signal takes no options, got {', '.join(extra)}")
    return reader.perplexity_scores(question, passages, answer)


# registered on import, so the name works wherever a signal name is looked up (get_signal)
from ragdistill.signals import debiased as _debiased  # noqa: E402,F401  (registers "attention-debiased")
