"""Cross-attention capture for encoder-decoder (FiD) readers, without eager attention.

The FiD passage scores (DESIGN §3, ATLAS's "norms" aggregation) need, for every decoder
cross-attention layer, the post-softmax probabilities α[b,h,q,t] from the decoder positions q
to the encoder positions t and the norms ‖v[b,h,t]‖ of the cross-attention value vectors.

How they are obtained. Every encoder-decoder of transformers 5 that follows the functional
attention design (T5/mT5/UMT5-style `T5Attention`, BERT's `BertCrossAttention` inside
`EncoderDecoderModel`, BART/mBART/Marian/Pegasus `encoder_attn`, ...) calls the function that
`ALL_ATTENTION_FUNCTIONS` registers under `config._attn_implementation` with the already
projected and head-split query/key/value, the scaling, the mask the model built and (T5) the
additive `position_bias`. While a capture is active, the *decoder's* config is switched to a
registered wrapper ("ragdistill_fid_cross_<base>") that

* runs the model's normal implementation (SDPA by default) for the output, so the forward pass,
  its numerics and its gradients are unchanged, and the encoder's self-attention is untouched;
* for the cross-attention modules only, recomputes softmax(q·kᵀ·scaling + position_bias + mask)
  for the few decoder rows (|A|×(K·L) per head, in float32, without grad) and adds
  mean_h mean_q α·‖v‖ to an accumulator.

T5's cross-attention has no relative position bias: `T5LayerCrossAttention` builds
`T5Attention(has_relative_attention_bias=False)` and the stack passes a zero bias (checked in
the reference tests against `output_attentions=True`). Nothing here materialises the encoder's
or the decoder's self-attention matrices.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from ragdistill.errors import ConfigError, ModelError

PREFIX = "ragdistill_fid_cross_"

# Qualified-name endings of cross-attention modules in transformers' encoder-decoders.
_CROSS_NAMES = re.compile(r"(^|\.)(EncDecAttention|encoder_attn|crossattention|cross_attn|cross_attention)$", re.IGNORECASE)


@dataclass
class CrossCapture:
    """Accumulator for one forward pass: per-row decoder-position weights and selected layers."""

    layer_of: dict[int, int]                 # id(module) -> cross-attention layer index
    layers: frozenset[int]                   # which layers contribute
    query_weights: torch.Tensor              # [B, Q] weights of decoder positions (rows sum to 1)
    value_norm: bool = True
    total: torch.Tensor | None = None        # [B, Tk] Σ_layers mean_h Σ_q weight·α·‖v‖
    seen: set[int] = field(default_factory=set)

    def add(self, module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            attention_mask, scaling: float | None, position_bias: torch.Tensor | None) -> None:
        layer = self.layer_of.get(id(module))
        if layer is None:
            return
        self.seen.add(layer)
        if layer not in self.layers:
            return
        with torch.no_grad():
            contrib = cross_attention_token_scores(
                module, query, key, value, attention_mask, scaling, position_bias,
                self.query_weights, value_norm=self.value_norm,
            )
        self.total = contrib if self.total is None else self.total + contrib


_ACTIVE: contextvars.ContextVar[CrossCapture | None] = contextvars.ContextVar("ragdistill_fid_capture", default=None)


def cross_attention_token_scores(module, query, key, value, attention_mask, scaling, position_bias,
                                 query_weights: torch.Tensor, value_norm: bool = True) -> torch.Tensor:
    """mean_h Σ_q weight[b,q]·α[b,h,q,t]·‖v[b,h,t]‖ for one layer, float32 [B, Tk].

    `query`: [B,H,Q,d]; `key`/`value`: [B,Hkv,Tk,d] (grouped heads are repeated to the query
    heads); `attention_mask`: None, boolean (True = attend) or additive float, broadcastable
    to [B,H,Q,Tk].
    """
    if not isinstance(attention_mask, (torch.Tensor, type(None))):
        raise ModelError(
            f"attention scores cannot read a {type(attention_mask).__name__} attention mask "
            "(flex attention): load the reader with attn_implementation='sdpa' or 'eager'"
        )
    q = query.float()
    k = key.float()
    v = value.float()
    n_rep = q.shape[1] // k.shape[1]
    if n_rep > 1:
        k = k.repeat_interleave(n_rep, dim=1)
        v = v.repeat_interleave(n_rep, dim=1)
    if scaling is None:
        scaling = q.shape[-1] ** -0.5
    logits = torch.matmul(q, k.transpose(-1, -2)) * scaling          # [B,H,Q,Tk]
    if position_bias is not None:
        logits = logits + position_bias.float()
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attention_mask, float("-inf"))
        else:
            logits = logits + attention_mask.float()
    probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)            # fully masked rows -> 0
    weights = query_weights.to(probs.device, torch.float32)          # [B,Q]
    per_head = torch.einsum("bhqt,bq->bht", probs, weights)          # [B,H,Tk]
    if value_norm:
        per_head = per_head * v.norm(dim=-1)
    return per_head.mean(dim=1)


def _wrapped(base: str):
    def attention(module, query, key, value, attention_mask, *args, **kwargs):
        capture = _ACTIVE.get()
        if capture is not None:
            capture.add(module, query, key, value, attention_mask, kwargs.get("scaling"), kwargs.get("position_bias"))
        return _base_function(base, module)(module, query, key, value, attention_mask, *args, **kwargs)

    attention.__name__ = f"{PREFIX}{base}"
    return attention


def _base_function(base: str, module: torch.nn.Module):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if base == "eager" or base not in ALL_ATTENTION_FUNCTIONS:
        # "eager" is each model's own `eager_attention_forward`, defined beside the module class.
        eager = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        if eager is not None:
            return eager
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward
    return ALL_ATTENTION_FUNCTIONS[base]


def _register(base: str) -> str:
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import AttentionInterface

    name = f"{PREFIX}{base}"
    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, _wrapped(base))
    if name not in ALL_MASK_ATTENTION_FUNCTIONS:
        mask_fn = ALL_MASK_ATTENTION_FUNCTIONS[base] if base in ALL_MASK_ATTENTION_FUNCTIONS else ALL_MASK_ATTENTION_FUNCTIONS["sdpa"]
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, mask_fn)
    return name


def cross_attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder's cross-attention modules in layer order (the ones that receive q/k/v).

    Raises ModelError for an architecture whose cross-attention modules cannot be found.
    """
    found: list[torch.nn.Module] = []
    for name, module in model.named_modules():
        if not _CROSS_NAMES.search(name):
            continue
        inner = getattr(module, "self", None)  # BERT: BertAttention(...).self is BertCrossAttention
        target = inner if isinstance(inner, torch.nn.Module) else module
        if not hasattr(target, "config"):
            continue
        found.append(target)
    if not found:
        raise ModelError(
            f"{type(model).__name__}: no decoder cross-attention modules found. Attention scores are supported for "
            "transformers encoder-decoders built on AttentionInterface (T5/mT5/UMT5/Flan-T5, BART/mBART/Marian/Pegasus, "
            "EncoderDecoderModel with BERT/RoBERTa decoders)."
        )
    return found


def normalize_layers(layers: Sequence[int] | None, n_layers: int) -> frozenset[int]:
    """Layer indices (negative counts from the end) as a set; None = all layers."""
    if layers is None:
        return frozenset(range(n_layers))
    if isinstance(layers, int):
        layers = [layers]
    out = set()
    for layer in layers:
        if not isinstance(layer, int) or not -n_layers <= layer < n_layers:
            raise ConfigError("layers", f"layer {layer!r} is out of range: the decoder has {n_layers} cross-attention layers (0..{n_layers - 1}, or negative from the end)")
        out.add(layer % n_layers)
    if not out:
        raise ConfigError("layers", "an empty layer list: pass None for all layers")
    return frozenset(out)


@contextlib.contextmanager
def capture_cross_attention(model: torch.nn.Module, query_weights: torch.Tensor, layers: Sequence[int] | None = None,
                            value_norm: bool = True) -> Iterator[CrossCapture]:
    """Within the block, every forward through `model`'s decoder accumulates cross-attention token scores.

    After the block, `capture.total / len(capture.layers)` is w_t over the encoder positions, [B, Tk].
    """
    modules = cross_attention_modules(model)
    layer_of = {id(m): i for i, m in enumerate(modules)}
    capture = CrossCapture(layer_of=layer_of, layers=normalize_layers(layers, len(modules)),
                           query_weights=query_weights, value_norm=value_norm)
    configs = {id(m.config): m.config for m in modules}
    saved = {}
    for key, config in configs.items():
        base = config._attn_implementation or "eager"
        if base.startswith(PREFIX):  # nested capture: keep the outer one's base
            base = base[len(PREFIX):]
        saved[key] = config._attn_implementation_internal
        config._attn_implementation_internal = _register(base)
    token = _ACTIVE.set(capture)
    try:
        yield capture
    finally:
        _ACTIVE.reset(token)
        for key, config in configs.items():
            config._attn_implementation_internal = saved[key]
    missing = capture.layers - capture.seen
    if missing:
        raise ModelError(
            f"{type(model).__name__}: cross-attention layers {sorted(missing)} never called transformers' attention "
            "interface, so their scores cannot be read; this architecture is not covered by the FiD reader's "
            "attention scores (T5 family, BART family and BERT2BERT EncoderDecoderModel are)."
        )
