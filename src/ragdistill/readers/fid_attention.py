"""Cross-attention capture for encoder-decoder (FiD) readers, without eager attention.

The FiD passage scores (METHOD.md §3, ATLAS's "norms" aggregation) need, for every decoder
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
* for the cross-attention modules only, hands q/k/v, the scaling, the mask and the position bias
  to the shared score capture (`readers.capture`), which runs eq. 1's kernel
  (`readers.eq1.row_attention_scores`: softmax(q·kᵀ·scaling + position_bias + mask) for the few
  decoder rows, |A|×(K·L) per head, in float32, without grad) and adds mean_h mean_a α·‖v‖.

T5's cross-attention has no relative position bias: `T5LayerCrossAttention` builds
`T5Attention(has_relative_attention_bias=False)` and the stack passes a zero bias (checked in
the reference tests against `output_attentions=True`). Nothing here materialises the encoder's
or the decoder's self-attention matrices.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Sequence

import torch

from ragdistill.errors import ModelError
from ragdistill.readers.capture import ScoreCapture, active_capture, capturing
from ragdistill.readers.eq1 import select_layers

__all__ = ["capture_cross_attention", "cross_attention_modules", "PREFIX"]

PREFIX = "ragdistill_fid_cross_"

# Qualified-name endings of cross-attention modules in transformers' encoder-decoders.
_CROSS_NAMES = re.compile(
    r"(^|\.)(EncDecAttention|encoder_attn|crossattention|cross_attn|cross_attention)$", re.IGNORECASE
)


def _wrapped(base: str):
    def attention(module, query, key, value, attention_mask, *args, **kwargs):
        capture = active_capture()
        layer = None if capture is None else capture.layer_of.get(id(module))
        if layer is not None:
            if capture.wants(layer) and not isinstance(attention_mask, (torch.Tensor, type(None))):
                raise ModelError(
                    f"attention scores cannot read a {type(attention_mask).__name__} attention mask "
                    "(flex attention): load the reader with attn_implementation='sdpa' or 'eager'"
                )
            capture.add_layer(
                layer,
                query,
                key,
                value,
                attention_mask,
                causal=False,
                scaling=kwargs.get("scaling"),
                bias=kwargs.get("position_bias"),
            )
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
        mask_fn = (
            ALL_MASK_ATTENTION_FUNCTIONS[base]
            if base in ALL_MASK_ATTENTION_FUNCTIONS
            else ALL_MASK_ATTENTION_FUNCTIONS["sdpa"]
        )
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


@contextlib.contextmanager
def capture_cross_attention(
    model: torch.nn.Module,
    rows: torch.Tensor,
    row_mask: torch.Tensor | None = None,
    layers: Sequence[int] | None = None,
    value_norm: bool = True,
) -> Iterator[ScoreCapture]:
    """Within the block, every forward through `model`'s decoder accumulates cross-attention token scores.

    rows [B, A]: the decoder positions that are answer rows; row_mask [B, A]: the real ones;
    layers: see :func:`ragdistill.readers.eq1.select_layers` (None = all cross-attention layers).
    After the block, ``capture.token_scores()`` is w_t over the encoder positions, [B, Tk].
    """
    modules = cross_attention_modules(model)
    rows = rows.long()
    if row_mask is None:
        row_mask = torch.ones_like(rows, dtype=torch.bool)
    capture = ScoreCapture(
        rows=rows,
        row_mask=row_mask.bool(),
        layers=select_layers(layers, len(modules)),
        value_norm=value_norm,
        unsupported=f"{type(model).__name__}: {_NOT_COVERED}",
        layer_of={id(m): i for i, m in enumerate(modules)},
    )
    configs = {id(m.config): m.config for m in modules}
    saved = {}
    for key, config in configs.items():
        base = config._attn_implementation or "eager"
        if base.startswith(PREFIX):  # a capture left switched on: keep its base
            base = base[len(PREFIX) :]
        saved[key] = config._attn_implementation_internal
        config._attn_implementation_internal = _register(base)
    try:
        with capturing(capture):
            yield capture
    finally:
        for key, config in configs.items():
            config._attn_implementation_internal = saved[key]
    missing = set(capture.layers) - capture.reported
    if missing:
        raise ModelError(
            f"{type(model).__name__}: cross-attention layers {sorted(missing)} never called transformers' attention "
            f"interface, so their scores cannot be read; {_NOT_COVERED}."
        )


_NOT_COVERED = (
    "this architecture is not covered by the FiD reader's attention scores "
    "(T5 family, BART family and BERT2BERT EncoderDecoderModel are)"
)
