"""readers.eq1 beyond the mask cases of test_attention.py: the reference itself, the additive bias, select_layers,
and the one capture both readers share."""

from __future__ import annotations

import pytest
import torch

import ragdistill.readers.eq1 as eq1
from ragdistill.errors import ConfigError
from ragdistill.readers.capture import ScoreCapture, active_capture, capturing
from ragdistill.readers.eq1 import reference_token_scores, row_attention_scores, select_layers


def test_reference_by_hand():
    """One head, one row, two keys: w_t = softmax(q·k·scale)_t · ‖v_t‖."""
    q = torch.tensor([[[[1.0, 0.0]]]])  # [1, 1, 1, 2]
    k = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]]]])  # logits 2·s, 0
    v = torch.tensor([[[[3.0, 4.0], [0.0, 1.0]]]])  # norms 5, 1
    s = 2**-0.5
    p0 = torch.sigmoid(torch.tensor(2.0 * s))
    want = torch.stack([p0 * 5.0, (1 - p0) * 1.0])[None]
    torch.testing.assert_close(reference_token_scores(q, k, v), want)
    torch.testing.assert_close(reference_token_scores(q, k, v, value_norm=False), torch.stack([p0, 1 - p0])[None])


@pytest.mark.parametrize("block_bytes", [None, 1])
@pytest.mark.parametrize("bias_shape", ["shared", "per-item"])
def test_additive_bias_matches_reference(monkeypatch, block_bytes, bias_shape):
    """A T5-style position bias (or ALiBi) goes through the same kernel as the mask."""
    if block_bytes is not None:
        monkeypatch.setattr(eq1, "_BLOCK_BYTES", block_bytes)
    g = torch.Generator().manual_seed(1)
    bsz, n_heads, n_kv, q_len, t, d = 2, 4, 2, 5, 11, 8
    query = torch.randn(bsz, n_heads, q_len, d, generator=g)
    key, value = torch.randn(bsz, n_kv, t, d, generator=g), torch.randn(bsz, n_kv, t, d, generator=g)
    bias = torch.randn(1 if bias_shape == "shared" else bsz, n_heads, q_len, t, generator=g)
    pad = torch.ones(bsz, t, dtype=torch.bool)
    pad[1, 7:] = False
    rows = torch.tensor([[0, 1, 2, 3], [1, 2, 4, 0]])
    row_mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    for mask in (None, pad):
        got = row_attention_scores(query, key, value, rows, row_mask, mask, scaling=1.0, bias=bias)
        want = reference_token_scores(query, key, value, rows, row_mask, mask, scaling=1.0, bias=bias)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    zero = row_attention_scores(query, key, value, rows, row_mask, pad, bias=torch.zeros(1, n_heads, q_len, t))
    torch.testing.assert_close(zero, row_attention_scores(query, key, value, rows, row_mask, pad), rtol=0, atol=0)


def test_select_layers():
    assert select_layers(None, 4) == [0, 1, 2, 3]  # all layers
    assert select_layers([-1, 0, 3, 0], 4) == [0, 3]  # negative from the top, duplicates collapse, sorted
    assert select_layers(-2, 4) == [2]
    for bad in ([4], [-5], [1, 7]):
        with pytest.raises(ConfigError, match="does not exist") as err:
            select_layers(bad, 4)
        assert err.value.key == "layers"
    with pytest.raises(ConfigError, match="empty"):
        select_layers([], 4)
    with pytest.raises(ConfigError, match="integers"):
        select_layers([True], 4)
    with pytest.raises(ConfigError, match="integers"):
        select_layers(["0"], 4)
    with pytest.raises(ConfigError) as err:
        select_layers([9], 2, key="signal.layers")
    assert err.value.key == "signal.layers"
    with pytest.raises(ValueError):
        select_layers(None, 0)


def test_one_capture_at_a_time():
    state = ScoreCapture(
        rows=torch.zeros(1, 1, dtype=torch.long), row_mask=torch.ones(1, 1, dtype=torch.bool), layers=[0]
    )
    assert active_capture() is None
    with capturing(state):
        assert active_capture() is state
        with pytest.raises(RuntimeError, match="nested"):
            with capturing(state):
                pass
        assert active_capture() is state
    assert active_capture() is None
