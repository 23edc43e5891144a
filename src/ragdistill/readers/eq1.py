"""Eq. 1 of the attention signal (METHOD.md §3): token scores w_t and passage scores S_i, in one place.

This module is *the* place the formula lives; both readers (decoder-only and FiD) compute their
scores with the functions below, and the readers' capture code only feeds them the tensors each
attention layer sees.

    w_t = mean_{l ∈ layers} mean_{h ∈ heads} mean_{a ∈ answer rows} α^{l,h}_{a,t} · ‖v^{l,h}_t‖₂

    S_i = Σ_{t ∈ n_i} w_t          (option: the mean over n_i instead of the sum)

Conventions (see :func:`reference_token_scores` for the formula written out as code):

* α^{l,h}_{a,t} = softmax_t(q_a·k_t·scale + bias_{a,t} + mask_{a,t}), the post-softmax attention
  probability of query row a on key position t in head h of layer l, *before* attention dropout.
  ``scale`` is the layer's scaling (head_dim^-1/2 by default; 1 for T5); ``bias`` is an additive
  logit bias (T5's position bias, Falcon's ALiBi, which Falcon folds into its float mask);
  ``mask`` is boolean (True = attend) or additive float. A row whose keys are all masked gives 0.
* v^{l,h}_t is the value vector of key t in head h; with grouped-query attention query head h reads
  key/value head h // (H / H_kv) (transformers' ``repeat_kv``). ``value_norm=False`` drops ‖v‖ (α only).
* Answer rows: decoder-only reader, the positions that *predict* the answer tokens (the last prompt
  position and A_1..A_{|A|-1}); FiD reader, the decoder inputs [start, A_1..A_{|A|-1}] cross-attending
  to the concatenated encoder positions. Padding rows are left out of the mean (``row_mask``).
* Layers: :func:`select_layers` (all layers by default: every decoder self-attention layer of a
  decoder-only reader, every decoder cross-attention layer of a FiD reader).
* Passages: t runs over passage i's own tokens only (:func:`aggregate_passages`); question and
  template tokens belong to no passage.

:func:`reference_token_scores` is the obvious, slow implementation (the full [B, H, Q, T] softmax);
:func:`row_attention_scores` is the fast one the readers use (only the answer rows, all heads in one
batched matmul, float32, no grad). The tests check the fast path against the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ragdistill.errors import ConfigError

__all__ = [
    "reference_token_scores",
    "row_attention_scores",
    "row_setup",
    "RowSetup",
    "value_norms",
    "gather_rows",
    "select_layers",
    "aggregate_passages",
]


# --------------------------------------------------------------------------- the reference


def reference_token_scores(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rows: torch.Tensor | None = None,
    row_mask: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    causal: bool = False,
    scaling: float | None = None,
    value_norm: bool = True,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 1 for one layer, the slow obvious way: mean_h mean_a α_{a,t}·‖v_t‖ as [B, T] float32.

    Same arguments as :func:`row_attention_scores`: query [B, H, Q, d]; key, value [B, H_kv, T, d];
    ``rows`` [B, A] the answer rows (default all Q), ``row_mask`` [B, A] the real ones;
    ``attention_mask`` boolean (True = attend) or additive float, [B, T] or broadcastable to
    [B, H, Q, T]; ``causal`` (only without a mask): row q sees keys 0..q; ``bias`` additive float
    broadcastable to [B, H, Q, T]. The mean over the selected layers is the caller's (w_t is the mean
    of this function over the layers of :func:`select_layers`).
    """
    bsz, n_heads, q_len, d = query.shape
    t_kv = key.shape[2]
    group = n_heads // key.shape[1]
    k = key.float().repeat_interleave(group, dim=1)
    v = value.float().repeat_interleave(group, dim=1)
    logits = query.float() @ k.transpose(-1, -2) * (d**-0.5 if scaling is None else scaling)  # [B, H, Q, T]
    if bias is not None:
        logits = logits + bias.float()
    if attention_mask is not None:
        m = attention_mask[:, None, None, :].bool() if attention_mask.dim() == 2 else attention_mask
        m = m[..., -t_kv:]
        logits = logits.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else logits + m.float()
    elif causal:
        pos = torch.arange(max(q_len, t_kv), device=query.device)
        logits = logits.masked_fill(pos[None, :t_kv] > pos[:q_len, None], float("-inf"))
    probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # fully masked rows -> 0
    if value_norm:
        probs = probs * v.norm(dim=-1)[:, :, None, :]
    rows = torch.arange(q_len).expand(bsz, q_len) if rows is None else rows.cpu()
    row_mask = torch.ones_like(rows, dtype=torch.bool) if row_mask is None else row_mask.cpu()
    out = torch.zeros(bsz, t_kv, device=query.device)
    for b in range(bsz):
        real = [int(r) for r, m in zip(rows[b], row_mask[b]) if m]
        out[b] = probs[b][:, real].mean(dim=(0, 1))
    return out


# --------------------------------------------------------------------------- the fast path

#: size of the per-block score temporaries: all heads in one batched matmul below it, key/value
#: head blocks above it (long prompts with many answer rows)
_BLOCK_BYTES = 64 * 2**20


def value_norms(value: torch.Tensor) -> torch.Tensor:
    """‖v_t‖₂ per key/value head: [B, H_kv, T, d] -> [B, H_kv, T] (float32)."""
    return value.detach().float().norm(dim=-1)


def gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Select query rows per batch item along dim 2: x [B, H, Q, D], rows [B, A] -> [B, H, A, D].

    A size-1 head dimension or batch dimension broadcasts (masks shared by all heads).
    """
    b, h, _, d = x.shape
    batch = rows.shape[0]
    idx = rows.to(x.device)[:, None, :, None].expand(batch, h, rows.shape[1], d)
    if b == 1 and batch > 1:
        x = x.expand(batch, h, x.shape[2], d)
    return torch.gather(x, 2, idx)


def _answer_rows(x: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The answer rows of a mask or bias broadcastable to [B, H, Q, T]: [B, 1|H, A, T]."""
    if x.shape[2] == 1:  # one row shared by all queries
        return x.expand(x.shape[0], x.shape[1], n_rows, x.shape[3])
    return gather_rows(x, rows)


@dataclass
class RowSetup:
    """What every layer of one forward shares: the answer rows, their mask over the keys, their weights."""

    rows: torch.Tensor  # [B, A]
    mask: torch.Tensor | None  # [B, 1|H, A, T]: bool True = blocked (masked out), or additive float
    coeff: torch.Tensor  # [B, 1, 1, G·A]: 1/H × the row's weight among the real rows, per query head


def row_setup(
    rows: torch.Tensor,
    row_mask: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    causal: bool,
    t_kv: int,
    n_heads: int,
    n_kv: int,
) -> RowSetup:
    """The per-forward part of :func:`row_attention_scores` (mask rows, row weights)."""
    device = rows.device
    bsz, n_rows = rows.shape
    with torch.no_grad():
        m_rows = None
        if attention_mask is not None:
            m = attention_mask.to(device)
            if m.dim() == 2:  # [B, T] padding mask
                m = m[:, None, None, :].bool()
            m_rows = _answer_rows(m, rows, n_rows)[..., -t_kv:]
            if m_rows.dtype == torch.bool:
                m_rows = ~m_rows
        elif causal:
            m_rows = (torch.arange(t_kv, device=device)[None, None, :] > rows[:, :, None])[:, None]
        if row_mask is None:
            row_w = torch.full((bsz, n_rows), 1.0 / n_rows, device=device)
        else:
            rm = row_mask.to(device, torch.float32)
            row_w = rm / rm.sum(dim=1, keepdim=True).clamp(min=1.0)
        # the G query heads that read one key/value head sit next to each other in q (see row_attention_scores)
        coeff = (row_w / n_heads).repeat(1, n_heads // n_kv)[:, None, None, :]
    return RowSetup(rows=rows, mask=m_rows, coeff=coeff)


def row_attention_scores(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rows: torch.Tensor | None = None,
    row_mask: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    causal: bool = False,
    scaling: float | None = None,
    value_norm: bool = True,
    setup: RowSetup | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over heads and selected query rows of α_{a,t}·‖v_t‖ (or α alone): [B, T_kv] float32.

    query [B, H, Q, d]; key, value [B, H_kv, T_kv, d] with H a multiple of H_kv (grouped-query
    attention: query head h reads key/value head h // (H/H_kv), as ``repeat_kv`` does).
    ``rows`` [B, A] picks the query positions (default: all Q); ``row_mask`` [B, A] marks the
    real ones (padding rows are left out of the mean). ``attention_mask`` is a boolean
    (True = attend) or additive float mask broadcastable to [B, 1|H, Q, T_kv]; when it is
    None and ``causal`` is set, query position q sees keys 0..q (no cache offset).
    ``bias`` is an additive float logit bias broadcastable to [B, 1|H, Q, T_kv] (T5's position bias).
    ``setup`` (from :func:`row_setup`) reuses the mask and row weights across the layers of one forward.
    Same numbers as :func:`reference_token_scores` without its [B, H, Q, T] temporaries.
    """
    bsz, n_heads, q_len, head_dim = query.shape
    n_kv = key.shape[1]
    if n_heads % n_kv:
        raise ValueError(f"{n_heads} query heads cannot share {n_kv} key/value heads")
    group = n_heads // n_kv
    scale = head_dim**-0.5 if scaling is None else scaling
    if rows is None:
        rows = torch.arange(q_len, device=query.device).expand(bsz, q_len)
    setup = setup or row_setup(rows.to(query.device), row_mask, attention_mask, causal, key.shape[2], n_heads, n_kv)
    m_rows, coeff, rows = setup.mask, setup.coeff, setup.rows
    n_rows = rows.shape[1]
    with torch.no_grad():
        t_kv = key.shape[2]
        b_rows = None if bias is None else _answer_rows(bias.detach().to(query.device), rows, n_rows)[..., -t_kv:]
        q_all = gather_rows(query.detach(), rows).float().mul_(scale)  # [B, H, A, d], scaled once
        vn_all = value_norms(value) if value_norm else None  # [B|1, Hkv, T]
        total = torch.zeros(bsz, t_kv, dtype=torch.float32, device=query.device)
        # key/value heads in blocks (all at once when the [B, H, A, T] temporaries are small, the usual
        # case: few answer rows), one batched matmul per block
        per_kv = bsz * group * n_rows * t_kv * 4
        block = max(1, min(n_kv, _BLOCK_BYTES // max(per_kv, 1)))
        for k0 in range(0, n_kv, block):
            k1 = min(n_kv, k0 + block)
            h0, h1 = k0 * group, k1 * group
            q = q_all[:, h0:h1].reshape(bsz, k1 - k0, group * n_rows, head_dim)  # [B, kv, G·A, d]
            k = key[:, k0:k1].detach().float()  # [B|1, kv, T, d]
            logits = torch.matmul(q, k.transpose(-1, -2))  # [B, kv, G·A, T]
            view = logits.view(bsz, h1 - h0, n_rows, t_kv)
            if b_rows is not None:
                view.add_((b_rows if b_rows.shape[1] == 1 else b_rows[:, h0:h1]).float())
            if m_rows is not None:
                mk = m_rows if m_rows.shape[1] == 1 else m_rows[:, h0:h1]
                if mk.dtype == torch.bool:
                    view.masked_fill_(mk, float("-inf"))
                else:
                    view.add_(mk.float())
            probs = torch.softmax(logits, dim=-1)
            del logits, view
            if m_rows is not None or b_rows is not None:
                probs.nan_to_num_(0.0)  # fully masked rows -> 0
            mixed = torch.matmul(coeff, probs).squeeze(2)  # [B, kv, T]: Σ over heads and rows
            del probs
            if vn_all is not None:
                mixed.mul_(vn_all[:, k0:k1])
            total.add_(mixed.sum(dim=1))
        return total


# --------------------------------------------------------------------------- layers and passages


def select_layers(spec: int | Sequence[int] | None, num_layers: int, key: str = "layers") -> list[int]:
    """The layers eq. 1 averages over, as sorted, distinct indices in 0..num_layers-1.

    ``spec`` None means *all layers*: every layer whose attention the reader scores, i.e. all
    decoder self-attention layers of a decoder-only reader and all decoder cross-attention layers
    of a FiD reader (``num_layers`` is that count: ``reader.num_score_layers``). Otherwise one
    index or a sequence of them; negative indices count from the top (-1 is the last layer);
    duplicates collapse. A non-integer (bools included), an index outside -num_layers..num_layers-1
    or an empty selection raises ``ConfigError(key, ...)``; ``num_layers < 1`` raises ValueError.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if spec is None:
        return list(range(num_layers))
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = [spec]
    out = set()
    for layer in spec:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise ConfigError(key, f"layer indices must be integers, got {layer!r}")
        if not -num_layers <= layer < num_layers:
            raise ConfigError(
                key,
                f"layer {layer} does not exist: the reader has {num_layers} layers "
                f"(0..{num_layers - 1}; negative indices count from the top)",
            )
        out.add(layer % num_layers)
    if not out:
        raise ConfigError(key, "the layer subset is empty: give at least one layer index, or None for all")
    return sorted(out)


def aggregate_passages(
    token_scores: torch.Tensor, spans: Sequence[tuple[int, int]], aggregation: str = "sum"
) -> torch.Tensor:
    """S_i from w_t [T]: sum (the default, METHOD.md §3.2) or mean over each passage's own tokens; 0 for an empty span."""
    check_aggregation(aggregation)
    out = torch.zeros(len(spans), dtype=torch.float32)
    for i, (start, end) in enumerate(spans):
        seg = token_scores[start:end].float()
        if seg.numel():
            out[i] = seg.sum() if aggregation == "sum" else seg.mean()
    return out


def check_aggregation(aggregation: str) -> None:
    """ConfigError unless `aggregation` is 'sum' or 'mean'."""
    if aggregation not in ("sum", "mean"):
        raise ConfigError("aggregation", f"must be 'sum' or 'mean', got {aggregation!r}")
