"""Decoder-only readers: feeding each attention layer to eq. 1 without materialising L×H×T×T.

The formula and its kernel live in :mod:`ragdistill.readers.eq1`, the accumulator in
:mod:`ragdistill.readers.capture`; this module only routes a causal LM's attention calls there.
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

The FiD reader's cross-attention goes through the same kernel and capture (``readers.fid_attention``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from ragdistill.errors import ModelError
from ragdistill.readers.capture import ScoreCapture, active_capture, capturing
from ragdistill.readers.eq1 import select_layers

__all__ = ["capture_attention", "capture_route", "num_layers", "SUPPORTED_TEXT", "TESTED_MODEL_TYPES"]

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


def _capture_attention_forward(
    module,
    query,
    key,
    value,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
):
    """AttentionInterface function: transformers' SDPA for the output, plus the answer rows' scores."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
    )
    state = active_capture()
    layer_idx = getattr(module, "layer_idx", None)
    if state is not None and state.wants(layer_idx):
        if query.shape[2] != key.shape[2]:
            raise ModelError("attention scores need a forward pass without a KV cache (use_cache=False)")
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        state.add_layer(int(layer_idx), query, key, value, attention_mask, causal=bool(causal), scaling=scaling)
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
        raise ModelError(
            f"attention scores are not supported for '{model_type}' ({_UNSUPPORTED_TYPES[model_type]}). "
            f"Supported: {SUPPORTED_TEXT}."
        )
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


@contextlib.contextmanager
def _falcon_route(model) -> Iterator[None]:
    import torch.nn.functional as F
    from transformers.models.falcon.modeling_falcon import FalconAttention

    original = F.scaled_dot_product_attention

    def observed_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        out = original(
            query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **kw
        )
        state = active_capture()
        layer_idx = None if state is None else state.current_layer
        if state is not None and layer_idx is not None and state.wants(layer_idx):
            state.current_layer = None  # one SDPA call per attention module
            # ALiBi is folded into Falcon's float mask: it reaches eq. 1 as the additive mask
            state.add_layer(
                int(layer_idx), query, key, value, attn_mask, causal=bool(is_causal) or attn_mask is None, scaling=scale
            )
        return out

    def pre_hook(module, args):
        state = active_capture()
        if state is not None:
            state.current_layer = module.layer_idx

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
def capture_attention(
    model,
    rows: torch.Tensor,
    row_mask: torch.Tensor | None = None,
    layers: Sequence[int] | None = None,
    value_norm: bool = True,
) -> Iterator[ScoreCapture]:
    """Within the block, forward passes of `model` accumulate answer-row scores into the yielded state.

    rows [B, A]: positions of the answer queries in each sequence; row_mask [B, A]: real rows;
    layers: see :func:`ragdistill.readers.eq1.select_layers` (None = all decoder layers).
    After the forward, ``state.token_scores()`` is w_t [B, T]. The model's attention
    implementation is restored on exit, even on error.
    """
    route = capture_route(model)
    n = num_layers(model)
    rows = rows.long()
    if row_mask is None:
        row_mask = torch.ones_like(rows, dtype=torch.bool)
    state = ScoreCapture(
        rows=rows,
        row_mask=row_mask.bool(),
        layers=select_layers(layers, n),
        value_norm=value_norm,
        unsupported=f"this architecture is not supported. Supported: {SUPPORTED_TEXT}",
    )
    router = _falcon_route(model) if route == "falcon" else _interface_route(model)
    with router, capturing(state):
        yield state
    expected = len(state.layers)
    if state.total is not None and len(state.seen_layers) % expected:
        raise ModelError(
            f"the score capture saw {len(state.seen_layers)} attention calls for {expected} layers: "
            f"this architecture is not supported. Supported: {SUPPORTED_TEXT}."
        )
