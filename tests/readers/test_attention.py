"""The fast eq. 1 kernel (row_attention_scores) against the library's reference (reference_token_scores).

The model-level reference tests (test_decoder_reference.py) cover the capture route; these
cover the building block's own options: grouped-query heads, boolean / additive / causal
masks, padding rows left out of the mean, and the key/value-head block loop used for large
temporaries, which must give the same numbers as the one-block path.
"""

from __future__ import annotations

import pytest
import torch

import ragdistill.readers.eq1 as eq1
from ragdistill.readers.eq1 import reference_token_scores, row_attention_scores


def brute_force(query, key, value, rows, row_mask, mask_bool, value_norm=True):
    """The library's reference (full [B, H, Q, T] softmax, then the mean over heads and real rows of α·‖v‖)."""
    return reference_token_scores(query, key, value, rows, row_mask, mask_bool, value_norm=value_norm)


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    bsz, n_heads, n_kv, t, d = 2, 6, 2, 23, 8
    query = torch.randn(bsz, n_heads, t, d, generator=g)
    key = torch.randn(bsz, n_kv, t, d, generator=g)
    value = torch.randn(bsz, n_kv, t, d, generator=g)
    rows = torch.tensor([[18, 19, 20, 21], [10, 11, 12, 0]])
    row_mask = torch.tensor([[True, True, True, True], [True, True, True, False]])  # item 1: one padding row
    pad = torch.ones(bsz, t, dtype=torch.bool)
    pad[1, 13:] = False  # item 1 right-padded after 13 tokens
    causal = torch.arange(t)[None, :] <= torch.arange(t)[:, None]
    mask_bool = causal[None, None] & pad[:, None, None, :]  # [B, 1, Q, T]
    return query, key, value, rows, row_mask, mask_bool


@pytest.mark.parametrize("value_norm", [True, False])
@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
@pytest.mark.parametrize("block_bytes", [None, 1])  # None: all heads in one block; 1: one key/value head at a time
def test_matches_brute_force(tensors, monkeypatch, value_norm, mask_kind, block_bytes):
    query, key, value, rows, row_mask, mask_bool = tensors
    if block_bytes is not None:
        monkeypatch.setattr(eq1, "_BLOCK_BYTES", block_bytes)
    mask = mask_bool if mask_kind == "bool" else torch.zeros(mask_bool.shape).masked_fill(~mask_bool, float("-inf"))
    got = row_attention_scores(query, key, value, rows, row_mask, mask, value_norm=value_norm)
    want = brute_force(query, key, value, rows, row_mask, mask_bool, value_norm=value_norm)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_causal_without_a_mask_equals_the_explicit_causal_mask(tensors):
    query, key, value, rows, _, _ = tensors
    row_mask = torch.ones_like(rows, dtype=torch.bool)
    t = key.shape[2]
    causal = (torch.arange(t)[None, :] <= torch.arange(t)[:, None])[None, None].expand(2, 1, t, t)
    got = row_attention_scores(query, key, value, rows, row_mask, None, causal=True)
    torch.testing.assert_close(got, brute_force(query, key, value, rows, row_mask, causal), rtol=1e-5, atol=1e-7)


def test_scores_sum_to_one_without_value_norms(tensors):
    """Without value norms each row's probabilities sum to 1, so the mean over heads and rows does too."""
    query, key, value, rows, row_mask, mask_bool = tensors
    got = row_attention_scores(query, key, value, rows, row_mask, mask_bool, value_norm=False)
    torch.testing.assert_close(got.sum(dim=1), torch.ones(2))
