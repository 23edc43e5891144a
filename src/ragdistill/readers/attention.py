"""Answer-row attention capture: w_t of DESIGN §3 without materialising L×H×T×T.

The naive way to read a reader's attention is ``output_attentions=True``, which forces
the eager kernel and keeps every layer's T×T probabilities. Only the rows of the
*answer queries* are needed, so this module computes just those rows, per layer, next
to the normal SDPA kernel that produces the layer's output:

    w_t = mean_l mean_h mean_a  softmax(q_a·Kᵀ·scale + mask)_t · ‖v_t‖₂

Two capture routes, chosen by architecture:

* **AttentionInterface models** (Llama, SmolLM, Mistral, Qwen2/Qwen3 and every other
  transformers model whose attention calls ``ALL_ATTENTION_FUNCTIONS``): a registered
  attention function (``ragdistill_capture``) runs transformers' own SDPA function for the
  output and adds the answer rows' scores to an accumulator. The model is switched to it
  only inside :func:`capture_attention` and switched back afterwards.
* **Falcon** (its attention calls ``torch.nn.functional.scaled_dot_product_attention``
  directly, with ALiBi folded into the mask): inside :func:`capture_attention`, each
  Falcon attention module marks itself as the current layer (forward pre-hook) and the
  SDPA call it makes is observed, so the scores use exactly the tensors the kernel sees.

The building block :func:`row_attention_scores` is public: the FiD reader uses it for
decoder→encoder cross-attention rows.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from ragdistill.errors import ConfigError, ModelError

CAPTURE_IMPLEMENTATION = "ragdistill_capture"

#: model_type values whose attention is covered and tested (others that use the
#: AttentionInterface are accepted too; see :func:`capture_route`).
TESTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "falcon")
SUPPORTED_TEXT = (
    "decoder-only models whose attention uses transformers' AttentionInterface "
    "(Llama, SmolLM/SmolLM2, Mistral, Qwen2, Qwen3, ...) and Falcon"
)
_UNSUPPORTED_TYPES = {
    "gemma2": "it soft-caps attention logits",
    "gemma3": "it soft-caps attention logits",
    "gpt_oss": "its attention has learned sink logits",
}


# --------------------------------------------------------------------------- building blocks

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


@dataclass
class RowSetup:
    """What every layer of one forward shares: the answer rows, their mask over the keys, their weights."""

    rows: torch.Tensor                  # [B, A]
    mask: torch.Tensor | None           # [B, 1|H, A, T]: bool True = blocked (masked out), or additive float
    coeff: torch.Tensor                 # [B, 1, 1, G·A]: 1/H × the row's weight among the real rows, per query head


def row_setup(rows: torch.Tensor, row_mask: torch.Tensor | None, attention_mask: torch.Tensor | None,
              causal: bool, t_kv: int, n_heads: int, n_kv: int) -> RowSetup:
    """The per-forward part of :func:`row_attention_scores` (mask rows, row weights)."""
    device = rows.device
    bsz, n_rows = rows.shape
    with torch.no_grad():
        m_rows = None
        if attention_mask is not None:
            m = attention_mask.to(device)
            if m.dim() == 2:                                                    # [B, T] padding mask
                m = m[:, None, None, :].bool()
            if m.shape[2] == 1:                                                 # one row shared by all queries
                m_rows = m.expand(m.shape[0], m.shape[1], n_rows, m.shape[3])
            else:
                m_rows = gather_rows(m, rows)
            m_rows = m_rows[..., -t_kv:]
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
    setup: "RowSetup | None" = None,
) -> torch.Tensor:
    """Mean over heads and selected query rows of α_{a,t}·‖v_t‖ (or α alone): [B, T_kv] float32.

    query [B, H, Q, d]; key, value [B, H_kv, T_kv, d] with H a multiple of H_kv (grouped-query
    attention: query head h reads key/value head h // (H/H_kv), as ``repeat_kv`` does).
    ``rows`` [B, A] picks the query positions (default: all Q); ``row_mask`` [B, A] marks the
    real ones (padding rows are left out of the mean). ``attention_mask`` is a boolean
    (True = attend) or additive float mask broadcastable to [B, 1|H, Q, T_kv]; when it is
    None and ``causal`` is set, query position q sees keys 0..q (no cache offset).
    ``setup`` (from :func:`row_setup`) reuses the mask and row weights across the layers of one forward.
    """
    bsz, n_heads, q_len, head_dim = query.shape
    n_kv = key.shape[1]
    if n_heads % n_kv:
        raise ValueError(f"{n_heads} query heads cannot share {n_kv} key/value heads")
    group = n_heads // n_kv
    scale = head_dim ** -0.5 if scaling is None else scaling
    if rows is None:
        rows = torch.arange(q_len, device=query.device).expand(bsz, q_len)
    setup = setup or row_setup(rows.to(query.device), row_mask, attention_mask, causal, key.shape[2], n_heads, n_kv)
    m_rows, coeff, rows = setup.mask, setup.coeff, setup.rows
    n_rows = rows.shape[1]
    with torch.no_grad():
        t_kv = key.shape[2]
        q_all = gather_rows(query.detach(), rows).float().mul_(scale)           # [B, H, A, d], scaled once
        vn_all = value_norms(value) if value_norm else None                    # [B|1, Hkv, T]
        total = torch.zeros(bsz, t_kv, dtype=torch.float32, device=query.device)
        # key/value heads in blocks (all at once when the [B, H, A, T] temporaries are small, the usual
        # case: few answer rows), one batched matmul per block
        per_kv = bsz * group * n_rows * t_kv * 4
        block = max(1, min(n_kv, _BLOCK_BYTES // max(per_kv, 1)))
        for k0 in range(0, n_kv, block):
            k1 = min(n_kv, k0 + block)
            h0, h1 = k0 * group, k1 * group
            q = q_all[:, h0:h1].reshape(bsz, k1 - k0, group * n_rows, head_dim)  # [B, kv, G·A, d]
            k = key[:, k0:k1].detach().float()                                  # [B|1, kv, T, d]
            logits = torch.matmul(q, k.transpose(-1, -2))                       # [B, kv, G·A, T]
            if m_rows is not None:
                mk = m_rows if m_rows.shape[1] == 1 else m_rows[:, h0:h1]
                view = logits.view(bsz, h1 - h0, n_rows, t_kv)
                if mk.dtype == torch.bool:
                    view.masked_fill_(mk, float("-inf"))
                else:
                    view.add_(mk.float())
            probs = torch.softmax(logits, dim=-1)
            del logits
            if m_rows is not None:
                probs.nan_to_num_(0.0)                                          # fully masked rows -> 0
            mixed = torch.matmul(coeff, probs).squeeze(2)                      # [B, kv, T]: Σ over heads and rows
            del probs
            if vn_all is not None:
                mixed.mul_(vn_all[:, k0:k1])
            total.add_(mixed.sum(dim=1))
        return total


# --------------------------------------------------------------------------- capture state


@dataclass
class CaptureState:
    """Accumulator shared by the per-layer calls of one forward pass."""

    rows: torch.Tensor                      # [B, A] answer-query positions
    row_mask: torch.Tensor                  # [B, A] True for real rows
    layers: frozenset[int] | None           # None = all layers
    value_norm: bool = True
    total: torch.Tensor | None = None       # [B, T] sum over captured layers
    seen_layers: list[int] = field(default_factory=list)
    _setup: tuple | None = None             # (mask object, causal, T, H, H_kv, RowSetup): shared by the layers

    def setup(self, attention_mask: torch.Tensor | None, causal: bool, t_kv: int, n_heads: int, n_kv: int) -> RowSetup:
        """The row setup for this layer's mask; built once per forward (every layer gets the same mask)."""
        cached = self._setup
        if cached is not None and cached[0] is attention_mask and cached[1:5] == (causal, t_kv, n_heads, n_kv):
            return cached[5]
        rows = self.rows if attention_mask is None else self.rows.to(attention_mask.device)
        built = row_setup(rows, self.row_mask, attention_mask, causal, t_kv, n_heads, n_kv)
        self._setup = (attention_mask, causal, t_kv, n_heads, n_kv, built)
        return built

    def wants(self, layer_idx: int | None) -> bool:
        return layer_idx is not None and (self.layers is None or layer_idx in self.layers)

    def add(self, layer_idx: int, scores: torch.Tensor) -> None:
        self.total = scores if self.total is None else self.total + scores
        self.seen_layers.append(layer_idx)

    def token_scores(self) -> torch.Tensor:
        """w_t [B, T]: mean over the captured layers."""
        if self.total is None:
            raise ModelError(
                "no attention layer reported to the score capture: this architecture is not supported. "
                f"Supported: {SUPPORTED_TEXT}."
            )
        return self.total / len(self.seen_layers)


_local = threading.local()


def _active() -> CaptureState | None:
    return getattr(_local, "state", None)


def _capture_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                               scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """AttentionInterface function: transformers' SDPA for the output, plus the answer rows' scores."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                 is_causal=is_causal, **kwargs)
    state = _active()
    layer_idx = getattr(module, "layer_idx", None)
    if state is not None and state.wants(layer_idx):
        if query.shape[2] != key.shape[2]:
            raise ModelError("attention scores need a forward pass without a KV cache (use_cache=False)")
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        scores = row_attention_scores(query, key, value, scaling=scaling, value_norm=state.value_norm,
                                      setup=state.setup(attention_mask, bool(causal), key.shape[2], query.shape[1],
                                                        key.shape[1]))
        state.add(int(layer_idx), scores)
    return out


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if CAPTURE_IMPLEMENTATION not in AttentionInterface._global_mapping:
        AttentionInterface.register(CAPTURE_IMPLEMENTATION, _capture_attention_forward)
    if CAPTURE_IMPLEMENTATION not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        ALL_MASK_ATTENTION_FUNCTIONS.register(CAPTURE_IMPLEMENTATION, sdpa_mask)


# --------------------------------------------------------------------------- routes


def capture_route(model) -> str:
    """'interface' or 'falcon' for a supported model; ModelError naming the supported ones otherwise."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", type(model).__name__)
    if getattr(config, "is_encoder_decoder", False):
        raise ModelError(f"'{model_type}' is an encoder-decoder model: use the FiD reader (kind='fid') for it")
    if model_type in _UNSUPPORTED_TYPES:
        raise ModelError(f"attention scores are not supported for '{model_type}' ({_UNSUPPORTED_TYPES[model_type]}). "
                         f"Supported: {SUPPORTED_TEXT}.")
    if model_type == "falcon":
        return "falcon"
    can_set = getattr(type(model), "_can_set_attn_implementation", None)
    if callable(can_set) and can_set():
        return "interface"
    raise ModelError(
        f"attention scores are not supported for '{model_type}': its attention does not go through "
        f"transformers' AttentionInterface. Supported: {SUPPORTED_TEXT}."
    )


def num_layers(model) -> int:
    n = getattr(model.config, "num_hidden_layers", None)
    if n is None:
        raise ModelError(f"cannot tell how many layers '{model.config.model_type}' has (no num_hidden_layers)")
    return int(n)


def normalize_layers(layers: Sequence[int] | None, n_layers: int) -> frozenset[int] | None:
    """Validate a layer subset (negative indices count from the top); None means all layers."""
    if layers is None:
        return None
    out = set()
    for layer in layers:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise ConfigError("layers", f"layer indices must be integers, got {layer!r}")
        idx = layer + n_layers if layer < 0 else layer
        if not 0 <= idx < n_layers:
            raise ConfigError("layers", f"layer {layer} does not exist: the model has {n_layers} layers (0..{n_layers - 1})")
        out.add(idx)
    if not out:
        raise ConfigError("layers", "the layer subset is empty: give at least one layer index, or None for all")
    return frozenset(out)


@contextlib.contextmanager
def _falcon_route(model) -> Iterator[None]:
    import torch.nn.functional as F

    from transformers.models.falcon.modeling_falcon import FalconAttention

    original = F.scaled_dot_product_attention
    current = threading.local()

    def observed_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        out = original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                       scale=scale, **kw)
        layer_idx = getattr(current, "layer", None)
        state = _active()
        if state is not None and layer_idx is not None and state.wants(layer_idx):
            current.layer = None  # one SDPA call per attention module
            scores = row_attention_scores(query, key, value, scaling=scale, value_norm=state.value_norm,
                                          setup=state.setup(attn_mask, bool(is_causal) or attn_mask is None,
                                                            key.shape[2], query.shape[1], key.shape[1]))
            state.add(int(layer_idx), scores)
        return out

    def pre_hook(module, args):
        current.layer = module.layer_idx

    if model.config._attn_implementation != "sdpa":
        raise ModelError("Falcon attention scores need the model loaded with attn_implementation='sdpa'")
    handles = [m.register_forward_pre_hook(pre_hook) for m in model.modules() if isinstance(m, FalconAttention)]
    F.scaled_dot_product_attention = observed_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _interface_route(model) -> Iterator[None]:
    _register()
    previous = model.config._attn_implementation  # eager/flash/flex: the output runs on SDPA meanwhile
    if previous != CAPTURE_IMPLEMENTATION:
        model.set_attn_implementation(CAPTURE_IMPLEMENTATION)
    try:
        yield
    finally:
        if previous != CAPTURE_IMPLEMENTATION:
            model.set_attn_implementation(previous)


@contextlib.contextmanager
def capture_attention(model, rows: torch.Tensor, row_mask: torch.Tensor | None = None,
                      layers: Sequence[int] | None = None, value_norm: bool = True) -> Iterator[CaptureState]:
    """Within the block, forward passes of `model` accumulate answer-row scores into the yielded state.

    rows [B, A]: positions of the answer queries in each sequence; row_mask [B, A]: real rows.
    After the forward, ``state.token_scores()`` is w_t [B, T]. The model's attention
    implementation is restored on exit, even on error.
    """
    route = capture_route(model)
    n = num_layers(model)
    rows = rows.long()
    if row_mask is None:
        row_mask = torch.ones_like(rows, dtype=torch.bool)
    state = CaptureState(rows=rows, row_mask=row_mask.bool(), layers=normalize_layers(layers, n), value_norm=value_norm)
    if _active() is not None:
        raise RuntimeError("capture_attention blocks cannot be nested")
    router = _falcon_route(model) if route == "falcon" else _interface_route(model)
    with router:
        _local.state = state
        try:
            yield state
        finally:
            _local.state = None
    expected = n if state.layers is None else len(state.layers)
    if state.total is not None and len(state.seen_layers) % expected:
        raise ModelError(
            f"the score capture saw {len(state.seen_layers)} attention calls for {expected} layers: "
            f"this architecture is not supported. Supported: {SUPPORTED_TEXT}."
        )


def aggregate_passages(token_scores: torch.Tensor, spans: Sequence[tuple[int, int]], aggregation: str = "sum") -> torch.Tensor:
    """S_i from w_t [T]: sum (DESIGN default) or mean over each passage's own tokens."""
    if aggregation not in ("sum", "mean"):
        raise ConfigError("aggregation", f"must be 'sum' or 'mean', got {aggregation!r}")
    out = torch.zeros(len(spans), dtype=torch.float32)
    for i, (start, end) in enumerate(spans):
        seg = token_scores[start:end].float()
        if seg.numel():
            out[i] = seg.sum() if aggregation == "sum" else seg.mean()
    return out
