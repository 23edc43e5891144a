"""The one score-capture mechanism of both readers: an accumulator of eq. 1 over layers, and where it is active.

A reader's capture code (``readers.attention`` for decoder-only models, ``readers.fid_attention``
for encoder-decoders) opens :func:`capturing` around a forward pass; every attention layer that
reports to :func:`active_capture` hands its query/key/value (and mask, scaling, bias) to
:meth:`ScoreCapture.add_layer`, which runs the eq. 1 kernel (``readers.eq1.row_attention_scores``)
on the answer rows and adds the result. After the forward, :meth:`ScoreCapture.token_scores` is
w_t, the mean over the layers that reported. The active capture is held in a ``ContextVar``
(per thread and per asyncio task); one capture is active at a time.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ragdistill.errors import ModelError
from ragdistill.readers import eq1


@dataclass
class ScoreCapture:
    """Accumulator shared by the per-layer calls of one forward pass."""

    rows: torch.Tensor  # [B, A] answer-query positions
    row_mask: torch.Tensor  # [B, A] True for real rows
    layers: list[int]  # selected layers (eq1.select_layers)
    value_norm: bool = True
    unsupported: str = "this architecture is not supported"  # said when no layer reported
    total: torch.Tensor | None = None  # [B, T] sum over captured layers
    seen_layers: list[int] = field(default_factory=list)  # selected layers that reported, one entry per call
    reported: set[int] = field(default_factory=set)  # every layer that reported, selected or not
    layer_of: dict[int, int] = field(
        default_factory=dict
    )  # id(module) -> layer, where modules carry no layer_idx (FiD)
    current_layer: int | None = None  # for routes that observe a kernel call (Falcon): the layer running
    _setup: tuple | None = None  # (mask object, causal, T, H, H_kv, RowSetup): shared by the layers

    def __post_init__(self) -> None:
        self._wanted = frozenset(self.layers)

    def setup(
        self, attention_mask: torch.Tensor | None, causal: bool, t_kv: int, n_heads: int, n_kv: int
    ) -> eq1.RowSetup:
        """The row setup for this layer's mask; built once per forward (every layer gets the same mask)."""
        cached = self._setup
        if cached is not None and cached[0] is attention_mask and cached[1:5] == (causal, t_kv, n_heads, n_kv):
            return cached[5]
        rows = self.rows if attention_mask is None else self.rows.to(attention_mask.device)
        built = eq1.row_setup(rows, self.row_mask, attention_mask, causal, t_kv, n_heads, n_kv)
        self._setup = (attention_mask, causal, t_kv, n_heads, n_kv, built)
        return built

    def wants(self, layer_idx: int | None) -> bool:
        return layer_idx is not None and layer_idx in self._wanted

    def add_layer(
        self,
        layer_idx: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        *,
        causal: bool,
        scaling: float | None,
        bias: torch.Tensor | None = None,
    ) -> None:
        """Score one attention call of layer `layer_idx` (ignored unless the layer is selected)."""
        self.reported.add(layer_idx)
        if not self.wants(layer_idx):
            return
        setup = self.setup(attention_mask, causal, key.shape[2], query.shape[1], key.shape[1])
        scores = eq1.row_attention_scores(
            query, key, value, scaling=scaling, value_norm=self.value_norm, setup=setup, bias=bias
        )
        self.total = scores if self.total is None else self.total + scores
        self.seen_layers.append(layer_idx)

    def token_scores(self) -> torch.Tensor:
        """w_t [B, T]: mean over the captured layers."""
        if self.total is None:
            raise ModelError(f"no attention layer reported to the score capture: {self.unsupported}.")
        return self.total / len(self.seen_layers)


_ACTIVE: contextvars.ContextVar[ScoreCapture | None] = contextvars.ContextVar("ragdistill_score_capture", default=None)


def active_capture() -> ScoreCapture | None:
    """The capture of the current forward pass, or None outside :func:`capturing`."""
    return _ACTIVE.get()


@contextlib.contextmanager
def capturing(state: ScoreCapture) -> Iterator[ScoreCapture]:
    """Make `state` the active capture inside the block (RuntimeError if one is active already)."""
    if _ACTIVE.get() is not None:
        raise RuntimeError("score capture blocks cannot be nested")
    token = _ACTIVE.set(state)
    try:
        yield state
    finally:
        _ACTIVE.reset(token)
